"""Tests for aewatch.core.pipeline: the streaming path against offline scoring, and counts.

The oracle is :func:`aewatch.model.offline.score_table`, which scores a whole table through
the same Window, Scorer and Detector. Feeding the table's readings one at a time through
:class:`Pipeline` must give the same windows and decisions however the flushes fall.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aewatch.core.alerts import AlertEvent, OpenAlert
from aewatch.core.decode import Reading, Row, Series
from aewatch.core.messages import state_message
from aewatch.core.pipeline import COUNTS, Pipeline, Scored
from aewatch.daemon.fleet import Fleet, ServedModel
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table
from aewatch.model.fit import FitSettings
from aewatch.model.offline import score_table
from aewatch.model.train import TrainSettings, train_bundle

T0 = 1_700_000_000.0
CHANNELS = ("a", "b", "c")
PROPERTY = settings(deadline=None, max_examples=8)  # each example streams a whole table


def table(n: int, seed: int, *, fault_at: int | None = None, start_s: float = T0) -> Table:
    """``n`` rows one second apart of three related channels; a step on ``b`` at ``fault_at``."""
    rng = np.random.default_rng(seed)
    t = start_s + np.arange(n, dtype=np.float64)
    base = np.sin(t / 30.0)
    values = np.column_stack([base, 0.5 * base + 1.0, -base]) + 0.05 * rng.standard_normal((n, 3))
    if fault_at is not None:
        values[fault_at : fault_at + 80, 1] += 1.5
    return Table("x.csv", t, values, CHANNELS, None, None, np.arange(n) + 2)


def readings(rows: Table, asset: str = "w") -> list[Reading]:
    """The table as the daemon would receive it: row by row, one reading per channel."""
    return [
        Reading(asset, channel, float(t), float(v))
        for t, row in zip(rows.timestamps, rows.values, strict=True)
        for channel, v in zip(rows.channels, row, strict=True)
    ]


def with_gap(rows: Table, at: int, gap_s: float) -> Table:
    """``rows`` with every row from ``at`` on moved ``gap_s`` later."""
    t = rows.timestamps.copy()
    t[at:] += gap_s
    return Table("g.csv", t, rows.values, rows.channels, None, None, rows.lines)


def train(*, window_len: int = 10, hop: int = 1) -> ModelBundle:
    settings_ = TrainSettings(window_len=window_len, hop=hop, fit=FitSettings(show_progress=False))
    return train_bundle([table(2000, 0)], settings_).bundle


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    """A pca model (trains in well under a second): window 10, hop 1, period 1 s."""
    return train()


@pytest.fixture(scope="module")
def hop_bundle() -> ModelBundle:
    """A model whose windows overlap less: window 8, hop 3."""
    return train(window_len=8, hop=3)


def pipeline(bundle: ModelBundle, *, pattern: str = "*", **options: object) -> Pipeline:
    """A pipeline over a fresh fleet (so no alert state is shared between pipelines)."""
    fleet = Fleet([ServedModel.from_bundle(bundle, pattern=pattern)])
    return Pipeline(fleet, **options)  # type: ignore[arg-type]


def stream(
    pipe: Pipeline, feed: Sequence[Reading], *, flush_after: Iterable[int] = ()
) -> list[Scored]:
    """Ingest ``feed`` one reading at a time, flushing after the given indices and at the end."""
    flush_points = set(flush_after)
    results: list[Scored] = []
    for i, reading in enumerate(feed):
        pipe.ingest([reading])
        if i in flush_points:
            results += pipe.flush()
    return results + pipe.flush()


@dataclass
class Outcome:
    """One asset's results joined over every flush."""

    ends: list[npt.NDArray[np.float64]] = field(default_factory=list)
    scores: list[npt.NDArray[np.float32]] = field(default_factory=list)
    cuts: list[npt.NDArray[np.float32]] = field(default_factory=list)
    severities: list[npt.NDArray[np.float32]] = field(default_factory=list)
    is_firing: list[npt.NDArray[np.bool_]] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)

    @property
    def end(self) -> npt.NDArray[np.float64]:
        return np.concatenate(self.ends)

    @property
    def score(self) -> npt.NDArray[np.float32]:
        return np.concatenate(self.scores)

    @property
    def cut(self) -> npt.NDArray[np.float32]:
        return np.concatenate(self.cuts)

    @property
    def severity(self) -> npt.NDArray[np.float32]:
        return np.concatenate(self.severities)

    @property
    def firing(self) -> list[bool]:
        return [bool(f) for f in np.concatenate(self.is_firing)]

    def decisions(self) -> tuple[list[float], list[bool], list[tuple[object, ...]]]:
        """Everything but the scores, which batching may change in the last float32 bit."""
        return self.end.tolist(), self.firing, [_key(e) for e in self.events]


