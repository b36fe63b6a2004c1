"""Window against the obvious oracle: slicing the whole stream."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aewatch.model.window import Window, sliding_windows


def _oracle(stream: np.ndarray, length: int, hop: int) -> np.ndarray:
    ends = range(length - 1, len(stream), hop)
    return (
        np.stack([stream[e - length + 1 : e + 1].T for e in ends])
        if len(stream) >= length
        else np.empty((0, stream.shape[1], length), dtype=np.float32)
    )


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 80),
    channels=st.integers(1, 4),
    length=st.integers(1, 12),
    hop=st.integers(1, 5),
    chunks=st.lists(st.integers(1, 9), min_size=1, max_size=30),
)
def test_window_fed_in_any_chunks_matches_slicing(n, channels, length, hop, chunks):
    rng = np.random.default_rng(n)
    stream = rng.standard_normal((n, channels)).astype(np.float32)
    window = Window(channels, length, hop)
    got, ends, start, i = [], [], 0, 0
    while start < n:
        size = chunks[i % len(chunks)]
        due = window.extend(
            np.arange(start, min(n, start + size), dtype=float), stream[start : start + size]
        )
        assert due.windows.shape[1:] == (channels, length)  # never a short window
        got.append(due.windows)
        ends.extend(due.end_timestamps.tolist())
        start += size
        i += 1
    expected = _oracle(stream, length, hop)
    result = np.concatenate(got) if got else np.empty((0, channels, length), np.float32)
    np.testing.assert_array_equal(result, expected)
    assert ends == list(range(length - 1, n, hop))
    np.testing.assert_array_equal(sliding_windows(stream, length, hop), expected)


def test_push_one_row_at_a_time_and_reset():
    window = Window(channels=2, length=3, hop=1)
    assert window.is_warming
    outs = [len(window.push(float(t), [t, -t])) for t in range(5)]
    assert outs == [0, 0, 1, 1, 1]
    assert not window.is_warming
    window.reset()
    assert window.is_warming and window.rows_seen == 0
    assert len(window.push(9.0, [1, 2])) == 0


def test_bad_shape_is_refused():
    try:
        Window(channels=0, length=3)
    except ValueError as err:
        assert "channels" in str(err)
    else:
        raise AssertionError("Window(channels=0) must fail")
