"""CPU cost per reading of the daemon's core, without MQTT: decode, align, window, score, decide.

    .venv/bin/python bench/pipeline_speed.py [--assets 1000] [--rows 40] [--read-spread S]
                                             [--flush-windows N]

Feeds the messages ``aewatch run`` would get from ``assets`` assets × 8 channels at a
10 ms period (one ``json_multi`` message per asset row, one ``json`` message per reading,
or one 100-sample ``float32_le`` message per channel) through
:meth:`~aewatch.daemon.intake.Intake.take_many` and
:meth:`~aewatch.core.pipeline.Pipeline.ingest` / ``flush`` in batches as the daemon's
network thread and worker see them in a flood, and prints µs of one core per reading
(median of ``--repeats``). ``--flush-windows`` sets how many windows wait before a flush:
the daemon's ``batch_size`` (256) by default; a daemon under load flushes what piled up
while it scored, tens of thousands of windows (``aewatch_batch_size_windows``). This
isolates the core's share of ``bench/throughput/run.py``'s figures; ``--profile`` prints
where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import pstats
import statistics
import time
from collections.abc import Callable

import numpy as np

from aewatch.config import Config
from aewatch.core.pipeline import Pipeline
from aewatch.daemon.fleet import Fleet, ServedModel
from aewatch.daemon.intake import Intake, ReadingQueue
from aewatch.model.dataset import Table
from aewatch.model.fit import FitSettings
from aewatch.model.scorer import set_inference_threads
from aewatch.model.train import TrainSettings, train_bundle

CHANNELS = tuple(f"ch{i}" for i in range(8))
PERIOD_S = 0.01
T0 = 1_700_000_000.0
NETWORK_BATCH = 700  # messages per socket read in a flood (64 KiB of ~90-byte messages)
FLOAT32_BATCH = 150  # float32_le messages per read (64 KiB of ~420-byte messages)
FLUSH_WINDOWS = 256  # the daemon's default batch_size (--flush-windows)


def _process(n: int, seed: int) -> np.ndarray:
    """``n`` rows of 8 coupled channels: what the model is trained on and what is sent."""
    rng = np.random.default_rng(seed)
    base = np.sin(np.arange(n) / 50.0)
    return base[:, None] * np.linspace(0.5, 1.5, 8)[None, :] + 0.05 * rng.standard_normal((n, 8))


def _bundle() -> object:
    n = 5000
    t = T0 + np.arange(n) * PERIOD_S
    table = Table("bench.csv", t, _process(n, 0), CHANNELS, None, None, np.arange(n) + 2)
    settings = TrainSettings(window_len=10, hop=1, fit=FitSettings(show_progress=False))
    return train_bundle([table], settings).bundle


def _config(fmt: str) -> Config:
    topic = "plant/{asset}/data" if fmt == "json_multi" else "plant/{asset}/{channel}"
    return Config.model_validate(
        {
            "broker": {"url": "mqtt://127.0.0.1:1883"},
            "inputs": [{"topic": topic, "payload": fmt, "timestamp": "payload"}]
            if fmt != "float32_le"
            else [{"topic": topic, "payload": fmt, "timestamp": "arrival"}],
            "models": [{"path": "unused.aew"}],
            "limits": {"max_late_s": 1.5 if fmt == "float32_le" else 0.05, "queue_size": 10**7},
        }
    )


Batch = tuple[float, list[tuple[str, bytes]]]  # arrival time, messages of one socket read


def _messages(fmt: str, assets: int, rows: int, spread_s: float = 0.0) -> list[Batch]:
    """The messages of ``rows`` rows of every asset, cut into socket-read batches.

    ``float32_le`` blocks of 100 samples are stamped on arrival: each round of blocks
    arrives one second (100 periods) after the one before, and no read spans two rounds.
    With ``spread_s``, a round's reads arrive one after another over that long, as a
    flood is read, so an asset whose channels straddle two reads gets blocks stamped a
    slot or more apart (each read half a step into its share, so that no stamp falls
    exactly halfway between two slots, which real arrival times never do).
    """
    if fmt == "float32_le":
        process = _process(rows, 1).astype("<f4")
        batches: list[Batch] = []
        for b in range(max(1, rows // 100)):
            blocks = [process[b * 100 : (b + 1) * 100, i].tobytes() for i in range(8)]
            round_ = [
                (f"plant/a{a}/{c}", blocks[i])
                for a in range(assets)
                for i, c in enumerate(CHANNELS)
            ]
            starts = range(0, len(round_), FLOAT32_BATCH)
            step_s = spread_s / len(starts)
            batches += [
                (T0 + 1.0 + b + (j + 0.5) * step_s, round_[i : i + FLOAT32_BATCH])
                for j, i in enumerate(starts)
            ]
        return batches
    out: list[tuple[str, bytes]] = []
    process = _process(rows, 1)
    for r in range(rows):
        ts = round(T0 + r * PERIOD_S, 3)
        values = {c: round(float(v), 4) for c, v in zip(CHANNELS, process[r], strict=True)}
        for a in range(assets):
            if fmt == "json_multi":
                out.append((f"plant/a{a}/data", json.dumps({"ts": ts, **values}).encode()))
            else:
                out += [
                    (f"plant/a{a}/{c}", json.dumps({"ts": ts, "value": v}).encode())
                    for c, v in values.items()
                ]
    arrival = T0 + rows * PERIOD_S
    return [(arrival, out[i : i + NETWORK_BATCH]) for i in range(0, len(out), NETWORK_BATCH)]


def _prepare(
    fmt: str,
    bundle: object,
    assets: int,
    rows: int,
    *,
    spread_s: float = 0.0,
    flush_windows: int = FLUSH_WINDOWS,
) -> tuple[Callable[[], None], Pipeline]:
    """The run over a fresh intake and pipeline, and that pipeline."""
    config = _config(fmt)
    set_inference_threads(config.limits.inference_threads)  # as the daemon does
    fleet = Fleet([ServedModel.from_bundle(bundle, pattern="*")])  # type: ignore[arg-type]
    queue = ReadingQueue(10**7)
    now = [T0]
    intake = Intake(config, fleet, queue, clock=lambda: now[0])
    pipeline = Pipeline(fleet, max_assets=100_000, max_late_s=config.limits.max_late_s)
    batches = _messages(fmt, assets, rows, spread_s)

    def run() -> None:
        for arrival, batch in batches:
            now[0] = arrival
            intake.take_many(batch)
            for items in queue.take(timeout_s=0):
                pipeline.ingest(items)
            if pipeline.pending >= flush_windows:
                pipeline.flush()
        pipeline.flush()

    return run, pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--formats", nargs="+", default=["json", "json_multi", "float32_le"])
    parser.add_argument(
        "--read-spread",
        type=float,
        default=0.0,
        metavar="S",
        help="float32_le: a round's socket reads arrive over S seconds (default 0: at once)",
    )
    parser.add_argument(
        "--flush-windows",
        type=int,
        default=FLUSH_WINDOWS,
        metavar="N",
        help=f"flush when N windows wait (default {FLUSH_WINDOWS}, the daemon's batch_size)",
    )
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    bundle = _bundle()
    for fmt in args.formats:
        rows = args.rows * 100 if fmt == "float32_le" else args.rows
        prepare = functools.partial(
            _prepare,
            fmt,
            bundle,
            args.assets,
            rows,
            spread_s=args.read_spread,
            flush_windows=args.flush_windows,
        )
        costs = []
        placed = 0
        for _ in range(args.repeats):
            run, pipeline = prepare()
            started = time.process_time()
            run()
            placed = pipeline.counts.aligned
            costs.append((time.process_time() - started) / max(placed, 1) * 1e6)
        print(
            f"{fmt:11s} {statistics.median(costs):6.2f} µs/reading "
            f"({1e6 / statistics.median(costs):,.0f} readings/s on one core; {placed:,} placed)"
        )
        if args.profile:
            profiler = cProfile.Profile()
            run, _ = prepare()
            profiler.runcall(run)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(14)


if __name__ == "__main__":
    main()
