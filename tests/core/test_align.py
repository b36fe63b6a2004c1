"""Tests for aewatch.core.align: numpy oracles, the grid.regularize oracle, and invariants."""

from __future__ import annotations

import doctest
import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aewatch.core import align, decode
from aewatch.core.align import Aligner, AlignOutput
from aewatch.core.decode import Reading
from aewatch.core.grid import regularize

PERIOD = 0.5
BASE_SLOT = 3_400_000_000  # epoch-sized grid (1.7e9 s), so float rounding is as in real data
PROPERTY = settings(deadline=None, max_examples=60)  # 2 shared cores: keep the suite quick
Rows = tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]


def feed(aligner: Aligner, readings: Iterable[Reading]) -> list[AlignOutput]:
    return [aligner.add(r) for r in readings]


def segments(outputs: list[AlignOutput]) -> list[Rows]:
    """Join the outputs' rows into runs, starting a new run at every gap."""
    runs: list[list[AlignOutput]] = []
    for out in outputs:
        if len(out) == 0:
            continue
        if out.gap or not runs:
            runs.append([])
        runs[-1].append(out)
    return [
        (np.concatenate([o.timestamps for o in run]), np.concatenate([o.values for o in run]))
        for run in runs
    ]


def at(slot: int, channel: str, value: float, *, jitter: float = 0.0) -> Reading:
    return Reading("w1", channel, (BASE_SLOT + slot + jitter) * PERIOD, value)


def grid_time(slot: int) -> float:
    return float(BASE_SLOT + slot) * PERIOD


def test_doctests() -> None:
    for module in (align, decode):
        assert doctest.testmod(module).failed == 0


# --- oracles --------------------------------------------------------------------------


