"""The tables of ``bench/throughput/run.py``: medians, ratios side by side, targets, profile.

A :class:`Run` is one measured send to one contender. :func:`report` turns a run's list of
them into Markdown: one row per case and contender (medians over the repeats, each
repeat's best kept-up run), the targets of the issue with the figures measured, the notes
the cases left, and the py-spy profile's top frames per thread.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TARGETS", "Run", "histogram_summary", "report", "sustained", "top_frames"]

TARGETS = {
    "single_qos0_vs_json": 0.85,
    "single_qos1_vs_noop": 0.85,
    "multi_readings_per_s": 300_000,
    "float32_samples_per_s": 2_500_000,
    "latency_p99_s": 0.050,
    "rss_10k_mb": 400,
}


@dataclass
class Run:
    """One measured send to one contender."""

    case: str
    contender: str
    repeat: int
    readings: int
    messages: int
    seconds: float
    drops: int
    cpu_s: float
    rss_mb: float
    hwm_mb: float
    is_kept_up: bool = True
    offered_per_s: float | None = None  # paced runs
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Readings per second."""
        return self.readings / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per reading."""
        return 1e6 * self.cpu_s / self.readings if self.readings else 0.0


def report(
    runs: list[Run],
    *,
    notes: list[str],
    profile: dict[str, Any],
    load: tuple[float, float],
    seconds: float,
) -> str:
    """The Markdown tables of one bench run; ``load`` is the load average at start and end."""
    repeats = len({run.repeat for run in runs})
    lines = [
        f"Load average (1 min) {load[0]:.2f} at start, {load[1]:.2f} at end; "
        f"{os.cpu_count()} CPUs; {seconds / 60:.1f} min; medians of {repeats}.",
        "",
        "| case | contender | readings/s | msgs/s | drops | CPU µs/reading | RSS MB "
        "(peak) | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.case, run.contender), []).append(run)
    for (case, contender), group in groups.items():
        kept = [r for r in group if r.is_kept_up] or group
        best = _best_per_repeat(kept)
        note = _note(group, best)
        rate = statistics.median(r.rate for r in best)
        msgs = statistics.median(r.messages / r.seconds for r in best if r.seconds > 0)
        rss = statistics.median(r.rss_mb for r in best)
        memory = f"{rss:.0f} ({max(r.hwm_mb for r in best):.0f})" if rss else "—"
        lines.append(
            f"| {case} | {contender} | {rate:,.0f} | {msgs:,.0f} | "
            f"{statistics.median(r.drops for r in best):,.0f} | "
            f"{statistics.median(r.cpu_us for r in best):.1f} | {memory} | {note} |"
        )
    lines += ["", *_target_lines(runs), ""]
    lines += [f"- {note}" for note in notes]
    if profile.get("threads"):
        lines += ["", *_profile_lines(profile)]
    return "\n".join(lines)


def _best_per_repeat(runs: list[Run]) -> list[Run]:
    best: dict[int, Run] = {}
    for run in runs:
        if run.repeat not in best or run.rate > best[run.repeat].rate:
            best[run.repeat] = run
    return list(best.values())


def _note(runs: list[Run], best: list[Run]) -> str:
    parts = []
    latencies = [r.extra["latency"] for r in best if r.extra.get("latency")]
    if latencies:
        p50 = statistics.median(x.get("p50_s", np.nan) for x in latencies) * 1000
        p99 = statistics.median(x.get("p99_s", np.nan) for x in latencies) * 1000
        parts.append(f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        shares = [x["share_le_50ms"] for x in latencies if "share_le_50ms" in x]
        if shares:
            parts.append(f"{100 * statistics.median(shares):.2f} % ≤ 50 ms")
    if any(r.offered_per_s for r in best):
        parts.append(f"paced at {statistics.median(r.offered_per_s or 0 for r in best):,.0f}/s")
    failed = [r for r in runs if not r.is_kept_up]
    if failed:
        worst = max(failed, key=lambda r: r.drops)
        reasons = worst.extra.get("drop_reasons") or {}
        parts.append(
            f"{len(failed)} run(s) not kept up (e.g. {worst.rate:,.0f}/s: "
            f"{worst.drops:,} dropped {reasons or ''}, lag {worst.extra['lag_s']:.1f} s)"
        )
    lates = [r.extra["late"] for r in best if "late" in r.extra]
    if any(lates):
        share = statistics.median(r.extra["late"] / max(r.readings, 1) for r in best)
        parts.append(f"late (arrival jitter) {statistics.median(lates):,.0f} = {100 * share:.2f} %")
    fills = [r.extra.get("filled", 0) for r in best]
    if any(fills):
        parts.append(f"filled {statistics.median(fills):,.0f}")
    if any("assets_tracked" in r.extra for r in best):
        run = best[0]
        parts.append(
            f"{run.extra['assets_tracked']:,} assets, {run.extra['assets_warming']} warming, "
            f"idle {run.extra['idle_rss_mb']:.0f} MB"
        )
    elif any("idle_rss_mb" in r.extra for r in best):
        parts.append(f"idle {best[0].extra['idle_rss_mb']:.0f} MB")
    return "; ".join(parts)


def _ratio(runs: list[Run], case: str, other: str) -> float | None:
    """Median over repeats of aewatch's sustained rate over ``other``'s rate in that repeat."""
    mine = _best_kept_up(runs, case)
    theirs = {r.repeat: r.rate for r in runs if r.case == case and r.contender == other}
    ratios = [mine[k] / theirs[k] for k in mine.keys() & theirs.keys() if theirs[k]]
    return statistics.median(ratios) if ratios else None


def _target_lines(runs: list[Run]) -> list[str]:
    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("met" if ok else "**not met**")

    rows = []
    for case, other, floor in (
        ("single_qos0", "paho + json.loads", TARGETS["single_qos0_vs_json"]),
        ("single_qos1", "paho no-op", TARGETS["single_qos1_vs_noop"]),
        ("single_qos0", "naive daemon", 1.0),
        ("single_qos1", "naive daemon", 1.0),
    ):
        ratio = _ratio(runs, case, other)
        shown = "—" if ratio is None else f"{100 * ratio:.0f} %"
        sign = "≥" if floor < 1 else ">"
        rows.append(
            f"| {case}: aewatch / {other} | {sign} {100 * floor:.0f} % | {shown} | "
            f"{verdict(None if ratio is None else ratio >= floor)} |"
        )
    for case, key, unit in (
        ("multi", "multi_readings_per_s", "readings/s"),
        ("float32", "float32_samples_per_s", "samples/s"),
    ):
        rate = sustained(runs, case)
        shown = "—" if rate is None else f"{rate:,.0f}"
        rows.append(
            f"| {case}: aewatch {unit} | ≥ {TARGETS[key]:,} | {shown} | "
            f"{verdict(None if rate is None else rate >= TARGETS[key])} |"
        )
    for case in ("multi", "sparkplug"):  # no target: Sparkplug B beside json_multi
        ratio = _ratio(runs, case, "paho no-op")
        shown = "—" if ratio is None else f"{100 * ratio:.0f} %"
        rows.append(f"| {case}: aewatch / paho no-op | — | {shown} | — |")
    latencies = [
        r.extra["latency"]
        for r in runs
        if (r.case, r.contender) == ("latency", "aewatch") and "p99_s" in r.extra["latency"]
    ]
    shown, ok = "—", None
    if latencies:
        p99 = statistics.median(x["p99_s"] for x in latencies)
        share = statistics.median(x["share_le_50ms"] for x in latencies)
        shown = f"{1000 * p99:.1f} ms ({100 * share:.2f} % ≤ 50 ms)"
        ok = share >= 0.99  # exact from the 50 ms bucket, unlike the interpolated p99
    rows.append(f"| latency: aewatch p99 at half load | ≤ 50 ms | {shown} | {verdict(ok)} |")
    rss = [r.hwm_mb for r in runs if r.case == "memory_10000" and r.contender == "aewatch"]
    rows.append(
        f"| memory: aewatch peak RSS, 10 000 assets × 8 | ≤ 400 MB | "
        f"{f'{rss[0]:.0f} MB' if rss else '—'} | "
        f"{verdict(rss[0] <= TARGETS['rss_10k_mb'] if rss else None)} |"
    )
    return ["| target | wanted | measured | verdict |", "|---|---|---|---|", *rows]


def _profile_lines(profile: dict[str, Any]) -> list[str]:
    seconds = profile["seconds"]
    lines = [
        f"py-spy record (100 Hz, by function, idle samples left out) of aewatch over "
        f"{seconds} s around one more single_qos0 flood; {profile['file']}. Shares are of "
        "the recording's wall time, so a thread at 100 % kept one core busy.",
        "",
    ]
    for thread in profile["threads"][:4]:
        lines += [
            f"{thread['thread']}: busy {100 * thread['seconds'] / seconds:.0f} %",
            "",
            "| % inclusive | function | % self | function |",
            "|---|---|---|---|",
        ]
        for (total_name, total), (own_name, own) in zip(
            thread["total"], thread["self"], strict=False
        ):
            lines.append(
                f"| {100 * total / seconds:.1f} | {total_name} | {100 * own / seconds:.1f} | "
                f"{own_name} |"
            )
        lines.append("")
    return lines


def top_frames(path: Path, top: int = 12) -> list[dict[str, Any]]:
    """Per thread of a py-spy speedscope file: busy seconds, and the functions with the most
    seconds on top of the stack (self) and anywhere on it (inclusive, thread plumbing left
    out), busiest thread first."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    labels = [_frame_label(frame) for frame in frames]
    plumbing = {i for i, frame in enumerate(frames) if _is_plumbing(frame)}
    threads = []
    for profile in data["profiles"]:
        own: Counter[int] = Counter()
        inclusive: Counter[int] = Counter()
        samples = profile["samples"]
        weights = profile.get("weights") or [1] * len(samples)
        for stack, weight in zip(samples, weights, strict=True):
            if stack:
                own[stack[-1]] += weight
            for index in set(stack) - plumbing:
                inclusive[index] += weight
        threads.append(
            {
                "thread": profile.get("name", "?"),
                "seconds": sum(weights),
                "self": [(labels[i], s) for i, s in own.most_common(top)],
                "total": [(labels[i], s) for i, s in inclusive.most_common(top)],
            }
        )
    return sorted(threads, key=lambda t: -t["seconds"])