def outcomes(results: Iterable[Scored]) -> dict[str, Outcome]:
    joined: dict[str, Outcome] = {}
    for scored in (one for batch in results for one in batch.per_asset()):
        (asset,) = scored.assets
        outcome = joined.setdefault(asset, Outcome())
        outcome.ends.append(scored.end_timestamps)
        outcome.scores.append(scored.scores)
        outcome.cuts.append(scored.thresholds)
        outcome.severities.append(scored.severity)
        outcome.is_firing.append(scored.is_firing)
        outcome.events += scored.events
    return joined


def _key(event: AlertEvent) -> tuple[object, ...]:
    return (event.alert_id, event.state, event.started_at, event.at, event.ended_at)


# --- the streaming path equals offline scoring ------------------------------------------


@pytest.fixture(scope="module")
def faulty() -> Table:
    return table(400, 1, fault_at=200)


@pytest.fixture(scope="module")
def flushed_once(bundle: ModelBundle, faulty: Table) -> Outcome:
    return outcomes(stream(pipeline(bundle), readings(faulty)))["w"]


def test_readings_one_at_a_time_match_score_table(
    bundle: ModelBundle, faulty: Table, flushed_once: Outcome
) -> None:
    offline = score_table(bundle, faulty, asset="w")
    assert flushed_once.end.tolist() == offline.window_end.tolist()
    np.testing.assert_allclose(flushed_once.score, offline.window_score, rtol=1e-5)
    np.testing.assert_allclose(flushed_once.cut, offline.window_threshold, rtol=1e-5)
    np.testing.assert_allclose(flushed_once.severity, offline.window_severity, rtol=1e-5)
    # Severity is the worst ratio, the window error's among them: never below score / cut.
    ratio = flushed_once.score / flushed_once.cut
    assert np.all(flushed_once.severity >= ratio * (1 - 1e-6))
    assert flushed_once.severity.max() >= 1.0  # the fault's windows
    assert [_key(e) for e in flushed_once.events] == [_key(e) for e in offline.events]
    # hop 1 on a gapless table: window k ends on row k + window_len - 1.
    rows = np.arange(len(flushed_once.firing)) + bundle.window_len - 1
    assert flushed_once.firing == offline.anomaly[rows].astype(bool).tolist()
    assert [e.state for e in flushed_once.events] == ["raised", "resolved"]  # the fault is found


def test_flushing_after_every_reading_decides_the_same(
    bundle: ModelBundle, faulty: Table, flushed_once: Outcome
) -> None:
    feed = readings(faulty)
    each = outcomes(stream(pipeline(bundle), feed, flush_after=range(len(feed))))["w"]
    assert each.decisions() == flushed_once.decisions()
    np.testing.assert_allclose(each.score, flushed_once.score, rtol=1e-5)
    peaks = [e.peak_score for e in each.events]
    np.testing.assert_allclose(peaks, [e.peak_score for e in flushed_once.events], rtol=1e-5)


@PROPERTY
@given(st.data())
def test_where_the_flushes_fall_never_changes_a_decision(
    bundle: ModelBundle, faulty: Table, flushed_once: Outcome, data: st.DataObject
) -> None:
    feed = readings(faulty)
    flush_after = data.draw(st.sets(st.integers(0, len(feed) - 1), max_size=40))
    outcome = outcomes(stream(pipeline(bundle), feed, flush_after=flush_after))["w"]
    assert outcome.decisions() == flushed_once.decisions()


def test_assets_batched_together_match_separate_pipelines(bundle: ModelBundle) -> None:
    tables = {
        "w1": table(300, 1, fault_at=150),
        "w2": table(300, 2),
        "w3": table(300, 3, fault_at=60, start_s=T0 + 0.2),  # its own clock, off the grid
    }
    feeds = {asset: readings(rows, asset) for asset, rows in tables.items()}
    interleaved = [r for row in zip(*feeds.values(), strict=True) for r in row]
    shared = pipeline(bundle)
    together = outcomes(stream(shared, interleaved))
    assert shared.counts.batches == 1
    assert shared.counts.windows == sum(len(o.end) for o in together.values())
    for asset, feed in feeds.items():
        alone = outcomes(stream(pipeline(bundle), feed))[asset]
        assert together[asset].decisions() == alone.decisions()
        np.testing.assert_allclose(together[asset].score, alone.score, rtol=1e-5)
    assert together["w1"].events
    assert together["w3"].events
    assert not together["w2"].events


# --- counts -----------------------------------------------------------------------------


def test_counts_start_at_zero_for_every_name(bundle: ModelBundle) -> None:
    pipe = pipeline(bundle)
    assert pipe.counts.as_dict() == dict.fromkeys(COUNTS, 0)
    assert (pipe.assets, pipe.pending, pipe.warming) == (0, 0, 0)
    assert pipe.flush() == []


def test_max_assets_must_be_positive(bundle: ModelBundle) -> None:
    with pytest.raises(ValueError, match="max_assets"):
        pipeline(bundle, max_assets=0)


