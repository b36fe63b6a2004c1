"""The channel checks on constructed signals: what each must raise, and what it must not."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from aewatch.core import checks as checks_module
from aewatch.core.checks import (
    CHECK_KINDS,
    MOVE_CHANNELS,
    OFF_LIMIT,
    SPREAD_MOVE_CHANNELS,
    ChannelChecks,
    ChannelMonitor,
    calibrate_checks,
    cusum_limit,
    steady_levels,
)
from aewatch.core.residual import ResidualModel
from aewatch.core.window import sliding_windows

PERIOD_S = 10.0
WINDOW = 10
NOISE = 0.1
_F32 = 1e-5  # float32 predictions: what "the same" means for statistics built on them


def _plant(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    """Three coupled channels: a slow process with set-point moves, each with sensor noise.

    The set-point moves by about 10 noise levels every 2.8 hours, ramping over half an hour.
    """
    steps = np.repeat(rng.normal(0.0, 1.0, n // 1000 + 1), 1000)[:n]
    process = np.convolve(steps, np.ones(200) / 200, mode="same") + 50.0
    clean = np.column_stack((process, 2.0 * process - 40.0, 0.5 * process + 10.0))
    return clean + rng.normal(0.0, NOISE, clean.shape)


def _calibrated(
    model: ResidualModel,
    rows: npt.NDArray[np.float64],
    kinds: tuple[str, ...] = CHECK_KINDS,
    moves: int = 0,
    move_next: bool = False,
) -> ChannelChecks:
    """``model``'s checks calibrated on the newer half of ``rows`` (40 000 of them)."""
    return calibrate_checks(
        model,
        [rows[20_000:]],
        [rows],
        period_s=PERIOD_S,
        hop=1,
        false_alerts_per_day=0.5,
        stuck_s=60.0,
        range_margin=0.25,
        kinds=kinds,
        moves=moves,
        move_next=move_next,
    )


@pytest.fixture(scope="module")
def checks() -> ChannelChecks:
    rows = _plant(np.random.default_rng(1), 40_000)
    model = ResidualModel.fit([rows[:20_000]], lags=6).with_noise_from([rows[20_000:]])
    return _calibrated(model, rows)


def _first_flag(
    checks: ChannelChecks, rows: npt.NDArray[np.float64], channel: int | None = None
) -> tuple[int | None, str, int]:
    """Row of the first window at a limit (None: never), its check and its channel.

    With ``channel``, only that channel's checks count.
    """
    monitor = ChannelMonitor(checks)
    windows = sliding_windows(rows.astype(np.float32), WINDOW, 1)
    observed = monitor.observe(np.full(len(windows), monitor.open()), windows)
    if channel is not None:
        observed.ratios[:, :, np.arange(rows.shape[1]) != channel] = 0.0
    over = np.flatnonzero(observed.worst() >= 1.0)
    if not len(over):
        return None, "", -1
    i = int(over[0])
    check, channel = np.unravel_index(int(observed.ratios[i].argmax()), observed.ratios[i].shape)
    return i + WINDOW - 1, CHECK_KINDS[int(check)], int(channel)


def test_a_clean_plant_raises_nothing(checks: ChannelChecks) -> None:
    rows = _plant(np.random.default_rng(2), 8640)  # a day of 10 s samples
    assert _first_flag(checks, rows)[0] is None


def test_a_two_noise_step_is_raised_as_a_shift_on_its_channel(checks: ChannelChecks) -> None:
    rows = _plant(np.random.default_rng(3), 4000)
    rows[2000:, 2] += 2.0 * checks.model.noise[2]
    row, kind, channel = _first_flag(checks, rows, channel=2)
    assert row is not None and 2000 <= row < 2000 + 60, row  # within 10 minutes
    assert (kind, channel) == ("shift", 2)


def test_a_shift_partly_undone_stays_raised_until_the_channel_is_back(
    checks: ChannelChecks,
) -> None:
    """A 4-noise step that settles at 0.8 noise levels (under the allowance, so the CUSUM
    falls back) is one shift held to the end, released once the channel is back."""
    rows = _plant(np.random.default_rng(5), 1500)
    noise = checks.model.noise[2]
    rows[300:600, 2] += 4.0 * noise
    rows[600:1200, 2] += 0.8 * noise
    monitor = ChannelMonitor(checks)
    windows = sliding_windows(rows.astype(np.float32), WINDOW, 1)
    shift = monitor.observe(np.full(len(windows), monitor.open()), windows).ratios[:, 0, 2]
    on = np.flatnonzero(shift >= 1.0) + WINDOW - 1  # the rows whose window is at the limit
    assert 300 <= on[0] < 330
    assert len(on) == on[-1] - on[0] + 1  # no gap: one alert, not two
    assert 1200 <= on[-1] < 1300


