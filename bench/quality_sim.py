"""Cases 1-2 of the quality benchmark: simulated healthy weeks, then a day with faults.

Per seed s, a healthy week (``aewatch simulate --hours 168 --period 10 --seed s``) trains
a model, which scores the day right after it with one fault of each kind (``--faults all
--seed s+1000``). An alert is on from the window end that raised it to the one that
resolved it. A *false alert* is one raised outside every fault's span [fault start, fault
end + 5 min], even when it is still on as a later fault starts: it does not count for
that fault, so an alert held for hours on normal operation cannot pass for an early
catch. A fault is *raised* when an alert raised inside some fault's span is on at some
time in its own span (one raised for an earlier fault and still on counts: "on
already"). Used by ``bench/quality.py``.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from quality_report import CaseResult, at_least, at_most, percent

from aewatch.core.alerts import AlertEvent
from aewatch.model.dataset import Table
from aewatch.model.offline import score_table
from aewatch.model.train import TrainSettings, train_bundle
from aewatch.sim import FAULT_KINDS, SimulatedStream, parse_faults, simulate

__all__ = [
    "Alert",
    "Catch",
    "alerts_of",
    "catch",
    "kind_table",
    "per_kind",
    "simulated_case",
    "simulated_day",
    "split_alerts",
    "stream_table",
]

SIM_DAY_SEED_OFFSET = 1000
SIM_HISTORY_HOURS, SIM_DAY_HOURS, SIM_PERIOD_S = 168.0, 24.0, 10.0
GRACE_S = 300.0  # an alert on up to 5 min after a fault's end still counts for it


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert of a scored day; times are window ends in epoch seconds."""

    raised_s: float
    resolved_s: float | None  # None: still on when the day ends
    kind: str = ""  # what raised it (AlertEvent.kind)

    def is_on_during(self, first_s: float, last_s: float) -> bool:
        """Whether the alert is on at some time in ``[first_s, last_s]``."""
        return self.raised_s <= last_s and (self.resolved_s is None or self.resolved_s > first_s)


@dataclass(frozen=True, slots=True)
class Catch:
    """One injected fault and what the alerts made of it; times are epoch seconds."""

    seed: int
    kind: str
    channel: str
    start_s: float
    end_s: float  # exclusive: the first fault-free row
    delay_s: float | None  # None: missed
    was_on_already: bool  # an alert raised before the fault start was still on at it


def simulated_case(
    title: str, scenario: str, seeds: Sequence[int], *, settings: TrainSettings
) -> CaseResult:
    """Train on each seed's healthy week, score the faulty day after it, pool the seeds."""
    catches: list[Catch] = []
    false_alerts: list[dict[str, float | None]] = []
    for seed in seeds:
        day_catches, day_false = simulated_day(scenario, seed, settings=settings)
        catches += day_catches
        false_alerts += [{"seed": seed, **dataclasses.asdict(a)} for a in day_false]
    days = len(seeds) * SIM_DAY_HOURS / 24.0
    delays = [c.delay_s for c in catches if c.delay_s is not None]
    share = len(delays) / len(catches)
    median_s = statistics.median(delays) if delays else None
    per_day = len(false_alerts) / days
    figures = (
        at_least(
            "faults raised",
            share,
            0.9,
            shown=f"{len(delays)}/{len(catches)} ({percent(share)})",
            target="≥ 90 %",
        ),
        at_most(
            "false alerts per day",
            per_day,
            1.0,
            shown=f"{per_day:.2f} ({len(false_alerts)} in {days:g} d)",
            target="≤ 1",
        ),
        at_most(
            "median delay",
            median_s,
            120.0,
            shown="none raised" if median_s is None else f"{median_s:.0f} s",
            target="≤ 120 s",
        ),
    )
    kinds = per_kind(catches)
    detail = {
        "seeds": list(seeds),
        "per_kind": kinds,
        "faults": [dataclasses.asdict(c) for c in catches],
        "false_alerts": false_alerts,
    }
    table = kind_table(f"{title}, {len(seeds)} seeds pooled", kinds)
    return CaseResult(title, f"{len(seeds)} seeds × 1 day", figures, (table,), detail)


