"""Tests for aewatch.core.grid: a plain-Python oracle and Hypothesis properties."""

from __future__ import annotations

import doctest
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aewatch.core import grid
from aewatch.core.grid import DEFAULT_MAX_GAP_PERIODS, Segment, infer_period, regularize

T0 = 1_700_000_000.0  # epoch-sized, so float rounding is as in real data
PROPERTY = settings(deadline=None, max_examples=60)  # 2 shared cores: keep the suite quick


def oracle(
    t: npt.NDArray[np.float64], v: npt.NDArray[np.float64], period_s: float, max_gap: float
) -> list[tuple[list[float], list[int]]]:
    """Return (grid times, source rows) per segment, one reading at a time."""
    segments: list[tuple[float, dict[int, int]]] = []
    for i in range(len(t)):
        if i == 0 or round((t[i] - t[i - 1]) / period_s) > max_gap:
            segments.append((t[i], {}))
        t0, slots = segments[-1]
        slots[round((t[i] - t0) / period_s)] = i  # a later row overwrites
    out = []
    for t0, slots in segments:
        rows, last = [], -1
        for k in range(max(slots) + 1):
            last = slots.get(k, last)
            rows.append(last)
        out.append(([t0 + k * period_s for k in range(len(rows))], rows))
    return out


@st.composite
def readings(draw: st.DrawFn) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """Irregular readings: jitter, bursts, duplicates and gaps, around a drawn period."""
    period_s = draw(st.sampled_from([0.01, 0.1, 1.0, 2.5, 60.0]))
    steps = draw(
        st.lists(
            st.one_of(
                st.floats(0.6, 1.4),  # jittered
                st.floats(0.0, 0.6),  # burst or duplicate
                st.floats(1.4, 12.0),  # short or long gap
                st.just(1.0),
            ),
            min_size=0,
            max_size=60,
        )
    )
    t = T0 + np.concatenate(([0.0], np.cumsum(steps))) * period_s
    v = np.arange(t.size * 2, dtype=np.float64).reshape(t.size, 2)
    return t, v, period_s


def rows_of(segments: list[Segment]) -> list[range]:
    """Return the input rows each segment covers (contiguous, in order)."""
    ranges, first = [], 0
    for seg in segments:
        last = int(seg.source_index[-1])  # the last row always wins its slot
        ranges.append(range(first, last + 1))
        first = last + 1
    return ranges


@PROPERTY
@given(readings(), st.sampled_from([1, 2, DEFAULT_MAX_GAP_PERIODS, 7.5]))
def test_matches_oracle(
    data: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float], max_gap: float
) -> None:
    t, v, period_s = data
    segments = regularize(t, v, period_s=period_s, max_gap_periods=max_gap)
    expected = oracle(t, v, period_s, max_gap)
    assert len(segments) == len(expected)
    for seg, (times, rows) in zip(segments, expected, strict=True):
        np.testing.assert_allclose(seg.timestamps, times, rtol=0, atol=1e-6)
        assert seg.source_index.tolist() == rows
        np.testing.assert_array_equal(seg.values, v[rows].astype(np.float32))
        assert seg.values.dtype == np.float32
        assert seg.source_index.dtype == np.int64


@PROPERTY
@given(readings())
def test_every_segment_is_regular(
    data: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float],
) -> None:
    t, v, period_s = data
    for seg in regularize(t, v, period_s=period_s):
        k = np.arange(len(seg.timestamps))
        np.testing.assert_array_equal(seg.timestamps, seg.timestamps[0] + k * period_s)
        assert seg.values.shape == (len(seg.timestamps), 2)
        assert np.all(np.diff(seg.source_index) >= 0)


@PROPERTY
@given(readings(), st.sampled_from([1, 3, DEFAULT_MAX_GAP_PERIODS]))
def test_no_segment_spans_a_long_gap(
    data: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float], max_gap: float
) -> None:
    t, v, period_s = data
    segments = regularize(t, v, period_s=period_s, max_gap_periods=max_gap)
    ranges = rows_of(segments)
    assert (ranges[-1].stop if ranges else 0) == len(t)
    for rows in ranges:
        assert np.all(np.rint(np.diff(t[rows.start : rows.stop]) / period_s) <= max_gap)
    for before, after in pairwise(ranges):
        assert np.rint((t[after.start] - t[before.stop - 1]) / period_s) > max_gap


@PROPERTY
@given(readings())
def test_every_reading_kept_unless_overwritten_in_its_slot(
    data: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float],
) -> None:
    t, v, period_s = data
    segments = regularize(t, v, period_s=period_s)
    for seg, rows in zip(segments, rows_of(segments), strict=True):
        slots = np.rint((t[rows.start : rows.stop] - seg.timestamps[0]) / period_s).astype(int)
        for row, slot in zip(rows, slots, strict=True):
            winner = int(seg.source_index[slot])
            if winner != row:  # overwritten: by a later row in the same slot
                assert winner > row
                assert slots[winner - rows.start] == slot
            np.testing.assert_array_equal(seg.values[slot], v[winner].astype(np.float32))