def test_a_frozen_transmitter_is_raised_as_stuck(checks: ChannelChecks) -> None:
    rows = _plant(np.random.default_rng(4), 4000)
    rows[2000:, 2] = rows[1999, 2]
    row, kind, channel = _first_flag(checks, rows, channel=2)
    assert row is not None and 2000 <= row <= 2000 + checks.stuck_after[2] + 1
    assert (kind, channel) == ("stuck", 2)


def test_a_noisier_sensor_is_raised_as_noise(checks: ChannelChecks) -> None:
    rows = _plant(np.random.default_rng(5), 4000)
    rows[2000:, 0] += np.random.default_rng(6).normal(0.0, 2.0 * NOISE, 2000)
    row, kind, channel = _first_flag(checks, rows, channel=0)
    assert row is not None and 2000 <= row < 2000 + 60
    assert (kind, channel) == ("noise", 0)


def test_a_reading_far_outside_the_envelope_is_raised_as_range(checks: ChannelChecks) -> None:
    rows = _plant(np.random.default_rng(7), 3000)
    rows[2000:, 0] = checks.high[0] + 5.0
    row, kind, channel = _first_flag(checks, rows, channel=0)
    assert row == 2000
    assert channel == 0 and kind in {"range", "shift"}


def _spiked(rows: npt.NDArray[np.float64], at: list[int], size: float) -> None:
    """Add one-sample spikes of ``size`` on channel 1 at rows ``at``, in place."""
    rows[at, 1] += size


def test_repeated_spikes_are_raised_as_spikes_with_the_spike_measured(
    checks: ChannelChecks,
) -> None:
    rows = _plant(np.random.default_rng(12), 4000)
    size = 10.0 * NOISE * 2.0  # channel 1 is twice channel 0: 10 of its sensor's noise sd
    _spiked(rows, [2000, 2030, 2060], size)
    monitor = ChannelMonitor(checks)
    windows = sliding_windows(rows.astype(np.float32), WINDOW, 1)
    observed = monitor.observe(np.full(len(windows), monitor.open()), windows)
    spikes = observed.ratios[:, CHECK_KINDS.index("spikes")]  # (windows, channels)
    over = np.flatnonzero(spikes.max(axis=1) >= 1.0)
    # Judged when the sample after the second spike arrives, on channel 1 alone.
    assert len(over) and over[0] + WINDOW - 1 == 2031, over[:3]
    i = int(over[0])
    assert spikes[:, [0, 2]].max() < 0.6
    neighbours = (rows[2029, 1] + rows[2031, 1]) / 2.0
    assert observed.spike[i, 1] == pytest.approx(rows[2030, 1], abs=1e-4)
    assert observed.spike_expected[i, 1] == pytest.approx(neighbours, abs=1e-4)


def test_one_spike_a_step_or_a_ramp_is_not_a_spike(checks: ChannelChecks) -> None:
    rows = _plant(np.random.default_rng(13), 4000)
    size = 20.0 * NOISE * 2.0
    _spiked(rows, [1000], size)  # a single glitch
    rows[2000:, 1] += size  # a set-point step, as sudden as a spike
    rows[3000:3010, 1] += np.linspace(0.0, size, 10)  # and a fast ramp back
    rows[3010:, 1] += size
    monitor = ChannelMonitor(checks)
    windows = sliding_windows(rows.astype(np.float32), WINDOW, 1)
    observed = monitor.observe(np.full(len(windows), monitor.open()), windows)
    # the glitch alone counts (1 of the 1.5 the least limit needs); the step and ramp not
    assert observed.ratios[:, CHECK_KINDS.index("spikes")].max() == pytest.approx(1.0 / 1.5)


def test_a_history_with_glitches_needs_more_spikes(checks: ChannelChecks) -> None:
    rows = _plant(np.random.default_rng(14), 40_000)
    _spiked(rows, [5000, 5010, 5020, 30_000, 30_005], 20.0 * NOISE * 2.0)
    glitchy = _calibrated(checks.model, rows)
    assert checks.spike_limit is not None and glitchy.spike_limit is not None
    assert checks.spike_limit[1] == 1.5  # the least: a clean history has no spike
    assert glitchy.spike_limit[1] > 4.1  # 1.5 x the count (2.78) of the three close spikes
    assert glitchy.spike_limit[0] == 1.5


