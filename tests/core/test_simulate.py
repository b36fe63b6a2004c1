"""Tests for the stream simulator (``aewatch.sim``): determinism, physics, faults, CSV, CLI."""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aewatch.errors import AewatchError
from aewatch.sim import (
    DEFAULT_START_EPOCH_S,
    FAULT_KINDS,
    SCENARIOS,
    FaultSpec,
    InjectedFault,
    SimulatedStream,
    parse_faults,
    simulate,
    write_csv,
)
from aewatch.sim.cli import register
from aewatch.sim.inject import FaultSite, inject
from aewatch.sim.scenarios import SCENARIO_MODELS
from aewatch.sim.signals import colored_noise, first_order_lag

SCENARIO_NAMES = sorted(SCENARIOS)


def _expected_labels(stream: SimulatedStream, period_s: float = 1.0) -> npt.NDArray[np.bool_]:
    t_rel = np.arange(stream.timestamps.size, dtype=np.float64) * period_s
    expected = np.zeros(t_rel.size, dtype=bool)
    for fault in stream.faults:
        expected |= (t_rel >= fault.start_s) & (t_rel < fault.end_s)
    return expected


def _minute_means(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    rows = values.shape[0] // 60 * 60
    return values[:rows].reshape(-1, 60, values.shape[1]).mean(axis=1)


def _noise_sd(column: npt.NDArray[np.float64]) -> float:
    """Std of a column about its 5-minute moving average: the sensor noise, roughly."""
    smooth = np.convolve(column, np.ones(301) / 301, mode="same")
    return float(np.std((column - smooth)[300:-300]))


# --- normal behaviour -------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_same_seed_gives_identical_stream_and_other_seeds_differ(scenario: str) -> None:
    faults = parse_faults("all")
    first = simulate(scenario, hours=2.0, faults=faults, seed=11)
    again = simulate(scenario, hours=2.0, faults=faults, seed=11)
    other = simulate(scenario, hours=2.0, faults=faults, seed=12)
    np.testing.assert_array_equal(first.values, again.values)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert first.faults == again.faults
    assert not np.array_equal(first.values, other.values)


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_stream_has_documented_shapes_grid_and_no_faults_by_default(scenario: str) -> None:
    stream = simulate(scenario, hours=2.0)
    n = 7200
    assert stream.channels == SCENARIOS[scenario]
    assert stream.timestamps.shape == (n,)
    assert stream.timestamps.dtype == np.float64
    assert stream.values.shape == (n, len(stream.channels))
    assert stream.values.dtype == np.float64
    assert stream.labels.shape == (n,)
    assert stream.labels.dtype == np.int8
    np.testing.assert_array_equal(stream.timestamps, DEFAULT_START_EPOCH_S + np.arange(n))
    assert not stream.labels.any()
    assert stream.faults == ()
    assert not stream.values.flags.writeable


def test_period_and_start_set_the_grid() -> None:
    stream = simulate("pump", hours=1.0, period_s=10.0, start_epoch_s=1_000_000.0)
    assert stream.timestamps.size == 360
    np.testing.assert_array_equal(np.diff(stream.timestamps), 10.0)
    assert stream.timestamps[0] == 1_000_000.0


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_day_with_all_faults_is_finite_and_physical(scenario: str) -> None:
    stream = simulate(scenario, hours=24.0, period_s=5.0, faults=parse_faults("all"), seed=2)
    assert np.isfinite(stream.values).all()
    assert (stream.values > 0).all()  # flows, pressures, speeds, currents, °C, mm/s


def test_well_pressure_moves_against_flow() -> None:
    # Seed 3 has several choke moves in its first day.
    means = _minute_means(simulate("well", hours=24.0, seed=3).values)
    flow, whp, wht = means[:, 0], means[:, 1], means[:, 2]
    assert np.corrcoef(flow, whp)[0, 1] < -0.8
    # Temperature follows flow, but over tens of minutes, not at once.
    lagged = [np.corrcoef(flow[: flow.size - k], wht[k:])[0, 1] for k in (0, 30, 60)]
    assert lagged[1] > lagged[0] > 0


def test_pump_follows_affinity_laws() -> None:
    means = _minute_means(simulate("pump", hours=24.0, seed=1).values)
    speed, current, discharge, flow = means[:, 0], means[:, 1], means[:, 2], means[:, 3]
    ratio = flow / speed
    assert np.std(ratio) / np.mean(ratio) < 0.02
    assert np.corrcoef(discharge, speed**2)[0, 1] > 0.99
    assert np.corrcoef(current, speed**3)[0, 1] > 0.99


# --- faults ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_changes_only_its_span_by_a_realistic_amount(scenario: str, kind: str) -> None:
    """A fault changes its channel, and the channels a process fault couples, in its span."""
    channels = SCENARIOS[scenario]
    col = 1
    spec = FaultSpec(kind, start_s=1800.0, duration_s=600.0, channel=channels[col])
    normal = simulate(scenario, hours=1.0, seed=5)
    faulty = simulate(scenario, hours=1.0, seed=5, faults=[spec])

    assert faulty.faults == (InjectedFault(kind, channels[col], 1800.0, 2400.0),)
    inside = np.zeros(3600, dtype=bool)
    inside[1800:2400] = True
    np.testing.assert_array_equal(faulty.labels, inside)
    np.testing.assert_array_equal(faulty.timestamps, normal.timestamps)
    coupling = SCENARIO_MODELS[scenario].coupling(kind, channels[col])
    moved = [col] if coupling is None else np.flatnonzero(coupling).tolist()
    untouched = np.ones_like(faulty.values, dtype=bool)
    untouched[np.ix_(inside, moved)] = False
    np.testing.assert_array_equal(faulty.values[untouched], normal.values[untouched])

    change = np.abs(faulty.values[inside, col] - normal.values[inside, col])
    assert np.count_nonzero(change) >= 3
    size = change.max() / _noise_sd(normal.values[:, col])
    assert 1.5 < size < 25, f"{kind} on {channels[col]} is {size:.1f} noise sd"


def _fault_change(
    scenario: str, fault: str, *, hours: float = 1.0, period_s: float = 1.0, seed: int = 5
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Return what ``fault`` added to the stream, ``(n, channels)``, and its rows, ``(n,)``."""
    normal = simulate(scenario, hours=hours, period_s=period_s, seed=seed)
    faulty = simulate(
        scenario, hours=hours, period_s=period_s, faults=parse_faults(fault), seed=seed
    )
    return faulty.values - normal.values, faulty.labels.astype(bool)


def _noise_sds(scenario: str) -> npt.NDArray[np.float64]:
    return np.array([noise.sd for noise in SCENARIO_MODELS[scenario].noise])


def _site(values: npt.NDArray[np.float64], *, scale: float, period_s: float = 1.0) -> FaultSite:
    """A one-channel, noise-free site over ``values`` (shape ``(m,)``)."""
    block = values.reshape(-1, 1)
    return FaultSite(
        values=block,
        clean=block,
        noise=np.zeros_like(block),
        before=block[0],
        scale=np.array([scale]),
        column=0,
        period_s=period_s,
    )


@pytest.mark.parametrize("seed", range(8))
def test_gain_scales_the_reading_so_its_error_follows_the_level(seed: int) -> None:
    level = np.linspace(10.0, 20.0, 200)  # the process doubles over the span
    out = inject("gain", np.random.default_rng(seed), _site(level, scale=0.1))[:, 0]

    error = out / level - 1.0
    np.testing.assert_allclose(error, error[0], rtol=1e-9)  # one gain, about zero
    change = out - level
    assert 3.0 <= abs(change[0]) / 0.1 <= 6.0  # a few noise sd where the span starts
    assert change[-1] == pytest.approx(2.0 * change[0])  # and twice that at twice the level


def test_gain_in_a_stream_is_one_factor_on_its_channel_only() -> None:
    fault = "gain@0.5+0.4:discharge_bar"
    change, rows = _fault_change("pump", fault)
    normal = simulate("pump", hours=1.0, seed=5).values
    col = SCENARIOS["pump"].index("discharge_bar")

    factor = 1.0 + change[rows, col] / normal[rows, col]
    np.testing.assert_allclose(factor, factor[0], rtol=1e-12)
    at_start = abs(factor[0] - 1.0) * normal[rows, col][:30].mean() / _noise_sds("pump")[col]
    assert 2.8 < at_start < 6.2
    np.testing.assert_array_equal(np.delete(change, col, axis=1), 0.0)


@pytest.mark.parametrize(
    ("scenario", "lead", "directions"),
    [
        # Worn wear rings: delivered flow falls at the same speed and current, head droops.
        ("pump", "flow_m3h", {"flow_m3h": -1, "discharge_bar": -1}),
        # Scale in the rising main: more head, less flow, a little less power.
        ("pump", "discharge_bar", {"discharge_bar": 1, "flow_m3h": -1, "current_a": -1}),
        # Scale in the choke or flowline: less flow, so less drawdown and more pressure.
        ("well", "flow_kg_s", {"flow_kg_s": -1, "whp_bar": 1}),
        # A declining feed zone: pressure falls and the choke passes less.
        ("well", "whp_bar", {"whp_bar": -1, "flow_kg_s": -1}),
    ],
)
def test_leak_ramps_the_coupled_channels_the_way_the_plant_would(
    scenario: str, lead: str, directions: dict[str, int]
) -> None:
    channels = SCENARIOS[scenario]
    sds = _noise_sds(scenario)
    lead_col = channels.index(lead)
    for seed in range(4):
        change, rows = _fault_change(scenario, f"leak@0.5+0.25:{lead}", seed=seed)
        m = int(rows.sum())
        ramp = np.arange(1, m + 1) / m
        lead_end_sd = abs(change[rows, lead_col][-1]) / sds[lead_col]
        assert 4.0 <= lead_end_sd <= 7.0
        for col, channel in enumerate(channels):
            moved = change[rows, col]
            if channel not in directions:
                np.testing.assert_array_equal(moved, 0.0, err_msg=channel)
                continue
            # A linear ramp from nothing, all the way in the stated direction ...
            np.testing.assert_allclose(moved, moved[-1] * ramp, rtol=1e-9, atol=1e-12)
            assert np.sign(moved[-1]) == directions[channel], channel
            # ... and no channel moves more of its noise than the lead does.
            assert abs(moved[-1]) / sds[col] <= lead_end_sd * (1 + 1e-9), channel
        np.testing.assert_array_equal(change[~rows], 0.0)


def test_leak_on_an_uncoupled_channel_ramps_that_channel_alone() -> None:
    col = SCENARIOS["pump"].index("speed_rpm")
    change, rows = _fault_change("pump", "leak@0.5+0.25:speed_rpm")
    m = int(rows.sum())
    ramp = np.arange(1, m + 1) / m
    np.testing.assert_allclose(change[rows, col], change[rows, col][-1] * ramp, rtol=1e-9)
    assert 4.0 <= abs(change[rows, col][-1]) / _noise_sds("pump")[col] <= 7.0
    np.testing.assert_array_equal(np.delete(change, col, axis=1), 0.0)


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_process_faults_with_no_channel_start_on_one_the_plant_couples(scenario: str) -> None:
    model = SCENARIO_MODELS[scenario]
    for seed in range(10):
        stream = simulate(
            scenario, hours=2.0, faults=[FaultSpec("leak"), FaultSpec("hunting")], seed=seed
        )
        for fault in stream.faults:
            assert model.coupling(fault.kind, fault.channel) is not None, fault


def _half_cycle_rows(swing: npt.NDArray[np.float64]) -> float:
    """Mean rows between sign changes of a zero-mean swing, skipping rows on its zeros."""
    rows = np.flatnonzero(np.abs(swing) > 1e-9 * np.abs(swing).max())
    signs = np.sign(swing[rows])
    crossings = rows[1:][signs[1:] != signs[:-1]]
    assert crossings.size >= 2
    return float(np.diff(crossings).mean())


@pytest.mark.parametrize(
    ("scenario", "lead", "phases"),
    [
        # The drive's loop: speed, current, head and flow swing together.
        ("pump", "speed_rpm", {"current_a": 1, "discharge_bar": 1, "flow_m3h": 1}),
        ("pump", "flow_m3h", {"speed_rpm": 1, "current_a": 1, "discharge_bar": 1}),
        # The choke's loop: pressure swings against flow.
        ("well", "flow_kg_s", {"whp_bar": -1, "vibration_mm_s": 1}),
    ],
)
def test_hunting_is_a_slow_swing_of_a_few_noise_sd_weaker_on_coupled_channels(
    scenario: str, lead: str, phases: dict[str, int]
) -> None:
    channels = SCENARIOS[scenario]
    sds = _noise_sds(scenario)
    lead_col = channels.index(lead)
    for seed in range(6):
        change, rows = _fault_change(scenario, f"hunting@0.25+0.5:{lead}", seed=seed)
        swing = change[rows, lead_col]
        lead_sd = swing / sds[lead_col]
        amplitude = np.abs(swing).max()
        assert 2.0 <= amplitude / sds[lead_col] <= 4.0
        assert 60.0 - 2.0 <= 2.0 * _half_cycle_rows(swing) <= 600.0 + 2.0
        # It builds up: the first half cycle reaches at most half the full swing.
        assert np.abs(swing[: round(_half_cycle_rows(swing))]).max() <= 0.55 * amplitude
        for col, channel in enumerate(channels):
            if col == lead_col:
                continue
            moved = change[rows, col]
            if channel not in phases:
                np.testing.assert_array_equal(moved, 0.0, err_msg=channel)
                continue
            # The same swing, in the channel's own noise sd times a fixed ratio.
            ratio = (moved / sds[col]) @ lead_sd / np.sum(lead_sd**2)
            np.testing.assert_allclose(moved / sds[col], ratio * lead_sd, atol=1e-9)
            assert np.sign(ratio) == phases[channel], channel
            assert 0.0 < abs(ratio) < 1.0, channel  # weaker than on the lead


def test_hunting_has_flat_tops_unlike_the_sine_of_an_oscillation() -> None:
    """A limit cycle spends far longer near its extremes than a sine (13 % within 2 %)."""
    col = SCENARIOS["well"].index("wht_c")  # uncoupled: the swing stays on the channel
    for kind, low, high in (("hunting", 0.4, 1.0), ("oscillation", 0.0, 0.2)):
        change, rows = _fault_change("well", f"{kind}@0.25+0.5:wht_c", seed=3)
        swing = change[rows, col][rows.sum() // 2 :]  # past any build-up
        near_peak = np.mean(np.abs(swing) >= 0.98 * np.abs(swing).max())
        assert low < near_peak < high, kind
        np.testing.assert_array_equal(np.delete(change, col, axis=1), 0.0)


@pytest.mark.parametrize("period_s", [10.0, 60.0])
def test_hunting_keeps_six_samples_per_cycle_on_a_coarse_grid(period_s: float) -> None:
    col = SCENARIOS["pump"].index("flow_m3h")
    for seed in range(6):
        change, rows = _fault_change(
            "pump", "hunting@2+2:flow_m3h", hours=6.0, period_s=period_s, seed=seed
        )
        cycle_rows = 2.0 * _half_cycle_rows(change[rows, col])
        assert cycle_rows >= 6.0 - 0.5
        assert 60.0 - 2 * period_s <= cycle_rows * period_s <= 600.0 + 2 * period_s


@settings(max_examples=25, deadline=None)
@given(
    scenario=st.sampled_from(SCENARIO_NAMES),
    kinds=st.lists(st.sampled_from(FAULT_KINDS), max_size=6),
    hours=st.floats(0.25, 2.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_faults_are_labelled_disjoint_late_and_leave_the_rest_alone(
    scenario: str, kinds: list[str], hours: float, seed: int
) -> None:
    stream = simulate(scenario, hours=hours, faults=[FaultSpec(k) for k in kinds], seed=seed)
    normal = simulate(scenario, hours=hours, seed=seed)
    n = stream.timestamps.size

    assert [f.kind for f in stream.faults] == kinds
    assert all(f.channel in stream.channels for f in stream.faults)
    np.testing.assert_array_equal(stream.labels.astype(bool), _expected_labels(stream))
    spans = sorted((f.start_s, f.end_s) for f in stream.faults)
    assert all(start >= 0.1 * n for start, _ in spans)
    assert all(end <= n for _, end in spans)
    assert all(end < next_start for (_, end), (next_start, _) in itertools.pairwise(spans))
    outside = stream.labels == 0
    np.testing.assert_array_equal(stream.values[outside], normal.values[outside])
    assert np.isfinite(stream.values).all()


def test_random_durations_are_minutes_long_on_a_long_stream() -> None:
    stream = simulate("well", hours=24.0, period_s=10.0, faults=parse_faults("all"), seed=4)
    assert sorted(f.kind for f in stream.faults) == sorted(FAULT_KINDS)
    for fault in stream.faults:
        assert 300.0 - 10.0 <= fault.end_s - fault.start_s <= 1800.0 + 10.0


def test_random_faults_shrink_to_fit_a_short_stream() -> None:
    stream = simulate("pump", hours=0.5, faults=parse_faults("all"), seed=9)
    assert sum(f.end_s - f.start_s for f in stream.faults) <= 0.5 * 0.9 * 3600


def test_random_faults_keep_clear_of_given_ones() -> None:
    given_fault = FaultSpec("step", start_s=600.0, duration_s=1800.0, channel="whp_bar")
    for seed in range(5):
        stream = simulate("well", hours=2.0, faults=[given_fault, FaultSpec("drift")], seed=seed)
        placed = stream.faults[1]
        assert placed.end_s <= 600.0 or placed.start_s >= 2400.0
        np.testing.assert_array_equal(stream.labels.astype(bool), _expected_labels(stream))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scenario": "geyser"}, "scenario 'geyser' is unknown; use one of"),
        ({"hours": 0.0}, "hours = 0.0"),
        ({"hours": math.nan}, "hours = nan"),
        ({"period_s": -1.0}, "period = -1.0 s"),
        ({"hours": 1e-4}, "gives 0 rows"),
        ({"seed": -1}, "seed = -1"),
        ({"faults": [FaultSpec("drift", channel="rpm")]}, "channel 'rpm'"),
        ({"faults": [FaultSpec("drift", start_s=7200.0)]}, "stream is only 1 h long"),
        ({"faults": [FaultSpec("drift", 3000.0, 1200.0)]}, "after the stream's end"),
        ({"faults": [FaultSpec("drift", 10.2, 0.5)]}, "covers no sample"),
        ({"faults": [FaultSpec("noise")] * 7, "hours": 0.003}, "cannot fit 7 randomly"),
        ({"faults": [FaultSpec("noise", duration_s=3500.0)]}, "cannot fit 1 randomly"),
    ],
)
def test_bad_arguments_raise_errors_that_name_the_value(
    kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"scenario": "well", "hours": 1.0} | kwargs
    scenario = args.pop("scenario")
    with pytest.raises(AewatchError, match=message):
        simulate(scenario, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "drfit"}, "did you mean 'drift'"),
        ({"kind": "drift", "start_s": -1.0}, "start = -1.0 s"),
        ({"kind": "drift", "duration_s": 0.0}, "duration = 0.0 s"),
        ({"kind": "drift", "channel": ""}, "empty channel"),
    ],
)
def test_fault_spec_rejects_bad_fields(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(AewatchError, match=message):
        FaultSpec(**kwargs)  # type: ignore[arg-type]


# --- fault syntax ---------------------------------------------------------------------


def test_parse_faults_reads_the_documented_examples() -> None:
    assert parse_faults("") == []
    assert parse_faults("  ") == []
    assert parse_faults("drift,spikes@3.5+0.25:whp_bar, stuck") == [
        FaultSpec("drift"),
        FaultSpec("spikes", start_s=12_600.0, duration_s=900.0, channel="whp_bar"),
        FaultSpec("stuck"),
    ]
    assert parse_faults("noise:flow_kg_s") == [FaultSpec("noise", channel="flow_kg_s")]
    assert parse_faults("all") == [FaultSpec(kind) for kind in FAULT_KINDS]
    assert len(parse_faults("all,step@1+0.5")) == len(FAULT_KINDS) + 1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(FAULT_KINDS),
            st.one_of(st.none(), st.tuples(st.floats(0, 1e4), st.floats(1e-3, 1e3))),
            st.one_of(st.none(), st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_parse_faults_round_trips_its_syntax(
    items: list[tuple[str, tuple[float, float] | None, str | None]],
) -> None:
    texts, expected = [], []
    for kind, times, channel in items:
        text = kind if times is None else f"{kind}@{times[0]!r}+{times[1]!r}"
        texts.append(text if channel is None else f"{text}:{channel}")
        start_s, duration_s = (None, None) if times is None else (times[0] * 3600, times[1] * 3600)
        expected.append(FaultSpec(kind, start_s, duration_s, channel))
    assert parse_faults(",".join(texts)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("drfit", "'drfit'.*did you mean 'drift'"),
        ("drift,,step", "'' .*empty"),
        ("drift,", "empty"),
        ("drift@1", "'drift@1'.*START_H\\+DURATION_H"),
        ("drift@x+1", "START_H = 'x'"),
        ("drift@1+y", "DURATION_H = 'y'"),
        ("drift@nan+1", "START_H = 'nan' is not a number"),
        ("drift@-1+1", "start = -3600.0 s"),
        ("drift@1+0", "duration = 0.0 s"),
        ("drift:", "empty channel"),
        ("all@1+1", "'all' takes no time or channel"),
    ],
)
def test_parse_faults_rejects_bad_text_naming_the_item_and_syntax(text: str, message: str) -> None:
    with pytest.raises(AewatchError, match=message) as caught:
        parse_faults(text)
    assert "syntax: comma-separated items KIND" in str(caught.value)


# --- signals --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    u=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=400),
    tau_s=st.floats(0.01, 1e4),
    period_s=st.floats(0.1, 100.0),
    initial=st.one_of(st.none(), st.floats(-1e3, 1e3)),
)
def test_first_order_lag_matches_the_recursion(
    u: list[float], tau_s: float, period_s: float, initial: float | None
) -> None:
    a = math.exp(-period_s / tau_s)
    expected, prev = [], u[0] if initial is None else initial
    for x in u:
        prev = a * prev + (1 - a) * x
        expected.append(prev)
    got = first_order_lag(np.array(u), tau_s=tau_s, period_s=period_s, initial=initial)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_colored_noise_has_the_asked_std() -> None:
    noise = colored_noise(np.random.default_rng(0), 200_000, sd=0.5, tau_s=10.0, period_s=1.0)
    assert abs(np.std(noise) - 0.5) < 0.03
    assert np.corrcoef(noise[:-10], noise[10:])[0, 1] == pytest.approx(math.exp(-1), abs=0.03)


# --- CSV and command line -------------------------------------------------------------


@pytest.mark.parametrize("period_s", [1.0, 0.5])
def test_csv_round_trips_through_pandas(tmp_path: Path, period_s: float) -> None:
    stream = simulate("pump", hours=0.5, period_s=period_s, faults=parse_faults("all"), seed=3)
    path = tmp_path / "pump.csv"
    write_csv(stream, path)

    frame = pd.read_csv(path)
    assert list(frame.columns) == ["timestamp", *stream.channels, "anomaly"]
    assert frame["timestamp"].iloc[0].startswith("2026-01-01T00:00:00")
    assert frame["timestamp"].iloc[0].endswith("Z")
    epoch = pd.to_datetime(frame["timestamp"], utc=True).dt.as_unit("ms").astype("int64") / 1e3
    np.testing.assert_allclose(epoch.to_numpy(), stream.timestamps, rtol=0, atol=1e-6)
    np.testing.assert_allclose(frame[list(stream.channels)].to_numpy(), stream.values, rtol=1e-5)
    np.testing.assert_array_equal(frame["anomaly"].to_numpy(), stream.labels)


def test_write_csv_names_an_unwritable_path(tmp_path: Path) -> None:
    stream = simulate("well", hours=0.1)
    with pytest.raises(AewatchError, match=r"cannot write .*missing.*writable --out"):
        write_csv(stream, tmp_path / "missing" / "well.csv")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aewatch")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_writes_the_csv_and_reports_each_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "well.csv"
    args = _parser().parse_args(
        "simulate --scenario well --hours 2 --seed 1 --start 2026-03-01T06:00 "
        f"--faults drift,spikes@1+0.25:whp_bar --out {out}".split()
    )
    assert args.func(args) == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[1].split() == [
        "spikes",
        "whp_bar",
        "2026-03-01T07:00:00Z",
        "..",
        "2026-03-01T07:15:00Z",
    ]
    assert str(out) in lines[2]
    frame = pd.read_csv(out)
    assert frame.shape == (7200, 6)
    assert frame["timestamp"].iloc[0] == "2026-03-01T06:00:00Z"
    assert lines[0].split()[0] == "drift"
    assert frame["anomaly"].sum() > 900  # the spikes' quarter hour and the drift


def test_cli_rejects_a_bad_start_date(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--scenario", "well", "--start", "yesterday", "--out", "x.csv"]
    with pytest.raises(SystemExit):
        _parser().parse_args(argv)
    assert "--start 'yesterday' is not an ISO date/time" in capsys.readouterr().err
