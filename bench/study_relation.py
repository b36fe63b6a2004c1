"""A candidate detector measured on the simulated days, not in the product: the relation check.

    .venv/bin/python bench/study_relation.py pump [--margin 1.5] [--warm-s 10800] [--seeds 5]

Today's residual predicts each channel from the others *and its own recent past*, so a
sensor that steps or drifts shows mostly at the onset: the prediction follows the reading
within a few samples, and the shift check has to add up what is left. The relation check
predicts each channel from the *other* channels alone, now and through exponentially
weighted means of their history (time constants ``TAUS``: 1, 10 and 60 minutes, so the
slow dynamics of a plant, a wellbore's storage or a bearing's heat, are in the features
without a long window), with the residual model's bends (a ridge regression fitted on the
first three quarters of the healthy week, after ``3 * TAUS[-1]`` of warm-up). The
residual's exponentially weighted mean over ``SLOW_S`` (10 minutes) is compared with
``margin`` times its largest absolute value on the week's last quarter (per channel); an
alert is raised when a channel passes it and resolved when every channel is back under
half of it. A fresh start (the day is simulated apart from the week, as a daemon's state
starts at its first reading) takes ``--warm-s`` before it may raise: the hour-long means
start at the first reading.

Per seed it scores the day after the week (``bench/quality_sim.py``'s days and tally) with
the relation check alone, the product's alerts alone (``score_table``, shipped defaults),
and both together (an alert of either), and prints per fault where they differ, the
relation check's false alerts, and the pooled figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).parent))
import quality_sim as qs

from aewatch.model.offline import score_table
from aewatch.model.train import TrainSettings, train_bundle
from aewatch.sim import parse_faults, simulate

TAUS = (60.0, 600.0, 3600.0)  # s: the others' history, as exponentially weighted means
SLOW_S = 600.0  # s: the residual's mean the limit is set on
KNOTS = (-1.0, 0.0, 1.0)  # bends, in standardised units, as in core/residual.py
RIDGE = 1e-3
Array = npt.NDArray[np.float64]


def ewmas(x: Array, period_s: float) -> Array:
    """``(len(TAUS), n, c)``: each time constant's mean of ``x`` ``(n, c)``, from its first row."""
    out = np.empty((len(TAUS), *x.shape))
    for i, tau in enumerate(TAUS):
        alpha, level = 1.0 - np.exp(-period_s / tau), x[0].copy()
        for t in range(len(x)):
            level += alpha * (x[t] - level)
            out[i, t] = level
    return out


def features(z: Array, ez: Array, j: int) -> Array:
    """Channel ``j``'s features: the others now, their means, their bends, and 1."""
    others = [k for k in range(z.shape[1]) if k != j]
    parts = [z[:, others], *(e[:, others] for e in ez)]
    parts += [np.maximum(z[:, others] - knot, 0.0) for knot in KNOTS]
    return np.hstack([*parts, np.ones((len(z), 1))])


def slow_mean(r: Array, period_s: float, slow_s: float = SLOW_S) -> Array:
    """The residual's exponentially weighted mean over ``slow_s``, from 0."""
    alpha, level, out = 1.0 - np.exp(-period_s / slow_s), np.zeros(r.shape[1]), np.empty_like(r)
    for t in range(len(r)):
        level += alpha * (r[t] - level)
        out[t] = level
    return out


@dataclass(frozen=True, slots=True)
class Options:
    """The check's settings: limit ``margin`` × the held-out largest, ``warm_s`` before a
    fresh start may raise, resolved under ``release`` × the limit, a mean over ``slow_s``."""

    margin: float = 1.5
    warm_s: float = 10800.0
    release: float = 0.5
    slow_s: float = SLOW_S