@given(
    st.integers(1, 300),
    st.sampled_from([0.001, 0.02, 0.1, 1.0, 5.0, 60.0, 3600.0]),
    st.integers(1, 3),
)
def test_regular_input_comes_back_unchanged(n: int, period_s: float, channels: int) -> None:
    t = T0 + np.arange(n) * period_s
    v = np.random.default_rng(n).normal(size=(n, channels)).astype(np.float32)
    (seg,) = regularize(t, v, period_s=period_s)
    np.testing.assert_array_equal(seg.timestamps, t)
    np.testing.assert_array_equal(seg.values, v)
    np.testing.assert_array_equal(seg.source_index, np.arange(n))


def test_gap_of_exactly_max_periods_is_filled_and_longer_splits() -> None:
    t = np.array([0.0, 1.0, 6.0, 7.0, 13.0])  # steps of 5 periods, then 6
    v = np.arange(5.0).reshape(5, 1)
    first, second = regularize(t, v, period_s=1.0, max_gap_periods=5)
    assert first.source_index.tolist() == [0, 1, 1, 1, 1, 1, 2, 3]
    assert first.values[:, 0].tolist() == [0, 1, 1, 1, 1, 1, 2, 3]
    assert second.timestamps.tolist() == [13.0]


def test_snapping_counts_from_the_segment_start() -> None:
    t = np.array([0.3, 1.2, 2.4, 2.9, 30.7, 31.8])
    (a, b) = regularize(t, np.zeros((6, 1)), period_s=1.0)
    assert a.timestamps.tolist() == pytest.approx([0.3, 1.3, 2.3, 3.3])
    assert a.source_index.tolist() == [0, 1, 2, 3]
    assert b.timestamps.tolist() == pytest.approx([30.7, 31.7])


def test_equal_timestamps_later_row_wins() -> None:
    (seg,) = regularize(np.array([5.0, 5.0, 6.0]), np.array([[1.0], [2.0], [3.0]]), period_s=1.0)
    assert seg.values[:, 0].tolist() == [2.0, 3.0]
    assert seg.source_index.tolist() == [1, 2]


def test_no_readings_give_no_segments() -> None:
    assert regularize(np.zeros(0), np.zeros((0, 3)), period_s=1.0) == []


@pytest.mark.parametrize(
    ("t", "v", "kwargs", "match"),
    [
        ([0.0, 1.0], np.zeros(2), {}, "shapes"),
        ([0.0, 1.0], np.zeros((3, 1)), {}, "shapes"),
        ([0.0, 1.0], np.zeros((2, 1)), {"period_s": 0.0}, "period_s"),
        ([0.0, 1.0], np.zeros((2, 1)), {"period_s": float("nan")}, "period_s"),
        ([0.0, 1.0], np.zeros((2, 1)), {"max_gap_periods": 0.5}, "max_gap_periods"),
        ([0.0, float("nan")], np.zeros((2, 1)), {}, r"timestamps_s\[1\]"),
        ([1.0, 0.0], np.zeros((2, 1)), {}, r"timestamps_s\[1\] = 0.0 is earlier.*sort"),
    ],
)
def test_bad_arguments_are_named(
    t: list[float], v: npt.NDArray[np.float64], kwargs: dict[str, float], match: str
) -> None:
    args: dict[str, float] = {"period_s": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        regularize(np.array(t), v, **args)


@PROPERTY
@given(
    st.sampled_from([0.01, 0.1, 0.25, 1.0, 10.0, 60.0]),
    st.floats(0.0, 0.3),
    st.integers(0, 2**32 - 1),
)
def test_infer_period_on_jittered_data(period_s: float, jitter: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    t = T0 + (np.arange(n) + rng.uniform(-jitter, jitter, n)) * period_s
    keep = rng.random(n) > 0.05  # and some readings lost
    # Each lost reading ends a run of steps whose jitter no longer cancels: about 0.15 %
    # noise at the largest jitter, so 1 % is far outside chance.
    assert infer_period(t[keep]) == pytest.approx(period_s, rel=1e-2)


@given(st.sampled_from([0.001, 0.0125, 0.1, 1.0, 2.0, 60.0, 1 / 60]), st.integers(50, 500))
def test_infer_period_of_regular_data_is_exact(period_s: float, n: int) -> None:
    t = T0 + np.arange(n) * period_s
    assert infer_period(t) == float(f"{period_s:.5g}")


def test_infer_period_ignores_gaps_and_duplicates() -> None:
    t = np.array([0.0, 0.999999, 2.0, 2.0, 3.0, 4.0000001, 60.0, 61.0])
    assert infer_period(t) == 1.0


@pytest.mark.parametrize(
    ("t", "match"),
    [([1.0], "at least 2 timestamps, got 1"), ([3.0, 3.0, 2.0], "no positive step")],
)
def test_infer_period_errors(t: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        infer_period(np.array(t))


def test_doctests() -> None:
    assert doctest.testmod(grid).failed == 0