def simulated_day(
    scenario: str, seed: int, *, settings: TrainSettings
) -> tuple[list[Catch], list[Alert]]:
    """Each injected fault of seed ``seed``'s day, caught or missed, and the false alerts."""
    history = simulate(scenario, hours=SIM_HISTORY_HOURS, period_s=SIM_PERIOD_S, seed=seed)
    day = simulate(
        scenario,
        hours=SIM_DAY_HOURS,
        period_s=SIM_PERIOD_S,
        faults=parse_faults("all"),
        seed=seed + SIM_DAY_SEED_OFFSET,
        start_epoch_s=float(history.timestamps[-1]) + SIM_PERIOD_S,
    )
    bundle = train_bundle([stream_table(history, f"{scenario} seed {seed}")], settings).bundle
    scores = score_table(bundle, stream_table(day, f"{scenario} day seed {seed}"), asset=scenario)
    t0 = float(day.timestamps[0])
    spans = [(t0 + f.start_s, t0 + f.end_s + GRACE_S) for f in day.faults]
    alerts, false = split_alerts(alerts_of(scores.events), spans)
    catches = [
        catch(
            alerts, seed, kind=f.kind, channel=f.channel, start_s=t0 + f.start_s, end_s=t0 + f.end_s
        )
        for f in day.faults
    ]
    return catches, false


def stream_table(stream: SimulatedStream, source: str) -> Table:
    """A simulated stream as the ``Table`` its CSV would read into (rows numbered from 1)."""
    return Table(
        source=source,
        timestamps=np.asarray(stream.timestamps, dtype=np.float64),
        values=np.asarray(stream.values, dtype=np.float64),
        channels=stream.channels,
        labels=np.asarray(stream.labels, dtype=np.int8),
        changepoints=None,
        lines=np.arange(1, len(stream.timestamps) + 1, dtype=np.int64),
    )


def alerts_of(events: Iterable[AlertEvent]) -> list[Alert]:
    """Pair each raised event with its resolve, by alert id, in the order raised."""
    raised: dict[str, AlertEvent] = {}
    resolved: dict[str, float] = {}
    for event in events:
        if event.state == "raised":
            raised[event.alert_id] = event
        else:
            resolved[event.alert_id] = event.at
    return [Alert(e.at, resolved.get(alert_id), e.kind) for alert_id, e in raised.items()]


def split_alerts(
    alerts: Sequence[Alert], spans: Sequence[tuple[float, float]]
) -> tuple[list[Alert], list[Alert]]:
    """The alerts raised inside some fault's span ``(first_s, last_s)``, and the others
    (the false alerts), each in the order given."""
    inside = [any(first <= a.raised_s <= last for first, last in spans) for a in alerts]
    return (
        [a for a, is_in in zip(alerts, inside, strict=True) if is_in],
        [a for a, is_in in zip(alerts, inside, strict=True) if not is_in],
    )


def catch(
    alerts: Sequence[Alert], seed: int, *, kind: str, channel: str, start_s: float, end_s: float
) -> Catch:
    """The fault's outcome: raised when one of ``alerts`` (those raised inside some
    fault's span, see :func:`split_alerts`) is on in [start, end + 5 min].

    The delay is the first such alert's raise time minus the fault start, and 0 when an
    alert raised before the start is still on at it (``was_on_already``).
    """
    on = [a for a in alerts if a.is_on_during(start_s, end_s + GRACE_S)]
    first_s = min((a.raised_s for a in on), default=None)
    delay_s = None if first_s is None else max(first_s - start_s, 0.0)
    was_on_already = first_s is not None and first_s < start_s
    return Catch(seed, kind, channel, start_s, end_s, delay_s, was_on_already)


def per_kind(catches: Sequence[Catch]) -> dict[str, dict[str, Any]]:
    """Per fault kind: raised, total, median delay (s; None: none raised), how many were
    caught by an alert already on, and the channels of the misses."""
    summary: dict[str, dict[str, Any]] = {}
    for kind in FAULT_KINDS:
        mine = [c for c in catches if c.kind == kind]
        delays = [c.delay_s for c in mine if c.delay_s is not None]
        summary[kind] = {
            "raised": len(delays),
            "total": len(mine),
            "median_delay_s": statistics.median(delays) if delays else None,
            "on_already": sum(c.was_on_already for c in mine),
            "missed_channels": sorted(c.channel for c in mine if c.delay_s is None),
        }
    return summary


def kind_table(heading: str, summary: dict[str, dict[str, Any]]) -> str:
    """Markdown of :func:`per_kind`'s summary, under ``heading``."""
    lines = [
        f"Per fault kind, {heading}:",
        "",
        "| kind | raised | median delay | on already | missed, on channel |",
        "|---|---|---|---|---|",
    ]
    for kind, k in summary.items():
        delay = "–" if k["median_delay_s"] is None else f"{k['median_delay_s']:.0f} s"
        lines.append(
            f"| {kind} | {k['raised']}/{k['total']} | {delay} | {k['on_already']} "
            f"| {_counted(k['missed_channels'])} |"
        )
    return "\n".join(lines)


def _counted(names: Sequence[str]) -> str:
    """``a, a, b`` as ``a ×2, b``; ``–`` when there are none."""
    counts = {n: names.count(n) for n in dict.fromkeys(names)}
    return ", ".join(n if c == 1 else f"{n} ×{c}" for n, c in counts.items()) or "–"