def test_late_unknown_channel_and_invalid_are_counted(bundle: ModelBundle) -> None:
    pipe = pipeline(bundle)
    rows = table(50, 1)
    pipe.ingest(readings(rows))
    pipe.ingest([Reading("w", "a", T0, 0.0)])  # row 0 was scored long ago
    pipe.ingest([Reading("w", "vibration", T0 + 50, 1.0)])
    pipe.ingest([Reading("w", "a", math.nan, 1.0), Reading("w", "b", T0 + 50, math.inf)])
    counts = pipe.counts
    assert (counts.aligned, counts.late) == (150, 1)
    assert (counts.unknown_channel, counts.invalid) == (1, 2)
    assert counts.no_model == counts.too_many_assets == counts.gaps == 0


def test_no_model_and_too_many_assets_are_counted(bundle: ModelBundle) -> None:
    pipe = pipeline(bundle, pattern="well-*", max_assets=2)
    pipe.ingest(Reading(asset, "a", T0, 1.0) for asset in ("well-1", "pump-1", "well-2"))
    pipe.ingest(Reading(asset, "a", T0, 1.0) for asset in ("well-3", "well-1", "well-3"))
    assert (pipe.counts.no_model, pipe.counts.too_many_assets) == (1, 2)
    assert (pipe.counts.aligned, pipe.assets) == (3, 2)


assets = st.sampled_from(["w1", "w2", "pump"])
channels = st.sampled_from([*CHANNELS, "x"])
times = st.one_of(st.integers(0, 40).map(lambda k: T0 + k), st.just(math.nan))
values = st.one_of(st.floats(-10, 10), st.just(math.inf))
random_readings = st.lists(st.builds(Reading, assets, channels, times, values), max_size=150)


@PROPERTY
@given(random_readings)
def test_every_reading_ends_in_exactly_one_count(bundle: ModelBundle, feed: list[Reading]) -> None:
    pipe = pipeline(bundle, pattern="w*", max_assets=1, max_late_s=3.0)
    pipe.ingest(feed)
    pipe.flush()
    fates = ("aligned", "late", "unknown_channel", "invalid", "no_model", "too_many_assets")
    assert sum(getattr(pipe.counts, name) for name in fates) == len(feed)
    assert pipe.assets <= 1


def test_a_long_gap_restarts_the_window(bundle: ModelBundle) -> None:
    length = bundle.window_len
    rows = with_gap(table(120, 4), 60, 3600.0)
    feed = readings(rows)
    pipe = pipeline(bundle)
    pipe.ingest(feed[: 60 * 3])
    assert pipe.warming == 0
    pipe.ingest(feed[60 * 3 : 61 * 3])  # the first complete row after the gap
    assert (pipe.counts.gaps, pipe.warming) == (1, 1)
    pipe.ingest(feed[61 * 3 : (60 + length - 1) * 3])
    assert pipe.warming == 1
    pipe.ingest(feed[(60 + length - 1) * 3 :])
    assert (pipe.warming, pipe.counts.gaps) == (0, 1)
    outcome = outcomes(pipe.flush())["w"]
    offline = score_table(bundle, rows, asset="w")
    assert outcome.end.tolist() == offline.window_end.tolist()
    restart = rows.timestamps[60] + (length - 1) * bundle.period_s
    assert restart in outcome.end.tolist()
    assert restart - bundle.period_s not in outcome.end.tolist()


# --- denoised ---------------------------------------------------------------------------


def test_denoised_rows_are_the_newest_hop_of_each_window_in_data_units(
    hop_bundle: ModelBundle,
) -> None:
    length, hop = hop_bundle.window_len, hop_bundle.hop
    rows = table(60, 5)
    results = stream(pipeline(hop_bundle, with_denoised=True), readings(rows))
    (scored,) = results
    assert scored.denoised is not None
    times, values = scored.denoised
    k = len(scored.end_timestamps)
    assert times.shape == (k * hop,)
    assert values.shape == (k * hop, len(CHANNELS))
    assert values.dtype == np.float32
    # Windows every hop rows, hop rows each: one row per grid time, none twice.
    first = scored.end_timestamps[0] - (hop - 1) * hop_bundle.period_s
    np.testing.assert_array_equal(times, first + np.arange(k * hop) * hop_bundle.period_s)
    # Oracle: reconstruct the table's windows directly and keep each one's newest hop rows.
    end_rows = np.searchsorted(rows.timestamps, scored.end_timestamps)
    windows = np.stack([rows.values[e - length + 1 : e + 1].T for e in end_rows])
    recon = hop_bundle.scorer().score(windows).reconstructions[:, :, -hop:]
    expected = recon.transpose(0, 2, 1).reshape(-1, len(CHANNELS))
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
    # Data units: close to the readings themselves (b sits near 1.0, not near 0).
    truth = rows.values[np.searchsorted(rows.timestamps, times)]
    assert np.abs(values - truth).mean() < 0.1


