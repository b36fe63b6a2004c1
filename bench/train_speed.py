"""Seconds to train on 1 M rows × 8 channels on this machine, per architecture.

The data are eight coupled channels (random-walk set points through first-order lags plus
noise) written to a CSV first, so the number covers what ``aewatch train`` does: read the
file, grid it, window it, fit, calibrate and save.

    .venv/bin/python bench/train_speed.py                 # pca and dense, 1 M rows
    .venv/bin/python bench/train_speed.py --rows 200000 --arch pca dense conv vae
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aewatch.model.dataset import read_table
from aewatch.model.fit import FitSettings
from aewatch.model.train import TrainSettings, train_bundle


def make_csv(path: Path, rows: int, seed: int = 0) -> None:
    """Write ``rows`` × 8 coupled channels at 1 s to ``path``."""
    rng = np.random.default_rng(seed)
    setpoint = np.cumsum(rng.standard_normal(rows) * 0.01)
    lagged = pd.Series(setpoint).ewm(halflife=30).mean().to_numpy()
    mix = rng.standard_normal((2, 8))
    values = np.column_stack([setpoint, lagged]) @ mix + 0.05 * rng.standard_normal((rows, 8))
    frame = pd.DataFrame(values, columns=[f"ch{i}" for i in range(8)])
    frame.insert(0, "timestamp", 1.7e9 + np.arange(rows, dtype=np.float64))
    frame.to_csv(path, index=False, float_format="%.5f")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--arch", nargs="+", default=["pca", "dense"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.csv"
        make_csv(path, args.rows)
        started = time.perf_counter()
        table = read_table(path)
        read_s = time.perf_counter() - started
        print("| arch | rows | read CSV, s | train + calibrate, s | save, s | epochs |")
        print("|---|---|---|---|---|---|")
        for arch in args.arch:
            settings = TrainSettings(arch=arch, fit=FitSettings(show_progress=False))
            started = time.perf_counter()
            outcome = train_bundle([table], settings)
            train_s = time.perf_counter() - started
            started = time.perf_counter()
            outcome.bundle.save(Path(tmp) / f"{arch}.aew")
            save_s = time.perf_counter() - started
            epochs = len(outcome.fit.train_loss) or "closed form"
            print(
                f"| {arch} | {args.rows:,} | {read_s:.1f} | {train_s:.1f} | {save_s:.2f} | "
                f"{epochs} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
