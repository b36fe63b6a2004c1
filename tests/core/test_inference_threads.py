"""set_inference_threads: the daemon's torch intra-op threads follow limits.inference_threads."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path

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


def _openmp_limit() -> Callable[[], int]:
    """``omp_get_max_threads`` of the OpenMP runtime torch ships (skip where it is another)."""
    path = Path(torch.__file__).parent / "lib" / "libgomp.so.1"
    if not path.exists():
        pytest.skip(f"torch here does not use {path.name}")
    function = ctypes.CDLL(str(path)).omp_get_max_threads
    function.restype = ctypes.c_int
    return lambda: int(function())


def _in_a_thread(run: Callable[[], int]) -> int:
    found: list[int] = []
    worker = threading.Thread(target=lambda: found.append(run()))
    worker.start()
    worker.join()
    return found[0]


def test_the_count_holds_in_the_thread_that_set_it() -> None:
    """The daemon scores on its worker thread: set there, the OpenMP runtime under torch
    runs that thread's passes on one thread, where a thread that did not set it gets every
    core (and a pool that spins between passes), whatever another thread set."""
    limit = _openmp_limit()
    before = torch.get_num_threads()
    try:
        set_inference_threads(1)
        assert limit() == 1
        assert _in_a_thread(lambda: (set_inference_threads(1), limit())[1]) == 1
        if (os.cpu_count() or 1) > 1:  # a thread that did not set it: the runtime's default
            assert _in_a_thread(limit) > 1
    finally:
        torch.set_num_threads(before)