def test_denoised_is_left_out_unless_asked_for(hop_bundle: ModelBundle) -> None:
    results = stream(pipeline(hop_bundle), readings(table(60, 5)))
    assert results
    assert all(scored.denoised is None for scored in results)


# --- resuming an alert ------------------------------------------------------------------

OPEN = OpenAlert(
    "w",
    alert_id="w@2023-11-14T22:00:00.000Z",
    started_at=T0 - 13_200.0,
    peak_score=5.0,
    threshold=1.0,
    contributions={"a": 0.2, "b": 0.5, "c": 0.3},
)


def open_alert(asset: str) -> OpenAlert:
    return replace(OPEN, asset=asset)


def test_a_restored_alert_resolves_under_its_id_without_a_new_raise(
    bundle: ModelBundle,
) -> None:
    pipe = pipeline(bundle)
    assert pipe.restore_alert(open_alert("w"))
    outcome = outcomes(stream(pipe, readings(table(100, 6))))["w"]
    (resolved,) = outcome.events
    assert (resolved.alert_id, resolved.state) == (OPEN.alert_id, "resolved")
    assert (resolved.started_at, resolved.peak_score) == (OPEN.started_at, 5.0)
    assert resolved.contributions == (("b", 0.5), ("c", 0.3), ("a", 0.2))
    resolve_after = int(bundle.decision["resolve_after"])
    assert outcome.firing[: resolve_after - 1] == [True] * (resolve_after - 1)
    assert not any(outcome.firing[resolve_after - 1 :])
    assert resolved.at == outcome.end[resolve_after - 1]
    assert state_message(resolved, model="m", model_version="v")["state"] == "normal"


def test_restore_is_refused_when_the_asset_has_state_or_no_model(bundle: ModelBundle) -> None:
    pipe = pipeline(bundle, pattern="w*")
    assert not pipe.restore_alert(open_alert("pump"))
    stream(pipe, readings(table(40, 7)))
    assert not pipe.restore_alert(open_alert("w"))
    assert pipe.restore_alert(open_alert("w2"))
    assert not pipe.restore_alert(open_alert("w2"))


def test_a_restored_alert_survives_a_reload_before_its_asset_is_seen(
    bundle: ModelBundle,
) -> None:
    """An alert resumed at start waits with its asset's model; a reload before the asset's
    first reading hands it to the new model, which resolves it under its id."""
    pipe = pipeline(bundle)
    assert pipe.restore_alert(open_alert("w"))
    fleet = Fleet([ServedModel.from_bundle(bundle, name="reloaded", pattern="w*")])
    assert pipe.swap_fleet(fleet) == (0, 0, 0)
    results = stream(pipe, readings(table(100, 6)))
    assert {scored.model.name for scored in results} == {"reloaded"}
    (resolved,) = outcomes(results)["w"].events
    assert (resolved.alert_id, resolved.state) == (OPEN.alert_id, "resolved")
    assert pipe.restore_alert(open_alert("w2"))
    assert not pipe.restore_alert(open_alert("w2"))  # it waits for w2 already
    pipe.swap_fleet(Fleet([ServedModel.from_bundle(bundle, name="pumps", pattern="pump")]))
    pipe.swap_fleet(fleet)  # no model served w2 in between: its resumed alert was dropped
    assert pipe.restore_alert(open_alert("w2"))


# --- rows (json_multi messages) ------------------------------------------------------------


def as_rows(rows: Table, asset: str = "w", *, order: Sequence[int] = (0, 1, 2)) -> list[Row]:
    """The table as json_multi messages: one Row per grid row, channels in ``order``."""
    names = tuple(rows.channels[i] for i in order)
    return [
        Row(asset, names, float(t), tuple(float(row[i]) for i in order))
        for t, row in zip(rows.timestamps, rows.values, strict=True)
    ]


def test_rows_decide_exactly_as_their_readings(bundle: ModelBundle, faulty: Table) -> None:
    """The fast path for whole rows changes nothing, whatever the channel order."""
    by_reading = outcomes(stream(pipeline(bundle), readings(faulty)))["w"]
    for order in ((0, 1, 2), (2, 0, 1)):
        pipe = pipeline(bundle)
        results: list[Scored] = []
        for row in as_rows(faulty, order=order):
            pipe.ingest([row])
            results += pipe.flush()
        by_row = outcomes(results)["w"]
        assert by_row.decisions() == by_reading.decisions()
        np.testing.assert_allclose(by_row.score, by_reading.score, rtol=1e-6)
        assert pipe.counts.aligned == 3 * len(faulty.timestamps)


