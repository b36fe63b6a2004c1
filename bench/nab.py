"""Real single-channel data with known failures: NAB's realKnownCause files, run as a user would.

Per file (7, one channel each, 19 labelled anomaly windows in all): ``aewatch``'s own
training recipe (``train_bundle``, shipped defaults) fits on the rows before the earlier
of NAB's probationary period (the first 15 % of the file) and the first labelled window;
``score_table`` (the daemon's path: grid, windows, scorer, detector with hysteresis)
scores the whole file. The tally is the simulated days' (``quality_sim.split_alerts``):
a *false alert* is one raised after the training rows and outside every window, and it
counts for no window even when it is still on as one starts; a window is *caught* when an
alert raised inside some window is on at some time inside it. NAB's windows are wide (a
tenth of the file's length, centred on each failure), so a caught window says the failure
was seen near it, not how early.

The data is not shipped: give the folder of a clone of github.com/numenta/NAB (it holds
``data/realKnownCause/*.csv`` and ``labels/combined_windows.json``).

    .venv/bin/python bench/nab.py --nab PATH/TO/NAB
    .venv/bin/python bench/nab.py --nab PATH/TO/NAB --set adapt_floor=0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from quality_sim import alerts_of, split_alerts
from skab import add_settings_argument, train_settings

from aewatch.model.dataset import Table, read_table
from aewatch.model.offline import score_table
from aewatch.model.tables.options import ReadOptions
from aewatch.model.train import TrainSettings, train_bundle

CORPUS = "realKnownCause"
PROBATION = 0.15  # NAB: the first 15 % of a file is for learning, never scored
# Some files repeat a timestamp (a clock going back); the first row of each time is kept.
READ = ReadOptions(dedupe="first", sort_rows=True)


@dataclass(frozen=True, slots=True)
class FileResult:
    """One file's outcome: windows caught of all, false alerts by kind, days scored."""

    name: str
    period_s: float
    train_rows: int
    caught: int
    windows: int
    false_by_kind: dict[str, int]
    days: float

    @property
    def false_alerts(self) -> int:
        return sum(self.false_by_kind.values())


def windows_of(root: Path) -> dict[str, list[tuple[float, float]]]:
    """The labelled windows of each realKnownCause file, in epoch seconds (UTC)."""
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    return {
        name.split("/", 1)[1]: [(_epoch_s(a), _epoch_s(b)) for a, b in spans]
        for name, spans in sorted(labels.items())
        if name.startswith(f"{CORPUS}/")
    }


def run_file(path: Path, spans: list[tuple[float, float]], settings: TrainSettings) -> FileResult:
    """Train on the file's early normal rows, score all of it, tally windows and alerts."""
    table = read_table(path, options=READ)
    n = len(table.timestamps)
    first_window = int(np.searchsorted(table.timestamps, spans[0][0]))
    cut = min(math.floor(PROBATION * n), first_window)
    bundle = train_bundle([_head(table, cut)], settings).bundle
    events = score_table(bundle, table).events
    alerts = [a for a in alerts_of(events) if a.raised_s > table.timestamps[cut - 1]]
    inside, outside = split_alerts(alerts, spans)
    caught = sum(any(a.is_on_during(*span) for a in inside) for span in spans)
    false_by_kind = dict(Counter(alert.kind for alert in outside))
    days = float(table.timestamps[-1] - table.timestamps[cut]) / 86_400.0
    return FileResult(path.name, bundle.period_s, cut, caught, len(spans), false_by_kind, days)


def _head(table: Table, rows: int) -> Table:
    labels = None if table.labels is None else table.labels[:rows]
    return dataclasses.replace(
        table,
        timestamps=table.timestamps[:rows],
        values=table.values[:rows],
        lines=table.lines[:rows],
        labels=labels,
    )


def _epoch_s(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab", type=Path, required=True, help="a clone of numenta/NAB")
    add_settings_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = train_settings(args.set)
    results = [
        run_file(args.nab / "data" / CORPUS / name, spans, settings)
        for name, spans in windows_of(args.nab).items()
    ]
    print("| file | period | training rows | windows caught | false alerts (by kind) | days |")
    print("|---|---|---|---|---|---|")
    for r in results:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.false_by_kind.items())) or "–"
        print(
            f"| {r.name} | {r.period_s:g} s | {r.train_rows} | {r.caught}/{r.windows} "
            f"| {r.false_alerts} ({kinds}) | {r.days:.1f} |"
        )
    caught = sum(r.caught for r in results)
    windows = sum(r.windows for r in results)
    false = sum(r.false_alerts for r in results)
    days = sum(r.days for r in results)
    print(
        f"| **all** | | | **{caught}/{windows}** | **{false}** ({false / days:.2f} a day) "
        f"| {days:.0f} |"
    )


if __name__ == "__main__":
    main()