def test_a_bundle_from_before_the_spike_check_looks_for_none(checks: ChannelChecks) -> None:
    old = checks.to_json()
    for key in ("spike_unit", "spike_limit", "spike_level", "spike_halflife"):
        del old[key]
    loaded = ChannelChecks.from_json(old)
    assert loaded.spike_limit is None
    rows = _plant(np.random.default_rng(15), 2000)
    _spiked(rows, list(range(1000, 1100, 10)), 20.0 * NOISE * 2.0)
    monitor = ChannelMonitor(loaded)
    windows = sliding_windows(rows.astype(np.float32), WINDOW, 1)
    observed = monitor.observe(np.full(len(windows), monitor.open()), windows)
    assert observed.ratios[:, CHECK_KINDS.index("spikes")].max() == 0.0
    half = checks.to_json()
    del half["spike_limit"]
    with pytest.raises(ValueError, match="spike_unit and spike_limit"):
        ChannelChecks.from_json(half)


def test_predictions_from_windows_match_the_rows(checks: ChannelChecks) -> None:
    rows = _plant(np.random.default_rng(8), 200).astype(np.float32)
    windows = sliding_windows(rows, WINDOW, 1)
    expected = checks.model.expected(windows, 1)[:, -1]
    residual = checks.model.residuals([rows])
    lags = checks.model.lags
    assert np.allclose(rows[WINDOW - 1 :] - expected, residual[WINDOW - 1 - lags :], atol=1e-4)


