"""Window against the obvious oracle: slicing the whole stream."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aewatch.core.window import Window, WindowBank, sliding_windows


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


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    channels=st.integers(1, 3),
    length=st.integers(1, 7),
    hop=st.integers(1, 3),
    steps=st.integers(1, 60),
)
def test_a_bank_cuts_what_a_window_per_asset_cuts(seed, channels, length, hop, steps):
    """Random steps on a few assets: several rows of one asset, one row of many, a reset, an
    asset leaving and another taking its slot; the bank and a Window per asset agree."""
    rng = np.random.default_rng(seed)
    bank = WindowBank(channels, length, hop)
    windows: dict[int, Window] = {}  # slot -> the oracle of the asset in it
    clock: dict[int, float] = {}
    for _ in range(4):
        slot = bank.open()
        windows[slot], clock[slot] = Window(channels, length, hop), 0.0
    for _ in range(steps):
        action = rng.integers(0, 10)
        slot = int(rng.choice(list(windows)))
        if action == 0:
            bank.reset(slot)
            windows[slot].reset()
        elif action == 1:
            bank.close(slot)
            del windows[slot]
            new = bank.open()
            windows[new], clock[new] = Window(channels, length, hop), 0.0
        elif action < 5:
            m = int(rng.integers(0, 9))
            ts = clock[slot] + np.arange(m, dtype=float)
            clock[slot] += m
            rows = rng.standard_normal((m, channels)).astype(np.float32)
            got, expected = bank.extend(slot, ts, rows), windows[slot].extend(ts, rows)
            np.testing.assert_array_equal(got.windows, expected.windows)
            np.testing.assert_array_equal(got.end_timestamps, expected.end_timestamps)
        else:
            chosen = rng.permutation(list(windows))[: rng.integers(1, len(windows) + 1)]
            ts = np.array([clock[s] for s in chosen], dtype=float)
            rows = rng.standard_normal((len(chosen), channels)).astype(np.float32)
            picked, due = bank.extend_rows(np.asarray(chosen, dtype=np.int64), ts, rows)
            expected = [
                windows[s].extend(ts[i : i + 1], rows[i : i + 1]) for i, s in enumerate(chosen)
            ]
            assert picked.tolist() == [i for i, e in enumerate(expected) if len(e)]
            for j, i in enumerate(picked):
                np.testing.assert_array_equal(due.windows[j], expected[i].windows[0])
                assert due.end_timestamps[j] == expected[i].end_timestamps[0]
            for s in chosen:
                clock[s] += 1
        for s, window in windows.items():
            assert bank.rows_seen(s) == window.rows_seen
