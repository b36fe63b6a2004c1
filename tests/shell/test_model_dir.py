"""A folder of per-asset bundles (``models: - dir: models/``), with real bundles and a real daemon.

``models/ASSET.aew`` serves ASSET under the model name ASSET; a later entry serves the
rest. The folder is listed at start and at every reload, so a bundle dropped in and a
SIGHUP put it to work; ``check-config`` opens every bundle of the folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aewatch.commands import check_config
from aewatch.config import ModelConfig, load_config
from aewatch.daemon.fleet import load_fleet
from aewatch.errors import BundleError

from . import test_operate as operate
from .conftest import Broker
from .test_operate import STOP_TIMEOUT_S, Bundles, Service, _config_text, _free_port

bundles, prefix = operate.bundles, operate.prefix

DIR_CONFIG = """\
broker:
  url: mqtt://127.0.0.1:1883
inputs:
  - topic: "plant/{asset}/{channel}"
    payload: json
models:
  - dir: models
  - path: default.aew
"""


def _folder(tmp_path: Path, bundles: Bundles, *assets: str) -> Path:
    """A config beside ``models/`` holding ``ASSET.aew`` for each of ``assets`` and a default."""
    (tmp_path / "models").mkdir()
    for asset in assets:
        shutil.copyfile(bundles.new, tmp_path / "models" / f"{asset}.aew")
    shutil.copyfile(bundles.old, tmp_path / "default.aew")
    config = tmp_path / "aewatch.yaml"
    config.write_text(DIR_CONFIG)
    return config


def test_an_entry_takes_a_path_or_a_dir_and_a_dir_names_its_models(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either path"):
        ModelConfig.model_validate({"assets": "*"})
    with pytest.raises(ValueError, match="either path"):
        ModelConfig.model_validate({"path": "a.aew", "dir": "models"})
    with pytest.raises(ValueError, match="remove name"):
        ModelConfig.model_validate({"dir": "models", "name": "wells"})


def test_a_dir_entry_serves_the_assets_with_a_bundle_and_the_next_entry_the_rest(
    tmp_path: Path, bundles: Bundles
) -> None:
    config = load_config(_folder(tmp_path, bundles, "well-1", "well[2]"))
    (tmp_path / "models" / "notes.txt").write_text("not a bundle")
    (tmp_path / "models" / "well-1.aew.report").mkdir()  # the report folder train writes
    fleet = load_fleet(config.models)
    assert [m.name for m in fleet.models] == ["well-1", "well[2]", "well"]
    for asset, name, version in [
        ("well-1", "well-1", bundles.new_version),
        ("well[2]", "well[2]", bundles.new_version),
        ("well-2", "well", bundles.old_version),  # the bracket is no pattern
        ("well-9", "well", bundles.old_version),
    ]:
        model = fleet.model_for(asset)
        assert model is not None
        assert (model.name, model.version) == (name, version), asset
        assert config.model_for(asset) is config.models[0 if name != "well" else 1]
    only = ModelConfig.model_validate({"dir": tmp_path / "models", "assets": "well-*"})
    assert [name for name, _, _ in only.bundles()] == ["well-1"]


def test_a_missing_folder_or_a_broken_bundle_in_it_is_named(
    tmp_path: Path, bundles: Bundles, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _folder(tmp_path, bundles, "well-1")
    args = argparse.Namespace(file=path, no_models=False)
    assert check_config.run(args) == 0
    out = capsys.readouterr().out
    assert "models[0] (" in out and "1 bundle(s) in the folder" in out
    assert "well-1 serves well-1;" in out
    (tmp_path / "models" / "well-3.aew").write_bytes(b"not a bundle")
    assert check_config.run(args) == 2
    err = capsys.readouterr().err
    assert "well-3.aew" in err
    with pytest.raises(BundleError, match=r"well-3\.aew"):
        load_fleet(load_config(path).models)
    shutil.rmtree(tmp_path / "models")
    assert check_config.run(args) == 2
    assert "is not a folder; create it" in capsys.readouterr().err


@pytest.mark.broker
def test_a_bundle_dropped_into_the_folder_serves_after_a_sighup(
    tmp_path: Path, broker: Broker, bundles: Bundles, prefix: str
) -> None:
    port = _free_port()
    config = tmp_path / "aewatch.yaml"
    models = "models:\n  - dir: models\n  - path: default.aew\n"
    text = _config_text(broker, prefix, port=port, bundle=tmp_path / "default.aew")
    config.write_text(text.replace("models:\n  - path: default.aew\n", models))
    (tmp_path / "models").mkdir()
    shutil.copyfile(bundles.new, tmp_path / "models" / "well-1.aew")
    shutil.copyfile(bundles.old, tmp_path / "default.aew")
    log = tmp_path / "aewatch.log"
    command = [sys.executable, "-m", "aewatch", "run", "--config", str(config)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--stop-timeout", str(STOP_TIMEOUT_S)], stdout=out, stderr=out
        )
    service = Service(process, port, config, tmp_path / "default.aew", log)
    try:
        service.wait_ready()
        service.wait_for("the two models", lambda m: _served(m) == {"well-1", "well"})
        shutil.copyfile(bundles.new, tmp_path / "models" / "well-2.aew")
        os.kill(process.pid, signal.SIGHUP)
        service.wait_for("the new bundle", lambda m: _served(m) == {"well-1", "well-2", "well"})
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def _served(samples: dict[str, float]) -> set[str]:
    """The model names of ``aewatch_model_info``."""
    return {
        key.split('model="', 1)[1].split('"', 1)[0]
        for key in samples
        if key.startswith("aewatch_model_info{")
    }
