"""set_inference_threads: the daemon's torch intra-op threads follow limits.inference_threads."""

from __future__ import annotations

import pytest
import torch

from aewatch.model.scorer import set_inference_threads


def test_threads_are_set_and_bad_counts_refused() -> None:
    before = torch.get_num_threads()
    try:
        set_inference_threads(1)
        assert torch.get_num_threads() == 1
        set_inference_threads(2)
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="at least 1"):
            set_inference_threads(0)
    finally:
        torch.set_num_threads(before)
