"""Model bundle: round trip, determinism, and clear errors for every way a file goes wrong."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from aewatch.errors import BundleError
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table
from aewatch.model.fit import FitSettings
from aewatch.model.train import TrainSettings, train_bundle


def _table(n: int = 600, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64) * 2.0 + 1.7e9
    base = np.sin(t / 40.0)
    values = np.column_stack([base, 2 * base + 1, -base]) + 0.05 * rng.standard_normal((n, 3))
    return Table("synthetic.csv", t, values, ("p", "q", "r"), None, None, np.arange(n) + 2)


@pytest.fixture(scope="module", params=["pca", "dense"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = TrainSettings(
        arch=request.param, window_len=8, fpr=0.05, fit=FitSettings(epochs=3, show_progress=False)
    )
    path = tmp_path_factory.mktemp("bundle") / "m.aew"
    train_bundle([_table()], settings).bundle.save(path)
    return path


def test_round_trip_scores_the_same(trained: Path) -> None:
    bundle = ModelBundle.load(trained)
    windows = np.random.default_rng(1).standard_normal((5, 3, 8)).astype(np.float32)
    again = ModelBundle.load(trained)
    np.testing.assert_array_equal(
        bundle.scorer().score(windows).errors, again.scorer().score(windows).errors
    )
    assert bundle.channels == ("p", "q", "r") and bundle.period_s == 2.0
    meta = json.loads(_header(trained)["__metadata__"]["aewatch"])
    for key in (
        "format_version",
        "arch",
        "window",
        "period_s",
        "channels",
        "scaler",
        "threshold",
        "provenance",
        "version",
    ):
        assert key in meta
    assert meta["provenance"]["data"][0]["sha256"]
    assert {"torch", "numpy", "aewatch"} <= meta["provenance"]["libraries"].keys()


def test_same_seed_gives_the_same_bundle(tmp_path: Path) -> None:
    settings = TrainSettings(
        arch="dense", window_len=8, fpr=0.05, fit=FitSettings(epochs=3, show_progress=False, seed=7)
    )
    a = train_bundle([_table()], settings).bundle
    b = train_bundle([_table()], settings).bundle
    assert a.version == b.version
    a.save(tmp_path / "a.aew")
    assert ModelBundle.load(tmp_path / "a.aew").version == a.version


def test_wrong_format_version_says_what_to_do(trained: Path, tmp_path: Path) -> None:
    header = _header(trained)
    meta = json.loads(header["__metadata__"]["aewatch"])
    meta["format_version"] = 99
    header["__metadata__"]["aewatch"] = json.dumps(meta)
    target = tmp_path / "future.aew"
    _rewrite(trained, target, header)
    with pytest.raises(BundleError, match=r"format version 99.*retrain"):
        ModelBundle.load(target)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_is_a_bundle_error(trained: Path, tmp_path: Path, damage: str) -> None:
    data = trained.read_bytes()
    target = tmp_path / "broken.aew"
    target.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"\x00" * 64 + data, "empty": b""}[damage]
    )
    with pytest.raises(BundleError, match=str(target)):
        ModelBundle.load(target)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"does not exist.*aewatch train"):
        ModelBundle.load(tmp_path / "nope.aew")


def test_channels_that_do_not_match(trained: Path) -> None:
    bundle = ModelBundle.load(trained)
    with pytest.raises(BundleError, match=r"missing \['r'\].*--channels p,q,r"):
        bundle.check_channels(("p", "q", "x"), "other.csv")


def _header(path: Path) -> dict:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n])


def _rewrite(source: Path, target: Path, header: dict) -> None:
    raw = source.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    target.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])


def test_provenance_records_the_rows_the_model_was_fitted_on() -> None:
    # Labelled rows are left out of training, so the fitted part (the oldest three quarters
    # of the normal rows) ends later than three quarters of the file's rows would say.
    table = _table()
    labels = np.zeros(len(table.timestamps), dtype=np.int8)
    labels[100:200] = 1
    labelled = Table(table.source, table.timestamps, table.values, table.channels, labels,
                     None, table.lines)  # fmt: skip
    settings = TrainSettings(window_len=8, fpr=0.05)
    provenance = train_bundle([labelled], settings).bundle.provenance
    last = 200 + round(500 * 0.75) - 100 - 1  # the 375th normal row
    assert provenance["fitted"] == {
        "first": "2023-11-14T22:13:20Z",
        "last": _iso(table.timestamps[last]),
        "rows": 375,
    }


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")