@PROPERTY
@given(
    n_slots=st.integers(1, 60),
    n_channels=st.integers(1, 4),
    shuffle_slots=st.integers(0, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_shuffled_regular_stream_gives_exactly_its_rows(
    n_slots: int, n_channels: int, shuffle_slots: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    channels = tuple(f"c{i}" for i in range(n_channels))
    values = rng.normal(size=(n_slots, n_channels)).astype(np.float32)
    slots, columns = np.divmod(np.arange(n_slots * n_channels), n_channels)
    # Each reading arrives up to shuffle_slots slots after its own, channels interleaved.
    order = np.argsort(slots + rng.uniform(0, shuffle_slots, size=slots.size), kind="stable")
    jitter = rng.uniform(-0.4, 0.4, size=slots.size)
    readings = [
        at(
            int(slots[i]),
            channels[columns[i]],
            float(values[slots[i], columns[i]]),
            jitter=jitter[i],
        )
        for i in order
    ]
    aligner = Aligner(channels, period_s=PERIOD, max_late_s=shuffle_slots * PERIOD)
    outputs = feed(aligner, readings)
    if n_slots - 1 < shuffle_slots:  # the first row waits for shuffle_slots more slots
        assert segments(outputs) == []
        return
    [(timestamps, rows)] = segments(outputs)
    assert np.array_equal(timestamps, [grid_time(k) for k in range(n_slots)])
    assert np.array_equal(rows, values)
    assert rows.dtype == np.float32
    assert sum(o.late + o.dropped_slots + o.filled for o in outputs) == 0
    assert aligner.pending_slots == 0


@PROPERTY
@given(
    steps=st.lists(st.integers(1, 9), max_size=40),
    n_channels=st.integers(1, 3),
    max_gap=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_whole_rows_in_time_order_match_grid_regularize(
    steps: list[int], n_channels: int, max_gap: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    channels = tuple(f"c{i}" for i in range(n_channels))
    slots = np.cumsum([0, *steps])
    values = rng.normal(size=(len(slots), n_channels)).astype(np.float32)
    aligner = Aligner(channels, period_s=PERIOD, max_gap_periods=max_gap, max_late_s=0)
    readings = [
        at(int(slot), channels[c], float(values[i, c]))
        for i, slot in enumerate(slots)
        for c in rng.permutation(n_channels)
    ]
    actual = segments(feed(aligner, readings))
    expected = regularize(
        (BASE_SLOT + slots) * PERIOD, values, period_s=PERIOD, max_gap_periods=max_gap
    )
    assert len(actual) == len(expected)
    for (timestamps, rows), segment in zip(actual, expected, strict=True):
        assert np.allclose(timestamps, segment.timestamps, rtol=0, atol=1e-6)
        assert np.array_equal(rows, segment.values)


# --- rules ----------------------------------------------------------------------------


def test_late_readings_are_counted_and_dropped() -> None:
    aligner = Aligner(("a", "b"), period_s=PERIOD, max_late_s=0)
    feed(aligner, [at(0, "a", 1), at(0, "b", 2), at(1, "a", 3), at(1, "b", 4)])
    late = aligner.add(at(1, "a", 99, jitter=0.3))
    assert (late.late, len(late)) == (1, 0)
    assert aligner.add(at(-5, "b", 99)).late == 1
    out = feed(aligner, [at(2, "a", 5), at(2, "b", 6)])[-1]
    assert out.values.tolist() == [[5.0, 6.0]]


def test_a_long_outage_is_a_gap_and_a_short_one_is_filled() -> None:
    aligner = Aligner(("a",), period_s=PERIOD, max_gap_periods=3, max_late_s=0)
    outputs = feed(aligner, [at(0, "a", 0), at(3, "a", 3), at(7, "a", 7), at(8, "a", 8)])
    assert [o.gap for o in outputs] == [False, False, True, False]
    assert outputs[1].values.ravel().tolist() == [0.0, 0.0, 3.0]  # slots 1, 2 held
    assert outputs[1].filled == 2
    assert outputs[2].timestamps.tolist() == [grid_time(7)]
    first, second = segments(outputs)
    assert first[0].tolist() == [grid_time(k) for k in range(4)]
    assert second[0].tolist() == [grid_time(7), grid_time(8)]


def test_one_missing_channel_is_filled_after_waiting() -> None:
    aligner = Aligner(("a", "b"), period_s=PERIOD, max_late_s=2 * PERIOD)
    readings = [at(k, ch, 10 * k + (ch == "b")) for k in range(6) for ch in "ab"]
    readings.remove(at(1, "b", 11))
    outputs = feed(aligner, readings)
    emitted = [(o.timestamps.tolist(), o.values.tolist()) for o in outputs if len(o)]
    assert emitted[0] == ([grid_time(0)], [[0.0, 1.0]])
    # Slot 1 waits until slot 4 (more than 2 periods later) is complete, then takes b's value.
    completing = outputs[8]  # b at slot 4
    assert completing.values.tolist() == [[10.0, 1.0], [20.0, 21.0], [30.0, 31.0], [40.0, 41.0]]
    assert completing.filled == 1
    assert sum(len(o) for o in outputs) == 6


def test_a_dead_channel_stops_rows_and_its_return_is_a_gap() -> None:
    aligner = Aligner(("a", "b"), period_s=PERIOD, max_gap_periods=2, max_late_s=0)
    readings = [at(0, "a", 0), at(0, "b", 0)]
    readings += [at(k, "a", k) for k in range(1, 30)]  # b is silent for 29 slots
    readings += [at(30, "b", 30), at(30, "a", 30)]
    outputs = feed(aligner, readings)
    assert sum(len(o) for o in outputs[2:-1]) == 0
    assert aligner.pending_slots <= aligner.max_pending_slots
    assert outputs[-1].gap
    assert outputs[-1].timestamps.tolist() == [grid_time(30)]
    assert sum(o.dropped_slots for o in outputs) == 29


def test_an_output_never_spans_a_gap() -> None:
    aligner = Aligner(("a", "b"), period_s=PERIOD, max_gap_periods=2, max_late_s=0)
    feed(aligner, [at(0, "a", 0), at(0, "b", 0), at(1, "a", 1), at(2, "b", 2), at(4, "a", 4)])
    first = aligner.add(at(4, "b", 4))
    # Slot 1 fills b from slot 0; slot 2 cannot fill a (last real 1, next 4): a gap follows.
    assert (first.timestamps.tolist(), first.gap) == ([grid_time(1)], False)
    second = aligner.add(Reading("w1", "other", 0.0, 0.0))
    assert (second.timestamps.tolist(), second.gap) == ([grid_time(4)], True)
    assert (second.unknown_channel, second.dropped_slots) == (1, 1)


def test_unknown_channels_and_invalid_readings_are_counted() -> None:
    aligner = Aligner(("a",), period_s=PERIOD)
    assert aligner.add(at(0, "z", 1)).unknown_channel == 1
    for bad in (
        Reading("w1", "a", math.nan, 1),
        Reading("w1", "a", math.inf, 1),
        Reading("w1", "a", 1e308, 1),
        Reading("w1", "a", 0, math.nan),
        Reading("w1", "a", 0, 1e39),
    ):
        assert aligner.add(bad).invalid == 1
    assert aligner.pending_slots == 0


@pytest.mark.parametrize(
    ("channels", "options"),
    [
        ((), {"period_s": 1.0}),
        (("a", "a"), {"period_s": 1.0}),
        (("a",), {"period_s": 0.0}),
        (("a",), {"period_s": math.nan}),
        (("a",), {"period_s": 1.0, "max_gap_periods": 0.5}),
        (("a",), {"period_s": 1.0, "max_late_s": -1.0}),
    ],
)
def test_bad_settings_are_rejected(channels: tuple[str, ...], options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Aligner(channels, **options)


# --- invariants under a flood ---------------------------------------------------------

wild_times = st.one_of(
    st.integers(-40, 40).map(lambda k: (BASE_SLOT + k) * PERIOD),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e12, max_value=1e12),
)
flood = st.lists(
    st.tuples(wild_times, st.sampled_from(["a", "b", "c", "zz"]), st.floats(width=32)),
    max_size=300,
)


def assert_invariants(aligner: Aligner, outputs: list[AlignOutput]) -> None:
    last_slot: int | None = None
    for out in outputs:
        assert out.values.shape == (len(out), 3) and out.values.dtype == np.float32
        assert np.isfinite(out.values).all()
        assert not (out.gap and len(out) == 0)
        slots = np.rint(out.timestamps / PERIOD).astype(np.int64)
        assert (np.diff(slots) == 1).all()
        if len(out):
            if last_slot is not None:
                assert slots[0] > last_slot
                assert out.gap or slots[0] == last_slot + 1
            last_slot = int(slots[-1])
    assert aligner.pending_slots <= aligner.max_pending_slots


@settings(deadline=None, max_examples=80)
@given(readings=flood, max_late_periods=st.integers(0, 6), max_gap=st.integers(1, 6))
def test_a_flood_of_wild_readings_keeps_memory_bounded_and_rows_ordered(
    readings: list[tuple[float, str, float]], max_late_periods: int, max_gap: int
) -> None:
    aligner = Aligner(
        ("a", "b", "c"),
        period_s=PERIOD,
        max_gap_periods=max_gap,
        max_late_s=max_late_periods * PERIOD,
    )
    outputs = []
    for t, channel, value in readings:
        outputs.append(aligner.add(Reading("w1", channel, t, value)))
        assert aligner.pending_slots <= aligner.max_pending_slots
    assert_invariants(aligner, outputs)


def test_a_long_random_flood_stays_bounded() -> None:
    rng = np.random.default_rng(7)
    aligner = Aligner(("a", "b", "c"), period_s=PERIOD)
    n = 3000
    slots = np.where(
        rng.random(n) < 0.5, rng.integers(-20, 20, n), rng.integers(-(10**9), 10**9, n)
    )
    channels = rng.choice(["a", "b", "c"], n)
    readings = [at(int(k), str(c), 1.0) for k, c in zip(slots, channels, strict=True)]
    outputs = feed(aligner, readings)
    assert_invariants(aligner, outputs)


def test_wild_past_readings_do_not_disturb_a_live_stream() -> None:
    rng = np.random.default_rng(11)
    channels = ("a", "b", "c")
    values = rng.normal(size=(300, 3)).astype(np.float32)
    stream = [
        (k + rng.uniform(0, 2), at(k, ch, float(values[k, c])))
        for k in range(300)
        for c, ch in enumerate(channels)
    ]
    wild = [
        (rng.uniform(0, 300), at(int(rng.integers(-(10**9), 0)), str(rng.choice(channels)), 1.0))
        for _ in range(400)
    ]
    readings = [r for _, r in sorted(stream + wild, key=lambda pair: pair[0])]
    aligner = Aligner(channels, period_s=PERIOD, max_late_s=2 * PERIOD)
    outputs = feed(aligner, readings)
    assert_invariants(aligner, outputs)
    [(timestamps, rows)] = segments(outputs)
    assert np.array_equal(timestamps, [grid_time(k) for k in range(300)])
    assert np.array_equal(rows, values)
    assert sum(o.late + o.dropped_slots for o in outputs) >= 390


# --- many samples of one channel at once (float32_le messages) ----------------------------


def _counts(outputs: list[AlignOutput]) -> tuple[int, ...]:
    return tuple(
        sum(getattr(o, name) for o in outputs)
        for name in ("late", "unknown_channel", "invalid", "dropped_slots", "filled")
    )


def _same_outcome(one_by_one: list[AlignOutput], at_once: list[AlignOutput]) -> None:
    a, b = segments(one_by_one), segments(at_once)
    assert len(a) == len(b)
    for (ta, va), (tb, vb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(va, vb)
    assert _counts(one_by_one) == _counts(at_once)


series_messages = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "zz"]),
        st.integers(-30, 30),  # first slot
        st.lists(
            st.one_of(st.floats(-5, 5), st.just(math.nan), st.just(math.inf)),
            min_size=1,
            max_size=12,
        ),
        st.sampled_from([0.0, 0.3, -0.49, 0.5]),  # jitter in periods: ties round to even
    ),
    max_size=25,
)


@PROPERTY
@given(messages=series_messages, max_late_periods=st.integers(0, 6), max_gap=st.integers(1, 6))
def test_a_series_ends_as_its_samples_one_by_one(
    messages: list[tuple[str, int, list[float], float]], max_late_periods: int, max_gap: int
) -> None:
    """Out of order, overlapping, late, NaN, gaps, unknown channels: no difference."""
    options = {
        "period_s": PERIOD,
        "max_gap_periods": max_gap,
        "max_late_s": max_late_periods * PERIOD,
    }
    one, many = Aligner(("a", "b", "c"), **options), Aligner(("a", "b", "c"), **options)
    by_reading: list[AlignOutput] = []
    by_series: list[AlignOutput] = []
    for channel, first, samples, jitter in messages:
        times = (BASE_SLOT + first + jitter + np.arange(len(samples), dtype=np.float64)) * PERIOD
        values = np.array(samples, dtype=np.float64)
        readings = [Reading("w1", channel, t, v) for t, v in zip(times, samples, strict=True)]
        by_reading += feed(one, readings)
        by_series += many.add_series(channel, times, values)
        assert many.pending_slots == one.pending_slots
    _same_outcome(by_reading, by_series)
    assert_invariants(many, by_series)


def test_blocks_of_every_channel_make_rows() -> None:
    """Three channels, blocks of 100 samples each; slots wait for the others' blocks.

    ``max_late_s`` must span a block (150 periods here), or a block's oldest slots are
    given up to keep the waiting slots bounded before the other channels' blocks come.
    """
    aligner = Aligner(("a", "b", "c"), period_s=PERIOD, max_late_s=150 * PERIOD)
    oracle = Aligner(("a", "b", "c"), period_s=PERIOD, max_late_s=150 * PERIOD)
    outputs: list[AlignOutput] = []
    expected: list[AlignOutput] = []
    for block in range(2):
        times = (BASE_SLOT + 100 * block + np.arange(100, dtype=np.float64)) * PERIOD
        for i, channel in enumerate(("a", "b", "c")):
            outputs += aligner.add_series(channel, times, np.full(100, float(i)))
            expected += feed(oracle, (Reading("w1", channel, t, float(i)) for t in times))
    _same_outcome(expected, outputs)
    rows = segments(outputs)
    assert len(rows) == 1 and len(rows[0][0]) >= 199  # the first slot waits as if one before
    assert (rows[0][1] == np.array([0.0, 1.0, 2.0], dtype=np.float32)).all()


block_rounds = st.lists(
    st.tuples(
        st.permutations(["a", "b", "c"]),
        st.sampled_from(["whole", "whole", "whole", "shift", "nan", "skip", "twice", "reading"]),
        st.integers(0, 2),  # which block of the round the change hits
    ),
    min_size=1,
    max_size=8,
)


@PROPERTY
@given(rounds=block_rounds, n=st.integers(1, 12), max_late_periods=st.integers(0, 30))
@example(  # the last sample's row ends at a gap: the rows after it wait for the next reading
    rounds=[
        (["a", "b", "c"], "whole", 0),
        (["a", "b", "c"], "skip", 0),
        (["a", "b", "c"], "skip", 0),
        (["a", "b", "c"], "shift", 0),
    ],
    n=2,
    max_late_periods=2,
)
def test_blocks_held_for_the_other_channels_end_as_one_by_one(
    rounds: list[tuple[list[str], str, int]], n: int, max_late_periods: int
) -> None:
    """Rounds of one block per channel over the same slots, now and then spoilt."""
    options = {"period_s": PERIOD, "max_late_s": max_late_periods * PERIOD}
    one, many = Aligner(("a", "b", "c"), **options), Aligner(("a", "b", "c"), **options)
    by_reading: list[AlignOutput] = []
    by_series: list[AlignOutput] = []

    def send(channel: str, first: float, values: list[float]) -> None:
        times = (BASE_SLOT + first + np.arange(len(values), dtype=np.float64)) * PERIOD
        readings = [Reading("w1", channel, t, v) for t, v in zip(times, values, strict=True)]
        by_reading.extend(feed(one, readings))
        by_series.extend(many.add_series(channel, times, np.array(values, dtype=np.float64)))
        assert many.pending_slots == one.pending_slots

    for r, (order, change, hit) in enumerate(rounds):
        for i, channel in enumerate(order):
            values = [float(r * 10 + i + k / 100) for k in range(n)]
            first = float(r * n)
            if i == hit and change == "shift":
                first += 1
            elif i == hit and change == "nan":
                values[len(values) // 2] = math.nan
            elif i == hit and change == "skip":
                continue
            elif i == hit and change == "twice":
                send(channel, first, [v + 0.5 for v in values])
            elif i == hit and change == "reading":
                by_reading.append(one.add(Reading("w1", channel, (BASE_SLOT + first) * PERIOD, 1)))
                by_series.append(many.add(Reading("w1", channel, (BASE_SLOT + first) * PERIOD, 1)))
            send(channel, first, values)
    _same_outcome(by_reading, by_series)
    assert_invariants(many, by_series)