def _hovering(rows: npt.NDArray[np.float64], checks: ChannelChecks, start: int, end: int) -> None:
    """Channel 0 at its envelope's upper edge over ``[start, end)``: a noise level above
    it and a noise level below it by turns, every 20 samples."""
    turns = np.where((np.arange(end - start) // 20) % 2 == 0, 1.0, -1.0)
    rows[start:end, 0] = checks.high[0] + turns * checks.model.noise[0]


def test_a_reading_that_hovers_at_the_envelope_edge_stays_outside_until_back_in(
    checks: ChannelChecks,
) -> None:
    rows = _plant(np.random.default_rng(8), 3000)
    _hovering(rows, checks, 2000, 2400)
    rows[2400:, 0] = (checks.low[0] + checks.high[0]) / 2.0  # well back inside
    monitor = ChannelMonitor(checks)
    windows = sliding_windows(rows.astype(np.float32), WINDOW, 1)
    ratios = monitor.observe(np.full(len(windows), monitor.open()), windows).ratios
    in_range = ratios[:, CHECK_KINDS.index("range"), 0]
    ends = np.arange(len(windows)) + WINDOW - 1  # the row each window ends on
    assert (in_range[(ends >= 2000) & (ends < 2400)] >= 1.0).all()  # one excursion, held
    assert (in_range[ends >= 2400] < 1.0).all()
    assert (in_range[ends < 2000] < 1.0).all()


def test_assets_keep_their_own_statistics(checks: ChannelChecks) -> None:
    """Windows of two assets interleaved give what each gives alone."""
    a, b = _plant(np.random.default_rng(9), 600), _plant(np.random.default_rng(10), 600)
    b[300:, 0] += 3.0 * checks.model.noise[0]
    wa = sliding_windows(a.astype(np.float32), WINDOW, 1)
    wb = sliding_windows(b.astype(np.float32), WINDOW, 1)
    alone = [ChannelMonitor(checks) for _ in range(2)]
    alone[0].open()
    ra = alone[0].observe(np.zeros(len(wa), np.int64), wa).ratios
    alone[1].open()
    rb = alone[1].observe(np.zeros(len(wb), np.int64), wb).ratios
    together = ChannelMonitor(checks)
    slots = np.array([together.open(), together.open()] * len(wa))
    mixed = np.stack((wa, wb), axis=1).reshape(-1, *wa.shape[1:])
    rt = together.observe(slots, mixed).ratios
    assert np.allclose(rt[0::2], ra) and np.allclose(rt[1::2], rb)


@pytest.mark.parametrize("fault", [None, "step", "spikes", "edge"])
def test_a_long_batch_folds_in_as_window_by_window(
    checks: ChannelChecks, fault: str | None
) -> None:
    """Many windows of one asset at once (along time) give what one at a time gives."""
    rows = _plant(np.random.default_rng(11), 900)
    if fault == "step":  # reaches the limit: the batch falls back to sample by sample
        rows[500:, 2] += 4.0 * checks.model.noise[2]
    if fault == "spikes":  # one spike folds in along time, the second reaches the limit
        _spiked(rows, [400, 600, 650], 20.0 * NOISE * 2.0)
    if fault == "edge":  # held outside its envelope across the two batches
        _hovering(rows, checks, 250, 400)
    windows = sliding_windows(rows.astype(np.float32), WINDOW, 1)
    batch, single = ChannelMonitor(checks), ChannelMonitor(checks)
    cut = 300  # two batches: the second continues from the first's statistics
    row = batch.open()
    first = batch.observe(np.full(cut, row), windows[:cut])
    second = batch.observe(np.full(len(windows) - cut, row), windows[cut:])
    slot = single.open()
    one = [single.observe(np.array([slot]), windows[i : i + 1]) for i in range(len(windows))]

    def joined(name: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        together = np.concatenate((getattr(first, name), getattr(second, name)))
        return together, np.concatenate([getattr(o, name) for o in one])

    together, alone = joined("ratios")
    # The predictions are float32 (ResidualModel.expected), and a product of one window's
    # samples may round differently from the same product in a batch (numpy 2.4 takes
    # another kernel for one row): equal to float32's precision, not to the last bit.
    assert np.allclose(together, alone, rtol=_F32, atol=_F32)
    # The residual's level and spread serve the findings of a shift or noise check at its
    # limit: there they must agree too.
    at_limit = (alone[:, :2].max(axis=1) >= 1.0).any(axis=1)
    for name in ("level", "spread"):
        mine, reference = joined(name)
        assert np.allclose(mine[at_limit], reference[at_limit], rtol=_F32, atol=_F32), name
    spikes_at_limit = alone[:, CHECK_KINDS.index("spikes")].max(axis=1) >= 1.0
    for name in ("spike", "spike_expected"):
        mine, reference = joined(name)
        assert np.allclose(mine[spikes_at_limit], reference[spikes_at_limit], equal_nan=True)
    worst = np.concatenate((first.worst(), second.worst()))
    assert (worst >= 1.0).any() == (fault is not None)


@pytest.mark.parametrize("layout", ["grouped", "interleaved"])
def test_a_large_call_observed_in_slices_gives_what_one_pass_gives(
    checks: ChannelChecks, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call of more than CHUNK_WINDOWS windows (a daemon's flush under load) goes in
    slices; each asset's statistics carry across them, a fault's alert included."""
    runs = [_plant(np.random.default_rng(20 + i), 300) for i in range(3)]
    runs[1][150:, 2] += 4.0 * checks.model.noise[2]  # a step that reaches its limit
    _spiked(runs[2], [100, 140, 180], 20.0 * NOISE * 2.0)
    per_asset = [sliding_windows(r.astype(np.float32), WINDOW, 1) for r in runs]

    def observed(chunk: int) -> object:
        monkeypatch.setattr(checks_module, "CHUNK_WINDOWS", chunk)
        monitor = ChannelMonitor(checks)
        slots = [monitor.open() for _ in "abc"]
        if layout == "grouped":  # as a detector hands them over: each asset's together
            rows = np.repeat(slots, [len(w) for w in per_asset])
            windows = np.concatenate(per_asset)
        else:
            rows = np.tile(slots, len(per_asset[0]))
            windows = np.stack(per_asset, axis=1).reshape(-1, *per_asset[0].shape[1:])
        return monitor.observe(rows, windows)

    whole, sliced = observed(10**6), observed(64)
    assert (whole.worst() >= 1.0).any()
    for name in ("ratios", "measured", "expected"):
        assert np.allclose(getattr(sliced, name), getattr(whole, name), rtol=_F32, atol=_F32)
    # level and spread serve a shift or noise check at its limit, spikes the spikes check
    # (a window folded in along time leaves them unset): compared there.
    at_limit = (whole.ratios[:, :2].max(axis=1) >= 1.0).any(axis=1)
    spikes_at_limit = whole.ratios[:, CHECK_KINDS.index("spikes")].max(axis=1) >= 1.0
    assert at_limit.any() and spikes_at_limit.any()
    for name, where in (("level", at_limit), ("spread", at_limit), ("spike", spikes_at_limit)):
        mine, reference = getattr(sliced, name)[where], getattr(whole, name)[where]
        assert np.allclose(mine, reference, rtol=_F32, atol=_F32, equal_nan=True), name


def test_checks_survive_json(checks: ChannelChecks) -> None:
    again = ChannelChecks.from_json(checks.to_json())
    assert again.to_json() == checks.to_json()
    broken = checks.to_json()
    broken["stuck_after"] = [0.0] * 3
    with pytest.raises(ValueError, match="stuck_after"):
        ChannelChecks.from_json(broken)
    moving = replace(checks, moves=MOVE_CHANNELS, spread_moves=SPREAD_MOVE_CHANNELS)
    again = ChannelChecks.from_json(moving.to_json())
    assert (again.moves, again.spread_moves) == (MOVE_CHANNELS, SPREAD_MOVE_CHANNELS)
    older = checks.to_json()
    del older["moves"], older["spread_moves"]  # from before the process-move rule
    assert (ChannelChecks.from_json(older).moves, ChannelChecks.from_json(older).spread_moves) == (
        0,
        0,
    )
    for name in ("moves", "spread_moves"):
        with pytest.raises(ValueError, match=name):
            ChannelChecks.from_json({**checks.to_json(), name: -1})
    assert ChannelChecks.from_json(replace(moving, move_next=True).to_json()).move_next
    del older["move_next"]  # from before the sample after a move counted with it
    assert ChannelChecks.from_json(older).move_next is False
    with pytest.raises(ValueError, match="move_next"):
        ChannelChecks.from_json({**checks.to_json(), "move_next": 1})


def _moving_plant(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    """Four channels following one set-point that jumps by about 20 noise levels every 500
    samples, each through its own lag shorter than a sample (a pump's speed, current, head
    and flow). A jump comes at any moment inside a sample, so in the sample after it every
    channel has moved part of the way, by a share the predictor cannot know: the
    channels' residuals are large together for that sample.
    """
    sub = 10  # simulated steps per sample
    levels = rng.normal(50.0, 20.0 * NOISE, n // 500 + 2)
    at = np.arange(n * sub) + rng.integers(0, sub)
    setpoint = levels[at // (500 * sub)]
    channels = []
    for tau, gain in ((3.0, 1.0), (4.0, 2.0), (2.0, 0.5), (1.0, -1.0)):  # in steps
        smooth = np.empty_like(setpoint)
        value, share = setpoint[0], 1.0 - np.exp(-1.0 / tau)
        for i, target in enumerate(setpoint):
            value += share * (target - value)
            smooth[i] = value
        channels.append(gain * smooth[::sub])
    clean = np.column_stack(channels)
    return clean + rng.normal(0.0, NOISE, clean.shape)


def test_set_point_moves_do_not_set_the_shift_limits() -> None:
    """Calibrated with the process-move rule, the samples right after each move count at
    most a noise level, so the moves no longer set the shift limits: every limit is lower,
    and a day of such moves still raises nothing."""
    rows = _moving_plant(np.random.default_rng(11), 40_000)
    model = ResidualModel.fit([rows[:20_000]], lags=6).with_noise_from([rows[20_000:]])
    every, gated = (_calibrated(model, rows, moves=moves) for moves in (0, MOVE_CHANNELS))
    assert (gated.shift_limit < every.shift_limit).all()
    assert gated.shift_limit.max() < 0.75 * every.shift_limit.max()
    assert _first_flag(gated, _moving_plant(np.random.default_rng(12), 8640))[0] is None
    following = _calibrated(model, rows, moves=MOVE_CHANNELS, move_next=True)
    assert following.move_next and (following.shift_limit <= gated.shift_limit).all()
    assert _first_flag(following, _moving_plant(np.random.default_rng(12), 8640))[0] is None


def test_channels_departing_together_count_as_a_process_move() -> None:
    """Three samples in which every channel reads 6 noise levels off (a move the
    predictions did not see coming) raise a shift when each sample counts, and nothing
    when the rule caps them; one channel departing alone is counted either way."""
    rng = np.random.default_rng(21)
    rows = rng.normal(0.0, NOISE, (40_000, 3))
    every = _calibrated(ResidualModel.level([rows]), rows, kinds=("shift",))
    capped = replace(every, moves=MOVE_CHANNELS)
    together, alone = rng.normal(0.0, NOISE, (2, 3000, 3))
    together[2000:2003] += 6.0 * every.model.noise
    alone[2000:2003, 1] += 6.0 * every.model.noise[1]
    assert _first_flag(every, together)[1] == "shift"
    assert _first_flag(capped, together)[0] is None
    assert _first_flag(every, alone)[1:] == _first_flag(capped, alone)[1:] == ("shift", 1)


def _leader_trailing(
    rng: np.random.Generator, noise: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Noise with four moves a few samples apart: two samples in which every channel
    reads 6 noise levels off, then one in which the leader (channel 1) alone still does."""
    rows = rng.normal(0.0, NOISE, (3000, 3))
    for start in (2000, 2004, 2008, 2012):
        rows[start : start + 2] += 6.0 * noise
        rows[start + 2, 1] += 6.0 * noise[1]
    return rows


def test_the_sample_after_a_move_counts_as_part_of_it() -> None:
    """With ``move_next`` the sample right after a move is capped too: the leader still
    reading off while the predictions catch up raises nothing, where it adds up without
    the rule; a channel departing on its own is counted either way, and the flag carries
    from one call to the next."""
    rng = np.random.default_rng(23)
    rows = rng.normal(0.0, NOISE, (40_000, 3))
    every = _calibrated(ResidualModel.level([rows]), rows, kinds=("shift",))
    capped = replace(every, moves=MOVE_CHANNELS)
    following = replace(capped, move_next=True)
    trailing = _leader_trailing(rng, every.model.noise)
    assert _first_flag(capped, trailing)[1:] == ("shift", 1)
    assert _first_flag(following, trailing)[0] is None
    alone = rng.normal(0.0, NOISE, (3000, 3))
    alone[2000:2003, 1] += 6.0 * every.model.noise[1]
    assert _first_flag(following, alone)[1:] == ("shift", 1)
    # The flag of each call's newest sample reaches the next call: a window at a time
    # (every sample the first of its call) gives what the whole run at once gives.
    windows = sliding_windows(trailing.astype(np.float32), WINDOW, 1)
    batch, single = ChannelMonitor(following), ChannelMonitor(following)
    at_once = batch.observe(np.full(len(windows), batch.open()), windows).ratios
    slot = single.open()
    one_by_one = [
        single.observe(np.array([slot]), windows[i : i + 1]).ratios for i in range(len(windows))
    ]
    assert np.allclose(at_once, np.concatenate(one_by_one))
    assert at_once[:, CHECK_KINDS.index("shift")].max() < 1.0
    # Calibration counts them the same way: such moves in the held-out rows set the
    # leader's limit without the rule and not with it.
    rows[30_000:33_000] = _leader_trailing(rng, every.model.noise)
    level = ResidualModel.level([rows])
    without, with_next = (
        _calibrated(level, rows, kinds=("shift",), moves=MOVE_CHANNELS, move_next=next_)
        for next_ in (False, True)
    )
    assert with_next.shift_limit[1] < 0.75 * without.shift_limit[1]


def test_two_channels_departing_together_do_not_count_as_noise() -> None:
    """Two channels 6 noise levels off for three samples, four times within minutes (a
    move the predictions did not see coming, and its echoes) raise noise when each sample
    counts, and nothing when the noise check caps them; one channel alone still does."""
    rng = np.random.default_rng(22)
    rows = rng.normal(0.0, NOISE, (40_000, 3))
    every = _calibrated(ResidualModel.level([rows]), rows, kinds=("noise",))
    capped = replace(every, spread_moves=SPREAD_MOVE_CHANNELS)
    together, alone = rng.normal(0.0, NOISE, (2, 3000, 3))
    for start in (2000, 2010, 2020, 2030):
        together[start : start + 3, :2] += 6.0 * every.model.noise[:2]
        alone[start : start + 3, 1] += 6.0 * every.model.noise[1]
    assert _first_flag(every, together)[1] == "noise"
    assert _first_flag(capped, together)[0] is None
    assert _first_flag(every, alone)[1:] == _first_flag(capped, alone)[1:] == ("noise", 1)


def test_cusum_limit_grows_with_the_run_length() -> None:
    assert cusum_limit(1e6, 1.0) > cusum_limit(1e4, 1.0) > 0
    with pytest.raises(ValueError):
        cusum_limit(0.5, 1.0)


def test_the_core_imports_no_torch_paho_pydantic_or_safetensors() -> None:
    """``aewatch.core`` and every module in it (checks, detector, threshold, alerts, ...)
    load none of the shell's libraries, nor scipy, which ``Threshold`` imports lazily."""
    code = (
        "import sys, importlib, pkgutil, aewatch.core; "
        "[importlib.import_module(m.name) "
        "for m in pkgutil.iter_modules(aewatch.core.__path__, 'aewatch.core.')]; "
        "print(sorted(m for m in ('torch', 'paho', 'pydantic', 'safetensors', 'scipy') "
        "if m in sys.modules)); "
        "print(sorted(m for m in sys.modules if m.startswith('aewatch.core.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, core_modules = out.stdout.strip().splitlines()
    assert loaded == "[]"
    for name in ("alerts", "checks", "decode", "align", "window", "messages", "pipeline"):
        assert f"'aewatch.core.{name}'" in core_modules


def test_checks_that_do_not_run_report_nothing(checks: ChannelChecks) -> None:
    rows = _plant(np.random.default_rng(16), 40_000)
    level = ResidualModel.level([rows[:20_000]])
    assert np.allclose(level.noise, NOISE, rtol=0.1)  # white noise: the sample-to-sample spread
    only = _calibrated(level, rows, kinds=("stuck",))
    assert only.kinds == ("stuck",) and only.spike_limit is None
    again = ChannelChecks.from_json(only.to_json())
    assert again.kinds == ("stuck",)
    day = _plant(np.random.default_rng(17), 3000)
    day[1000:, 0] += checks.high[0] - checks.low[0]  # far outside the envelope: range would raise
    day[2000:, 2] = day[1999, 2]  # frozen
    row, kind, channel = _first_flag(again, day)
    assert (kind, channel) == ("stuck", 2)
    assert row is not None and 2000 <= row <= 2000 + again.stuck_after[2] + 1
    legacy = checks.to_json()
    del legacy["kinds"]
    assert ChannelChecks.from_json(legacy).kinds == CHECK_KINDS
    with pytest.raises(ValueError, match="kinds"):
        ChannelChecks.from_json({**legacy, "kinds": ["stuck", "hunch"]})


def test_a_level_that_wanders_over_the_history_is_not_steady() -> None:
    """White noise holds its level; a channel warming through the history does not."""
    rng = np.random.default_rng(21)
    rows = rng.normal(0.0, NOISE, (2000, 2))
    rows[:, 1] += np.linspace(0.0, 3.0 * NOISE, 2000)  # warms by three noise levels
    level = ResidualModel.level([rows]).with_noise_from([rows])
    assert steady_levels([rows], level, np.ones(2)).tolist() == [True, False]


def test_checks_with_values_past_their_arithmetic_are_refused(checks: ChannelChecks) -> None:
    """A spike unit of 1e308 (a mutated bundle, drawn by test_bundle_validation's fuzzing)
    overflowed when multiplied by the spike level; it is refused on load, named."""
    saved = checks.to_json()
    c = checks.model.channels
    for name, value in (("spike_unit", 1e308), ("high", 1e305), ("spike_level", 1e7)):
        huge = {**saved, name: value if name == "spike_level" else [value] * c}
        with pytest.raises(ValueError, match=f"{name} holds a value too large"):
            ChannelChecks.from_json(huge)
    off = {**saved, "shift_limit": [OFF_LIMIT] * c, "noise_limit": [OFF_LIMIT] * c}
    assert ChannelChecks.from_json(off).shift_limit.tolist() == [OFF_LIMIT] * c  # turned off
    assert ChannelChecks.from_json(saved).to_json() == saved


def test_a_residual_model_too_large_for_float32_predictions_is_refused(
    checks: ChannelChecks,
) -> None:
    """Finite in float64 but past float32's range (a mutated bundle): refused on load, not
    an overflow in the hot path's float32 predictions."""
    saved = checks.model.to_json()
    huge = {**saved, "weights": [[1e300] * len(row) for row in saved["weights"]]}
    with pytest.raises(ValueError, match="too large for float32"):
        ResidualModel.from_json(huge)
    tiny = {**saved, "scale": [1e-300] * len(saved["scale"])}
    with pytest.raises(ValueError, match="too large for float32"):
        ResidualModel.from_json(tiny)
    assert ResidualModel.from_json(saved).lags == checks.model.lags
