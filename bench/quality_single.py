"""Case 6 of bench/quality.py: one channel on its own, as a single-sensor machine streams it.

Per seed and per channel of the simulated well and pump, a model is trained on that
channel's healthy week alone and scores the day after it with one fault of each sensor
kind on that channel (``simulate --faults drift:CH,step:CH,...``). The faults of several
channels (decouple, leak, hunting) need the other channels and are left out.

With one channel there is nothing to predict it from but its own past, so a step, drift
or gain error on a channel that makes set-point moves looks like a set-point move: those
kinds are reported per kind but not judged. What a lone channel must still show, and the
targets judge: spikes, a stuck transmitter, more noise, an oscillation, and few false
alerts. Same rules as cases 1-2 (``quality_sim``): an alert raised inside no fault's
[start, end + 5 min] is false and counts for no fault; a fault is raised when one of the
others is on in its own.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence

import numpy as np
from quality_report import CaseResult, at_least, at_most, percent
from quality_sim import (
    GRACE_S,
    SIM_DAY_HOURS,
    SIM_DAY_SEED_OFFSET,
    SIM_HISTORY_HOURS,
    SIM_PERIOD_S,
    Catch,
    alerts_of,
    catch,
    kind_table,
    per_kind,
    split_alerts,
)

from aewatch.model.dataset import Table
from aewatch.model.offline import score_table
from aewatch.model.train import TrainSettings, train_bundle
from aewatch.sim import SimulatedStream, parse_faults, simulate

__all__ = ["JUDGED_KINDS", "SINGLE_KINDS", "single_channel_case"]

SINGLE_KINDS = ("drift", "step", "spikes", "stuck", "noise", "oscillation", "gain")
JUDGED_KINDS = ("spikes", "stuck", "noise", "oscillation")
SCENARIOS = ("well", "pump")


def single_channel_case(title: str, seeds: Sequence[int], *, settings: TrainSettings) -> CaseResult:
    """Every channel of both scenarios alone, for each seed; pooled."""
    catches: list[Catch] = []
    false_alerts: list[dict[str, object]] = []
    for scenario in SCENARIOS:
        for seed in seeds:
            history = simulate(scenario, hours=SIM_HISTORY_HOURS, period_s=SIM_PERIOD_S, seed=seed)
            for column, channel in enumerate(history.channels):
                found, false = _channel_day(scenario, history, column, seed, settings=settings)
                catches += found
                false_alerts += [
                    {"scenario": scenario, "channel": channel, "seed": seed, "raised_s": a}
                    for a in false
                ]
    judged = [c for c in catches if c.kind in JUDGED_KINDS]
    raised = [c for c in judged if c.delay_s is not None]
    share = len(raised) / len(judged)
    all_delays = [c.delay_s for c in catches if c.delay_s is not None]
    channel_days = len(catches) / len(SINGLE_KINDS) * SIM_DAY_HOURS / 24.0
    per_day = len(false_alerts) / channel_days
    figures = (
        at_least(
            f"{', '.join(JUDGED_KINDS)} raised",
            share,
            0.9,
            shown=f"{len(raised)}/{len(judged)} ({percent(share)})",
            target="≥ 90 %",
        ),
        at_most(
            "false alerts per channel-day",
            per_day,
            1.0,
            shown=f"{per_day:.2f} ({len(false_alerts)} in {channel_days:g} channel-days)",
            target="≤ 1",
        ),
    )
    kinds = {k: v for k, v in per_kind(catches).items() if v["total"]}
    detail = {
        "seeds": list(seeds),
        "per_kind": kinds,
        "all_kinds_raised": f"{len(all_delays)}/{len(catches)}",
        "median_delay_s": statistics.median(all_delays) if all_delays else None,
        "faults": [dataclasses.asdict(c) for c in catches],
        "false_alerts": false_alerts,
    }
    table = kind_table(f"{title}, {len(seeds)} seeds, every channel of both scenarios", kinds)
    n_channels = len(catches) // len(SINGLE_KINDS) // len(seeds)
    scope = f"{len(seeds)} seeds × {n_channels} channels × 1 day"
    return CaseResult(title, scope, figures, (table,), detail)


def _channel_day(
    scenario: str,
    history: SimulatedStream,
    column: int,
    seed: int,
    *,
    settings: TrainSettings,
) -> tuple[list[Catch], list[float]]:
    """The faults of one channel's day and the raise times of its false alerts."""
    channel = history.channels[column]
    faults = ",".join(f"{kind}:{channel}" for kind in SINGLE_KINDS)
    day = simulate(
        scenario,
        hours=SIM_DAY_HOURS,
        period_s=SIM_PERIOD_S,
        faults=parse_faults(faults),
        seed=seed + SIM_DAY_SEED_OFFSET,
        start_epoch_s=float(history.timestamps[-1]) + SIM_PERIOD_S,
    )
    bundle = train_bundle([_one_channel(history, column, "history")], settings).bundle
    scores = score_table(bundle, _one_channel(day, column, "day"), asset=channel)
    t0 = float(day.timestamps[0])
    spans = [(t0 + f.start_s, t0 + f.end_s + GRACE_S) for f in day.faults]
    alerts, false = split_alerts(alerts_of(scores.events), spans)
    catches = [
        catch(
            alerts, seed, kind=f.kind, channel=channel, start_s=t0 + f.start_s, end_s=t0 + f.end_s
        )
        for f in day.faults
    ]
    return catches, [a.raised_s for a in false]


def _one_channel(stream: SimulatedStream, column: int, source: str) -> Table:
    """Column ``column`` of a simulated stream as a one-channel ``Table``."""
    n = len(stream.timestamps)
    return Table(
        source=f"{stream.channels[column]} {source}",
        timestamps=np.asarray(stream.timestamps, dtype=np.float64),
        values=np.asarray(stream.values, dtype=np.float64)[:, [column]],
        channels=(stream.channels[column],),
        labels=np.asarray(stream.labels, dtype=np.int8),
        changepoints=None,
        lines=np.arange(1, n + 1, dtype=np.int64),
    )