@PROPERTY
@given(st.data())
def test_rows_of_many_assets_in_any_batches_decide_as_each_asset_alone(
    bundle: ModelBundle, data: st.DataObject
) -> None:
    """Rows of four assets ingested in batches of any size: one row per asset (cut
    together), several rows of an asset, gaps, warm-up, an asset leaving mid-stream."""
    tables = {
        "w1": table(160, 1, fault_at=60),
        "w2": table(160, 2),
        "w3": with_gap(table(160, 3, fault_at=20), 90, 40.0),  # a gap: its window restarts
        "w4": table(60, 4),  # stops early
    }
    feeds = {asset: as_rows(rows, asset) for asset, rows in tables.items()}
    interleaved = [r for step in itertools.zip_longest(*feeds.values()) for r in step if r]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(interleaved) - 1), max_size=80)))
    pipe = pipeline(bundle, max_late_s=0.0)
    results: list[Scored] = []
    for start, stop in itertools.pairwise([0, *cuts, len(interleaved)]):
        pipe.ingest(interleaved[start:stop])
        if data.draw(st.booleans()):
            results += pipe.flush()
    together = outcomes([*results, *pipe.flush()])
    for asset, feed in feeds.items():
        alone = pipeline(bundle, max_late_s=0.0)
        got: list[Scored] = []
        for row in feed:
            alone.ingest(row.readings())
            got += alone.flush()
        expected = outcomes(got)[asset]
        assert together[asset].decisions() == expected.decisions()
        np.testing.assert_allclose(together[asset].score, expected.score, rtol=1e-5)
    assert together["w1"].events


row_channels = st.lists(channels, min_size=1, max_size=4, unique=True).map(tuple)
random_rows = st.lists(
    st.builds(
        lambda asset, names, t, vs: Row(asset, names, t, tuple(vs[: len(names)])),
        assets,
        row_channels,
        st.one_of(st.integers(0, 40).map(lambda k: T0 + k), st.just(math.nan)),
        st.lists(values, min_size=4, max_size=4),
    ),
    max_size=60,
)


@PROPERTY
@given(random_rows)
def test_wild_rows_end_as_their_readings_would(bundle: ModelBundle, feed: list[Row]) -> None:
    """Out of order, partial, unknown channels, NaN: a row is its readings, one by one."""
    by_row = pipeline(bundle, pattern="w*", max_assets=2, max_late_s=3.0)
    by_reading = pipeline(bundle, pattern="w*", max_assets=2, max_late_s=3.0)
    row_results: list[Scored] = []
    reading_results: list[Scored] = []
    for row in feed:
        by_row.ingest([row])
        by_reading.ingest(row.readings())
        row_results += by_row.flush()
        reading_results += by_reading.flush()
    assert by_row.counts == by_reading.counts
    a, b = outcomes(row_results), outcomes(reading_results)
    assert a.keys() == b.keys()
    for asset in a:
        assert a[asset].decisions() == b[asset].decisions()


# --- series (float32_le messages) ------------------------------------------------------------


def as_series(rows: Table, asset: str = "w", *, block: int = 25) -> list[Series]:
    """The table as float32_le messages: ``block`` samples of one channel each."""
    out: list[Series] = []
    for start in range(0, len(rows.timestamps), block):
        stop = start + block
        for c, name in enumerate(rows.channels):
            values = rows.values[start:stop, c].astype(np.float32).astype(np.float64)
            out.append(Series(asset, name, rows.timestamps[start:stop], values))
    return out


def test_series_decide_exactly_as_their_readings(bundle: ModelBundle, faulty: Table) -> None:
    """Blocks of samples per channel: the same windows, counts and alerts as reading by reading."""
    by_series, by_reading = pipeline(bundle, max_late_s=40.0), pipeline(bundle, max_late_s=40.0)
    series_results: list[Scored] = []
    reading_results: list[Scored] = []
    for message in as_series(faulty):
        by_series.ingest([message])
        by_reading.ingest(message.readings())
        series_results += by_series.flush()
        reading_results += by_reading.flush()
    assert by_series.counts == by_reading.counts
    assert by_series.counts.windows > 300 and by_series.counts.aligned == 3 * 400
    a, b = outcomes(series_results)["w"], outcomes(reading_results)["w"]
    assert a.decisions() == b.decisions()
    np.testing.assert_array_equal(a.score, b.score)