def _frame_label(frame: dict[str, Any]) -> str:
    """``function (package/module.py:line)``."""
    where = Path(frame.get("file", "?"))
    short = where.name if "site-packages" in where.parts else "/".join(where.parts[-2:])
    return f"{frame['name']} ({short}:{frame.get('line', '?')})"


def _is_plumbing(frame: dict[str, Any]) -> bool:
    """Frames every thread has (thread start, the HTTP server's loop, the entry point)."""
    name = Path(frame.get("file", "")).name
    return name in ("threading.py", "socketserver.py", "<frozen runpy>", "__main__.py")


def histogram_summary(buckets: dict[str, float]) -> dict[str, float]:
    """p50 and p99 interpolated linearly inside the buckets, and the share at most 50 ms."""
    bounds = sorted((float(k), v) for k, v in buckets.items())
    total = bounds[-1][1]
    summary: dict[str, float] = {"n": total}
    if not total:
        return summary
    for name, q in (("p50_s", 0.5), ("p99_s", 0.99)):
        lower, below = 0.0, 0.0
        for upper, count in bounds:
            if count >= q * total:
                inside = count - below
                fraction = (q * total - below) / inside if inside else 1.0
                summary[name] = lower + fraction * (upper - lower) if upper != np.inf else lower
                break
            lower, below = upper, count
    summary["share_le_50ms"] = buckets.get("0.05", 0.0) / total
    return summary


def sustained(runs: list[Run], case: str) -> float | None:
    """Median over repeats of aewatch's best kept-up rate in ``case`` (flood or paced)."""
    best = _best_kept_up(runs, case)
    return statistics.median(best.values()) if best else None


def _best_kept_up(runs: list[Run], case: str) -> dict[int, float]:
    """Per repeat, aewatch's best rate in ``case`` (flood or paced) with no drop."""
    best: dict[int, float] = {}
    for run in runs:
        if run.contender == "aewatch" and run.case in (case, f"{case}_paced") and run.is_kept_up:
            best[run.repeat] = max(best.get(run.repeat, 0.0), run.rate)
    return best