def day(scenario: str, seed: int, options: Options) -> dict[str, object]:
    """One seed's week and day: the relation check's alerts, the product's, the tallies."""
    margin, warm_s, release, slow_s = (
        options.margin,
        options.warm_s,
        options.release,
        options.slow_s,
    )
    period = qs.SIM_PERIOD_S
    week = simulate(scenario, hours=qs.SIM_HISTORY_HOURS, period_s=period, seed=seed)
    faulty = simulate(
        scenario,
        hours=qs.SIM_DAY_HOURS,
        period_s=period,
        faults=parse_faults("all"),
        seed=seed + qs.SIM_DAY_SEED_OFFSET,
        start_epoch_s=float(week.timestamps[-1]) + period,
    )
    x, y = np.asarray(week.values, float), np.asarray(faulty.values, float)
    center, scale = x.mean(axis=0), x.std(axis=0)
    z, zy = (x - center) / scale, (y - center) / scale
    ez, ezy = (ewmas(x, period) - center) / scale, (ewmas(y, period) - center) / scale
    warm, split, c = int(3 * TAUS[-1] / period), int(0.75 * len(x)), x.shape[1]
    residual, residual_day = np.empty_like(x), np.empty_like(y)
    for j in range(c):
        a = features(z[warm:split], ez[:, warm:split], j)
        w = np.linalg.solve(a.T @ a + RIDGE * np.eye(a.shape[1]), a.T @ z[warm:split, j])
        residual[:, j] = (z[:, j] - features(z, ez, j) @ w) * scale[j]
        residual_day[:, j] = (zy[:, j] - features(zy, ezy, j) @ w) * scale[j]
    limit = margin * np.abs(slow_mean(residual, period, slow_s)[split:]).max(axis=0)
    ratio = np.abs(slow_mean(residual_day, period, slow_s)) / limit
    ratio[: int(warm_s / period)] = 0.0
    times = np.asarray(faulty.timestamps, float)
    relation: list[qs.Alert] = []
    raised_s, channel = None, ""
    for t, row in zip(times, ratio, strict=True):
        if raised_s is None and row.max() > 1.0:
            raised_s, channel = float(t), faulty.channels[int(row.argmax())]
        elif raised_s is not None and row.max() < release:
            relation.append(qs.Alert(raised_s, float(t), channel))
            raised_s = None
    if raised_s is not None:
        relation.append(qs.Alert(raised_s, None, channel))
    bundle = train_bundle([qs.stream_table(week, "week")], TrainSettings()).bundle
    events = score_table(bundle, qs.stream_table(faulty, "day"), asset=scenario).events
    product = qs.alerts_of(events)
    t0 = float(times[0])
    spans = [(t0 + f.start_s, t0 + f.end_s + qs.GRACE_S) for f in faulty.faults]
    tallies = {}
    for name, alerts in (
        ("relation", relation),
        ("product", product),
        ("both", relation + product),
    ):
        inside, false = qs.split_alerts(alerts, spans)
        catches = [
            qs.catch(
                inside,
                seed,
                kind=f.kind,
                channel=f.channel,
                start_s=t0 + f.start_s,
                end_s=t0 + f.end_s,
            )
            for f in faulty.faults
        ]
        tallies[name] = (catches, false)
    # Both, with a relation alert counting only for a fault it was raised in: its alerts
    # can be held for hours after one (the release wants every channel under half the
    # limit), and the tally's "on already" would credit it with the faults that follow.
    own = [
        qs.catch(
            [a for a in relation if first <= a.raised_s <= last] + product,
            seed,
            kind=f.kind,
            channel=f.channel,
            start_s=first,
            end_s=t0 + f.end_s,
        )
        for f, (first, last) in zip(faulty.faults, spans, strict=True)
    ]
    tallies["both, own raise"] = (own, tallies["both"][1])
    return {
        "seed": seed,
        "tallies": tallies,
        "limits": limit / scale,
        "t0": t0,
        "relation": relation,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=("well", "pump"))
    parser.add_argument("--margin", type=float, default=1.5)
    parser.add_argument("--warm-s", type=float, default=10800.0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--release", type=float, default=0.5, help="resolve under this share of the limit"
    )
    parser.add_argument("--slow-s", type=float, default=SLOW_S, help="the residual's mean, s")
    args = parser.parse_args()
    pooled: dict[str, tuple[list[qs.Catch], int]] = {}
    with ProcessPoolExecutor(2) as pool:
        runs = pool.map(
            day,
            [args.scenario] * args.seeds,
            range(args.seeds),
            [Options(args.margin, args.warm_s, args.release, args.slow_s)] * args.seeds,
        )
        for run in runs:
            seed, tallies = run["seed"], run["tallies"]
            assert isinstance(tallies, dict)
            print(f"seed {seed}: limits in channel sd {np.round(run['limits'], 3).tolist()}")
            for mine, theirs in zip(tallies["relation"][0], tallies["product"][0], strict=True):
                if mine.delay_s != theirs.delay_s:
                    print(
                        f"  {mine.kind} on {mine.channel}: relation {mine.delay_s} s, "
                        f"product {theirs.delay_s} s"
                    )
            for alert in tallies["relation"][1]:
                hours = (alert.raised_s - float(run["t0"])) / 3600.0
                print(f"  false relation alert on {alert.kind} at {hours:.1f} h")
            for alert in run["relation"]:
                hours = (alert.raised_s - float(run["t0"])) / 3600.0
                ended = (
                    "the day's end"
                    if alert.resolved_s is None
                    else f"{(alert.resolved_s - alert.raised_s) / 60:.0f} min"
                )
                print(f"  relation alert on {alert.kind} at {hours:.2f} h, on for {ended}")
            for name, (catches, false) in tallies.items():
                have = pooled.get(name, ([], 0))
                pooled[name] = (have[0] + catches, have[1] + len(false))
    for name, (catches, n_false) in pooled.items():
        delays = [c.delay_s for c in catches if c.delay_s is not None]
        median = statistics.median(delays) if delays else None
        print(
            f"{name}: raised {len(delays)}/{len(catches)}, median delay {median} s, "
            f"false alerts {n_false}"
        )


if __name__ == "__main__":
    main()