@pytest.mark.parametrize("jitter", [-1.0, 1.0])
def test_blocks_stamped_a_slot_off_continue_their_channel(
    bundle: ModelBundle, faulty: Table, jitter: float
) -> None:
    """Arrival jitter puts a float32_le round of blocks a period early or late: it is put back.

    Rounds of blocks (every channel's, stamped alike as they come in one read), every other
    round a period off, give exactly the decisions of the blocks on time: nothing late,
    nothing filled, no gap.
    """
    on_time, jittered = pipeline(bundle, max_late_s=40.0), pipeline(bundle, max_late_s=40.0)
    on_time_results: list[Scored] = []
    jittered_results: list[Scored] = []
    for i, message in enumerate(as_series(faulty)):
        shift = jitter if (i // 3) % 2 else 0.0  # the period is 1 s; 3 channels per round
        moved = message._replace(timestamps=message.timestamps + shift)
        on_time.ingest([message])
        jittered.ingest([moved])
        on_time_results += on_time.flush()
        jittered_results += jittered.flush()
    assert jittered.counts == on_time.counts
    assert jittered.counts.late == jittered.counts.filled == jittered.counts.gaps == 0
    a, b = outcomes(on_time_results)["w"], outcomes(jittered_results)["w"]
    assert a.decisions() == b.decisions()


def test_an_assets_channels_stamped_a_slot_apart_share_their_rounds_slots(
    bundle: ModelBundle, faulty: Table
) -> None:
    """Each channel's float32_le messages arrive on their own, so their arrival stamps put
    one channel's blocks a slot or two off the others', from the first round on. They are
    put on the round's slots: exactly the decisions of the blocks on time, nothing late,
    filled or given up (without it the channels' blocks overlap by a slot or two forever,
    every round is placed sample by sample and its edges are filled or dropped)."""
    on_time, apart = pipeline(bundle, max_late_s=40.0), pipeline(bundle, max_late_s=40.0)
    on_time_results: list[Scored] = []
    apart_results: list[Scored] = []
    offsets = {0: 0.0, 1: 1.0, 2: -2.0}  # seconds (periods) each channel's stamps are off
    for i, message in enumerate(as_series(faulty)):
        moved = message._replace(timestamps=message.timestamps + offsets[i % 3])
        on_time.ingest([message])
        apart.ingest([moved])
        on_time_results += on_time.flush()
        apart_results += apart.flush()
    assert apart.counts == on_time.counts
    assert apart.counts.late == 0
    a, b = outcomes(on_time_results)["w"], outcomes(apart_results)["w"]
    assert a.decisions() == b.decisions()
    np.testing.assert_array_equal(a.score, b.score)


def test_a_block_far_off_is_left_where_it_lands(bundle: ModelBundle, faulty: Table) -> None:
    """More than a quarter of a block late is a real hole, not jitter: it is not hidden."""
    pipe = pipeline(bundle, max_late_s=40.0)
    for i, message in enumerate(as_series(faulty)):
        late = 7.0 if i // 3 == 4 else 0.0  # the fifth round of 25-sample blocks, 7 s late
        pipe.ingest([message._replace(timestamps=message.timestamps + late)])
        pipe.flush()
    assert pipe.counts.gaps + pipe.counts.filled + pipe.counts.late > 0


# --- swapping models (reload) ---------------------------------------------------------------


def test_a_swap_keeps_windows_of_the_same_shape_and_restarts_the_rest(
    bundle: ModelBundle, hop_bundle: ModelBundle
) -> None:
    """After a reload: an asset whose new model cuts the same windows keeps its window (its
    next row is scored at once); one whose model changed shape starts warming; one no model
    serves is dropped, and its window slot goes to the next new asset."""
    rows = table(40, 7)
    pipe = pipeline(bundle, max_late_s=0.0)
    for asset in ("w1", "w2", "w3"):
        pipe.ingest(as_rows(rows, asset)[:30])
    pipe.flush()
    assert (pipe.assets, pipe.warming) == (3, 0)
    fleet = Fleet(
        [
            ServedModel.from_bundle(bundle, name="same", pattern="w1"),
            ServedModel.from_bundle(hop_bundle, name="other", pattern="w2"),
            ServedModel.from_bundle(bundle, name="new", pattern="w4"),
        ]
    )
    assert pipe.swap_fleet(fleet) == (1, 1, 1)
    assert (pipe.assets, pipe.warming) == (2, 1)
    pipe.ingest([as_rows(rows, "w1")[30], as_rows(rows, "w2")[30]])
    (scored,) = pipe.flush()
    assert scored.model.name == "same" and scored.assets == ("w1",)
    assert scored.end_timestamps.tolist() == [rows.timestamps[30]]
    pipe.ingest(as_rows(rows, "w4")[:12])  # takes the slot w3 left in the same bank
    assert pipe.assets == 3
    outcome = outcomes(pipe.flush())["w4"]
    offline = score_table(
        bundle,
        Table(
            "w4", rows.timestamps[:12], rows.values[:12], rows.channels, None, None, rows.lines[:12]
        ),
        asset="w4",
    )
    assert outcome.end.tolist() == offline.window_end.tolist()


def test_a_channel_that_stops_while_the_others_go_on_raises_stale(bundle: ModelBundle) -> None:
    """Channel b goes silent for two minutes: a stale alert names it with its last reading,
    and once b is back the windows resolve the alert under the same id."""
    rows = table(400, 7)
    silent = range(200, 320)
    feed = [
        r for r in readings(rows) if not (r.channel == "b" and round(r.timestamp - T0) in silent)
    ]
    pipe = pipeline(bundle)
    results = stream(pipe, feed, flush_after=range(0, len(feed), 25))
    events = [e for scored in results for e in scored.events]
    stale = [e for e in events if e.kind == "stale" and e.state == "raised"]
    assert len(stale) == 1
    (finding,) = stale[0].findings
    assert finding.channel == "b" and finding.kind == "stale"
    assert finding.measured == pytest.approx(float(np.float32(rows.values[199, 1])))
    assert math.isnan(finding.expected)
    # Once nothing waits for b any more: max_late_s (30 s), max_gap_periods (5) and a
    # margin of 2 periods after its last reading.
    assert stale[0].at == T0 + 199 + 38
    resolved = [e for e in events if e.alert_id == stale[0].alert_id and e.state == "resolved"]
    assert resolved and resolved[0].at > T0 + 320
    message = state_message(stale[0], model="m", model_version="v")
    assert message["kind"] == "stale" and message["channels"][0]["expected"] is None


def test_windows_outside_the_training_envelope_are_counted() -> None:
    """With the checks on, a reading far outside anything training saw is counted."""
    settings_ = TrainSettings(fit=FitSettings(show_progress=False))
    checked = train_bundle([table(10_000, 0)], settings_).bundle
    assert checked.decision["checks"] is not None  # 2 500 held-out samples
    clean = table(300, 3, start_s=T0 + 20_000)
    out = table(300, 3, start_s=T0 + 20_000)
    out.values[200:, 2] += 50.0  # c: far above its range
    counts = []
    for rows in (clean, out):
        pipe = pipeline(checked)
        stream(pipe, readings(rows), flush_after=range(0, 900, 60))
        counts.append(pipe.counts.outside_envelope)
    assert counts[0] == 0
    assert counts[1] == 100  # the windows whose newest reading is one of rows 200-299


# --- a restart's replay -----------------------------------------------------------------


def part(rows: Table, start: int, stop: int) -> Table:
    """Rows ``start:stop`` of ``rows``."""
    cut = slice(start, stop)
    return replace(
        rows, timestamps=rows.timestamps[cut], values=rows.values[cut], lines=rows.lines[cut]
    )


@pytest.mark.parametrize("as_feed", [readings, as_rows], ids=["readings", "rows"])
def test_a_restart_does_not_decide_again_the_windows_its_replay_makes(
    bundle: ModelBundle, faulty: Table, as_feed: Callable[[Table], Sequence[Reading | Row]]
) -> None:
    """The readings a restart replays fill the window again; the windows the earlier
    process decided (up to its stop, mid-fault here) are not decided a second time."""
    t = faulty.timestamps
    first = pipeline(bundle)
    before = outcomes(stream(first, as_feed(part(faulty, 0, 250))))["w"]
    assert [e.state for e in before.events] == ["raised"]  # the fault starts at row 200
    assert first.decided() == {"w": t[249]}
    unmarked = pipeline(bundle)  # what a restart did before: rows 150-249 decided again
    again = outcomes(stream(unmarked, as_feed(part(faulty, 150, 250))))["w"]
    assert again.end.tolist() == t[150 + bundle.window_len - 1 : 250].tolist()
    assert [e.state for e in again.events] == ["raised"]  # the same fault, a second alert

    second = pipeline(bundle)
    second.skip_decided(first.decided())
    assert outcomes(stream(second, as_feed(part(faulty, 150, 250)))) == {}
    assert second.skipped == 100 - (bundle.window_len - 1)
    assert second.decided() == {"w": t[249]}
    second.end_replay()
    after = outcomes(stream(second, as_feed(part(faulty, 250, 400))))["w"]
    assert after.end.tolist() == t[250:].tolist()  # the next window on, none lost


def test_live_readings_after_the_replay_are_decided_whatever_their_times(
    bundle: ModelBundle, faulty: Table
) -> None:
    """A mark no window passed during the replay goes at its end: a file replayed again
    from its start is decided afresh."""
    t = faulty.timestamps
    pipe = pipeline(bundle)
    pipe.skip_decided({"w": t[-1], "gone": 5.0})
    assert outcomes(stream(pipe, readings(part(faulty, 0, 100)))) == {}
    assert pipe.decided() == {"w": t[-1], "gone": 5.0}
    pipe.end_replay()
    live = outcomes(stream(pipe, readings(part(faulty, 100, 200))))["w"]
    assert live.end.tolist() == t[100:200].tolist()
    assert pipe.decided() == {"w": t[199]}


def small_step(rows: Table, size: float) -> Table:
    """``rows`` with ``size`` added to ``b`` over rows 200-279: a step the shift check
    raises and holds, where the window error hardly moves."""
    values = rows.values.copy()
    values[200:280, 1] += size
    return replace(rows, values=values)


@pytest.fixture(scope="module")
def checked_bundle() -> ModelBundle:
    """A pca model with every channel check on: a history long enough to calibrate them."""
    settings_ = TrainSettings(shift_k=1.0, fit=FitSettings(show_progress=False))
    return train_bundle([table(10_000, 0)], settings_).bundle


@pytest.mark.parametrize(
    ("model", "size"),
    [("bundle", 1.5), ("checked_bundle", 0.15)],
    ids=["large step, window error", "3-noise step, shift check"],
)
@pytest.mark.parametrize("stop", [150, 205, 230, 300])  # before, in and after the fault
def test_a_restart_from_the_saved_states_decides_as_if_it_had_not_stopped(
    request: pytest.FixtureRequest, model: str, size: float, stop: int
) -> None:
    """States saved at a stop (through JSON, as the daemon keeps them), the decided
    windows skipped, the last rows replayed: the same windows, scores and alerts as one
    pipeline that never stopped, an open alert's resolve included (the shift check holds
    the small step's alert long after the step: its sums and latch must carry over)."""
    bundle = request.getfixturevalue(model)
    faulty = small_step(table(400, 1), size)
    flushed_once = outcomes(stream(pipeline(bundle), readings(faulty)))["w"]
    assert flushed_once.events  # the fault is raised
    first = pipeline(bundle)
    before = outcomes(stream(first, readings(part(faulty, 0, stop))))["w"]
    saved = json.loads(json.dumps({a: s for a, (_, s) in first.states().items()}))
    second = pipeline(bundle)
    assert [second.restore_state(asset, state) for asset, state in saved.items()] == [True]
    second.skip_decided(first.decided())
    replayed = stream(second, readings(part(faulty, stop - 40, stop)))
    second.end_replay()
    after = outcomes(replayed + stream(second, readings(part(faulty, stop, 400))))["w"]
    assert before.end.tolist() + after.end.tolist() == flushed_once.end.tolist()
    assert before.firing + after.firing == flushed_once.firing
    keys = [_key(e) for e in before.events + after.events]
    assert keys == [_key(e) for e in flushed_once.events]
    score = np.concatenate((before.score, after.score))
    np.testing.assert_allclose(score, flushed_once.score, rtol=1e-5)
    severity = np.concatenate((before.severity, after.severity))
    np.testing.assert_allclose(severity, flushed_once.severity, rtol=1e-5)


def test_a_state_restored_but_not_yet_used_is_passed_on(bundle: ModelBundle, faulty: Table) -> None:
    """A run that stops before a restored asset's readings come saves its state again."""
    first = pipeline(bundle)
    stream(first, readings(part(faulty, 0, 230)))  # mid-alert
    saved = json.loads(json.dumps({a: s for a, (_, s) in first.states().items()}))
    second = pipeline(bundle)
    assert second.restore_state("w", saved["w"])
    passed_on = {a: s for a, (_, s) in second.states().items()}
    assert json.dumps(passed_on) == json.dumps(saved)  # NaN (no spike yet) compares as text
    assert passed_on["w"]["alert"]["is_firing"]


def test_a_saved_state_that_does_not_fit_is_refused(bundle: ModelBundle, faulty: Table) -> None:
    first = pipeline(bundle)
    stream(first, readings(part(faulty, 0, 50)))
    (state,) = (s for _, s in first.states().values())
    broken = {**state, "checks": {**state["checks"], "still": [0.0]}}
    pipe = pipeline(bundle, pattern="w*")
    with pytest.raises(ValueError, match="channel statistics"):
        pipe.restore_state("w", broken)
    with pytest.raises(ValueError, match="not a detector state"):
        pipe.restore_state("w", {"smoothed": 1.0})
    assert not pipe.restore_state("pump", state)  # no model serves it
    assert pipe.restore_state("w", state)


def test_a_channel_published_faster_than_the_period_is_noted_once(bundle: ModelBundle) -> None:
    pipe = pipeline(bundle)
    rows = table(60, 1)
    each = readings(rows)
    for i, t in enumerate(rows.timestamps):  # each row, then "a" again 0.3 s later
        pipe.ingest([*each[3 * i : 3 * i + 3], Reading("w", "a", float(t) + 0.3, 0.0)])
    # While the first rows wait the later reading of a slot wins; once they flow the first
    # does, and the second reading of "a" in each slot is late, not behind its channel.
    assert pipe.counts.late >= 20
    assert pipe.crowded_channels == [("w", "a")]
    pipe.crowded_channels.clear()
    pipe.ingest(Reading("w", "a", float(t) + 0.4, 0.0) for t in rows.timestamps[-5:])
    assert pipe.crowded_channels == []  # noted once


def test_a_reading_behind_its_channel_or_repeated_is_late_but_not_crowded(
    bundle: ModelBundle,
) -> None:
    pipe = pipeline(bundle)
    each = readings(table(50, 1))
    pipe.ingest(each)
    pipe.ingest([Reading("w", "a", T0 + 40, 0.0)] * 5)  # its channel is at T0 + 49 already
    pipe.ingest([each[-3]] * 5)  # the newest reading of "a" again: QoS 1 redeliveries
    assert pipe.counts.late == 10
    assert pipe.crowded_channels == []
