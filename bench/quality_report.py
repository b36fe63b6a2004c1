"""The quality benchmark's results and how they are written: RESULTS.md's section 5 and JSON.

``bench/quality.py`` measures; this module holds what a case measured (``Figure``,
``CaseResult``) and turns a run's results into the markdown section and the JSON record.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "SECTION",
    "CaseResult",
    "Figure",
    "at_least",
    "at_most",
    "checkout_commit",
    "markdown",
    "percent",
    "run_record",
    "write_section",
]

SECTION = "## 5. Detection quality (bench/quality.py)"
_COMMANDS = """\
```sh
make quality                                                            # full, < 40 min
.venv/bin/python bench/quality.py --quick --data-root ../shared/data    # < 5 min
```"""
_RULES = (
    "**Simulated days.** A fault (kind, channel, [start, end) from the simulator's "
    "placements) is *raised* when an alert is on at some time in [start, end + 5 min]; an "
    "alert is on from the window end that raised it to the one that resolved it (to the "
    "day's end if never). The *delay* is the first such alert's raise time minus the fault "
    "start. An alert raised inside an earlier fault's [start, end + 5 min] and still on at "
    'the start counts, with delay 0 (column "on already"); one that resolved before the '
    "start does not. A *false alert* is one raised inside no fault's [start, end + 5 min]; "
    "it counts for no fault, even one that starts while it is still on. The median delay "
    "is over the raised faults.",
    "**SKAB.** `bench/skab.py`'s protocol and pooled point metrics, causal.",
    "**TEP.** Each file scored on its own. Detection = share of rows 161-960 whose alert "
    "state is on; false rate = that share over all of d00_te, and over rows 1-160 of the "
    "fault files (pooled). The mean leaves out faults 3, 9 and 15.",
    "**Demo day.** The demo's own offline steps and its own tally (`Tally` in "
    "`commands/demo/tally.py`: a fault is a run of labelled rows, detected when an alert is "
    "on during it, no grace).",
    "**One channel alone.** Each channel of the simulated well and pump trained and scored "
    "on its own (same week and day as cases 1-2, the seven sensor fault kinds on that "
    "channel; `bench/quality_single.py`). Judged: spikes, stuck, noise and oscillation, "
    "which one channel can show whatever its set-point does; step, drift and gain on a "
    "channel with set-point moves look like one and are reported in the per-kind table "
    "only. False alerts per channel-day as in cases 1-2.",
)
_WIDTH = 92  # as the rest of RESULTS.md


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure, as shown, next to its target and whether it meets it."""

    name: str
    shown: str
    target: str
    is_met: bool
    value: float | None  # the raw number (a fraction, seconds, a count); None: there is none


@dataclass(frozen=True, slots=True)
class CaseResult:
    """What one case measured.

    ``tables`` are the case's own markdown tables (per fault kind, per fault); ``detail``
    holds every other number, for the JSON; ``skipped`` says why the case did not run.
    """

    title: str
    scope: str  # what ran, e.g. "5 seeds × 1 day" or "12 of 34 files (quick)"
    figures: tuple[Figure, ...] = ()
    tables: tuple[str, ...] = ()
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    skipped: str = ""
    seconds: float = 0.0


def at_least(name: str, value: float | None, floor: float, *, shown: str, target: str) -> Figure:
    """A figure that meets its target at ``floor`` or above (never when ``value`` is None)."""
    return Figure(name, shown, target, value is not None and value >= floor, value)


def at_most(name: str, value: float | None, ceiling: float, *, shown: str, target: str) -> Figure:
    """A figure that meets its target at ``ceiling`` or below (never when ``value`` is None)."""
    return Figure(name, shown, target, value is not None and value <= ceiling, value)


def percent(fraction: float, digits: int = 1) -> str:
    """``0.0963`` as ``9.6 %``."""
    return f"{fraction * 100:.{digits}f} %"


def markdown(results: Sequence[CaseResult], *, mode: str, label: str, commit: str) -> str:
    """RESULTS.md's section 5: verdicts, what ran and its wall time, the cases' tables."""
    figures = [f for r in results for f in r.figures]
    n_met = sum(f.is_met for f in figures)
    not_run = [r.title for r in results if r.skipped]
    unmeasured = f" ({', '.join(not_run)}: not run)" if not_run else ""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION,
        "",
        _COMMANDS,
        "",
        _wrapped(
            f"**{label[:1].upper() + label[1:]} at {commit}** ({mode} run, {when}, torch on "
            f"one thread): **{n_met} of {len(figures)} targets met**{unmeasured}. Shipped "
            "defaults only (`TrainSettings()`), nothing set per data set."
        ),
        "",
        "| case | figure | value | target | verdict |",
        "|---|---|---|---|---|",
        *_figure_rows(results),
        "",
        "| case | what ran | wall time |",
        "|---|---|---|",
        *[f"| {r.title} | {r.skipped or r.scope} | {r.seconds:.1f} s |" for r in results],
        f"| all | | {sum(r.seconds for r in results):.1f} s |",
    ]
    for result in results:
        for table in result.tables:
            lines += ["", table]
    lines += ["", "Rules:", ""]
    lines += [_wrapped(rule, bullet="- ") for rule in _RULES]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Put ``section`` into ``path`` in place of its old section 5, or at the end."""
    text = path.read_text() if path.exists() else ""
    start = text.find(SECTION)
    if start < 0:
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    after = start + len(SECTION)
    following = re.search(r"^## ", text[after:], flags=re.MULTILINE)
    rest = "" if following is None else "\n" + text[after + following.start() :]
    path.write_text(text[:start] + section + rest)


def run_record(results: Sequence[CaseResult], *, mode: str, commit: str) -> dict[str, Any]:
    """Every figure and detail of a run, ready for ``json.dumps``."""
    return {"mode": mode, "commit": commit, "cases": [dataclasses.asdict(r) for r in results]}


def checkout_commit(root: Path) -> str:
    """The short hash of the git checkout at ``root``, noting uncommitted changes in src/."""
    git = ["git", "-C", str(root)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"an unknown commit ({root} is not a git checkout)"
    return head + (" + uncommitted changes in src/" if changed else "")


def _figure_rows(results: Sequence[CaseResult]) -> list[str]:
    rows = []
    for r in results:
        if r.skipped:
            rows.append(f"| {r.title} | | {r.skipped} | | not run |")
        rows += [
            f"| {r.title} | {f.name} | {f.shown} | {f.target} | "
            f"{'met' if f.is_met else '**missed**'} |"
            for f in r.figures
        ]
    return rows


def _wrapped(text: str, *, bullet: str = "") -> str:
    """``text`` wrapped as the rest of RESULTS.md is, as a list item when ``bullet`` is set."""
    return textwrap.fill(
        text,
        _WIDTH,
        initial_indent=bullet,
        subsequent_indent=" " * len(bullet),
        break_on_hyphens=False,
        break_long_words=False,
    )
