"""Tests for aewatch.core.align's clock rule: a clock stepped back or forward is followed
after a few readings and reported with its size; a lone reading far off the asset's time is
an outlier that poisons nothing; well-behaved streams align exactly as without the rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aewatch.core.align import CONFIRM_SLOTS, Aligner, AlignOutput
from aewatch.core.decode import Reading
from tests.core.test_align import BASE_SLOT, PERIOD, at, feed, grid_time, segments

CHANNELS = ("a", "b", "c")
TOLERANCE_S = 600.0  # 1 200 slots of 0.5 s
HOUR_SLOTS = int(3600 / PERIOD)
PROPERTY = settings(deadline=None, max_examples=60)


def rows(first: int, n: int, *, stamped: int = 0) -> list[Reading]:
    """Whole rows of slots ``first..first + n - 1`` (value 100 * slot + column), each
    stamped ``stamped`` slots off its true time."""
    return [
        at(slot + stamped, channel, float(100 * slot + column))
        for slot in range(first, first + n)
        for column, channel in enumerate(CHANNELS)
    ]


def values_of(first: int, n: int) -> np.ndarray:
    slots = np.arange(first, first + n, dtype=np.float64)[:, None]
    return (100 * slots + np.arange(len(CHANNELS))).astype(np.float32)


def aligner(**options: float) -> Aligner:
    return Aligner(CHANNELS, period_s=PERIOD, clock_tolerance_s=TOLERANCE_S, **options)


def total(outputs: list[AlignOutput], name: str) -> int:
    return sum(getattr(out, name) for out in outputs)


def test_a_clock_set_back_an_hour_is_followed_not_dropped_for_an_hour() -> None:
    readings = rows(0, 200) + rows(200, 400, stamped=-HOUR_SLOTS)
    outputs = feed(aligner(), readings)
    before, after = segments(outputs)
    assert np.array_equal(before[0], [grid_time(k) for k in range(200)])
    # The grid restarts at the new time, after a gap; no row is lost.
    assert np.array_equal(after[0], [grid_time(k - HOUR_SLOTS) for k in range(200, 600)])
    np.testing.assert_array_equal(after[1], values_of(200, 400))
    assert [out.clock_step_s for out in outputs if out.clock_step_s] == [-3600.0]
    assert total(outputs, "late") == total(outputs, "outlier") == 0
    # The old rule: every reading of the next hour is late.
    old = feed(Aligner(CHANNELS, period_s=PERIOD), readings)
    assert total(old, "late") == 400 * len(CHANNELS)


def test_a_clock_set_forward_is_a_gap_with_its_size() -> None:
    stepper = aligner()
    outputs = feed(stepper, rows(0, 100) + rows(100, 50, stamped=HOUR_SLOTS))
    before, after = segments(outputs)
    assert len(before[0]) == 100
    assert np.array_equal(after[0], [grid_time(k + HOUR_SLOTS) for k in range(100, 150)])
    assert [out.clock_step_s for out in outputs if out.clock_step_s] == [3600.0]
    assert stepper.clock_steps == 1
    assert total(outputs, "late") == total(outputs, "outlier") == 0


def test_one_row_stamped_now_inside_a_backfill_is_an_outlier_and_poisons_nothing() -> None:
    now_slot = 10**6  # far ahead of the backfill
    readings = rows(0, 100) + rows(now_slot, 1) + rows(100, 200)
    fixed = aligner()
    outputs = feed(fixed, readings)
    [(timestamps, values)] = segments(outputs)
    assert np.array_equal(timestamps, [grid_time(k) for k in range(300)])
    np.testing.assert_array_equal(values, values_of(0, 300))
    assert total(outputs, "outlier") == len(CHANNELS)
    assert fixed.drops["outlier"] == len(CHANNELS) and fixed.drops["late"] == 0
    assert all(out.clock_step_s == 0 for out in outputs)
    # The old rule: the stray row ends the backfill.
    old = feed(Aligner(CHANNELS, period_s=PERIOD), readings)
    assert total(old, "late") >= 190 * len(CHANNELS)


def test_the_tolerance_decides_late_from_a_possible_clock_step() -> None:
    stepped = aligner()
    feed(stepped, rows(0, 2000))
    within = int(TOLERANCE_S / PERIOD) - 10  # behind the grid by less than the tolerance
    assert stepped.add(at(2000 - within, "a", 1.0)).late == 1
    beyond = stepped.add(at(2000 - 2 * within, "a", 1.0))  # held: a clock step, or a stray
    assert (beyond.late, beyond.outlier, len(beyond)) == (0, 0, 0)
    outrun = feed(stepped, rows(2000, CONFIRM_SLOTS))  # the asset's time goes on: a stray
    assert total(outrun, "outlier") == 1
    assert dict(stepped.drops) == {
        "late": 1,
        "outlier": 1,
        "dropped_slots": 0,
        "unknown_channel": 0,
        "invalid": 0,
    }


def test_held_readings_confirmed_come_out_as_they_were_stamped() -> None:
    # Channel by channel, the readings of a new time come in any order once confirmed.
    stepper = aligner(max_late_s=2 * PERIOD)
    outputs = feed(stepper, rows(0, 50))
    shifted = rows(50, 20, stamped=-HOUR_SLOTS)
    shifted[0], shifted[4] = shifted[4], shifted[0]
    outputs += feed(stepper, shifted)
    _, after = segments(outputs)
    assert np.array_equal(after[0], [grid_time(k - HOUR_SLOTS) for k in range(50, 70)])
    np.testing.assert_array_equal(after[1], values_of(50, 20))


def test_a_tolerance_must_be_positive() -> None:
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="clock_tolerance_s"):
            Aligner(CHANNELS, period_s=PERIOD, clock_tolerance_s=bad)


# --- properties ---------------------------------------------------------------------------


@PROPERTY
@given(
    n_slots=st.integers(1, 80),
    shuffle_slots=st.integers(0, 4),
    outage_at=st.integers(0, 80),
    outage_slots=st.sampled_from([0, 3, 2_000, 10**6]),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_well_behaved_stream_aligns_exactly_as_without_the_rule(
    n_slots: int, shuffle_slots: int, outage_at: int, outage_slots: int, seed: int
) -> None:
    """Jitter, shuffling within the wait, a short outage: the same rows, gaps and counts as
    without the clock rule. An outage longer than the tolerance, with the rows in order and
    at least CONFIRM_SLOTS after it: the same too (its rows are confirmed, then placed)."""
    if outage_slots > TOLERANCE_S / PERIOD:
        shuffle_slots = 0  # see test_stragglers_across_a_long_outage_are_kept
        outage_at = min(outage_at, max(0, n_slots - CONFIRM_SLOTS))
    rng = np.random.default_rng(seed)
    slots, columns = np.divmod(np.arange(n_slots * len(CHANNELS)), len(CHANNELS))
    order = np.argsort(slots + rng.uniform(0, shuffle_slots, size=slots.size), kind="stable")
    stamped = slots + np.where(slots >= outage_at, outage_slots, 0)
    jitter = rng.uniform(-0.4, 0.4, size=slots.size)
    readings = [
        at(int(stamped[i]), CHANNELS[columns[i]], float(slots[i]), jitter=jitter[i]) for i in order
    ]
    options = {"period_s": PERIOD, "max_late_s": shuffle_slots * PERIOD}
    plain = feed(Aligner(CHANNELS, **options), readings)
    ruled = Aligner(CHANNELS, clock_tolerance_s=TOLERANCE_S, **options)
    checked = feed(ruled, readings)
    assert _outcome(checked)[:2] == _outcome(plain)[:2]
    assert total(checked, "outlier") == 0


def test_stragglers_across_a_long_outage_are_kept() -> None:
    """A reading of the last slot before a long outage that comes after the first row of
    the new time: without the rule that slot is given up at once; with it, the new time
    is held until confirmed, and the straggler completes its slot."""
    readings = rows(0, 10) + rows(10, 5, stamped=HOUR_SLOTS)
    straggler = readings.pop(10 * len(CHANNELS) - 1)  # slot 9, channel c
    readings.insert(11 * len(CHANNELS) - 1, straggler)  # after the first row an hour on
    options = {"period_s": PERIOD, "max_late_s": 2 * PERIOD}
    plain = feed(Aligner(CHANNELS, **options), readings)
    ruled = feed(Aligner(CHANNELS, clock_tolerance_s=TOLERANCE_S, **options), readings)
    assert [len(t) for t, _ in segments(plain)] == [9, 5]
    assert total(plain, "late") == 1
    assert [len(t) for t, _ in segments(ruled)] == [10, 5]
    assert total(ruled, "late") == 0


series = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "zz"]),
        st.sampled_from([-3000, -40, -5, 0, 5, 40, 3000]),  # far jumps, both ways
        st.integers(-6, 6),
        st.lists(st.floats(-5, 5), min_size=1, max_size=8),
    ),
    max_size=30,
)


@PROPERTY
@given(messages=series, max_late_periods=st.integers(0, 4))
def test_a_series_ends_as_its_samples_one_by_one_with_clock_steps(
    messages: list[tuple[str, int, int, list[float]]], max_late_periods: int
) -> None:
    options = {
        "period_s": PERIOD,
        "max_late_s": max_late_periods * PERIOD,
        "clock_tolerance_s": 10 * PERIOD,
    }
    one, many = Aligner(CHANNELS, **options), Aligner(CHANNELS, **options)
    by_reading: list[AlignOutput] = []
    by_series: list[AlignOutput] = []
    base = 0
    for channel, jump, offset, samples in messages:
        base += jump
        times = (BASE_SLOT + base + offset + np.arange(len(samples), dtype=np.float64)) * PERIOD
        readings = [Reading("w1", channel, t, v) for t, v in zip(times, samples, strict=True)]
        by_reading += feed(one, readings)
        by_series += many.add_series(channel, times, np.array(samples, dtype=np.float64))
        assert many.pending_slots == one.pending_slots <= one.max_pending_slots
    assert _outcome(by_series) == _outcome(by_reading)
    assert many.drops == one.drops
    for out in by_series:  # rows run one slot apart; after a backward step, after a gap
        steps = np.diff(np.rint(out.timestamps / PERIOD))
        assert (steps == 1).all()


def _outcome(outputs: list[AlignOutput]) -> tuple[object, ...]:
    runs = [(t.tolist(), v.tolist()) for t, v in segments(outputs)]
    counts = tuple(
        total(outputs, name)
        for name in ("late", "unknown_channel", "invalid", "dropped_slots", "filled", "outlier")
    )
    return runs, counts, [out.clock_step_s for out in outputs if out.clock_step_s]
