"""The reliability suite's fixtures: the shell tests' real mosquitto, and a small model.

``make reliability`` runs the long version (``AEWATCH_RELIABILITY_KILLS=20``); ``make test``
runs the same tests with a few kills.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import read_table
from aewatch.model.fit import FitSettings
from aewatch.model.train import TrainSettings, train_bundle
from aewatch.sim.cli import write_csv
from aewatch.sim.simulate import simulate

from ..shell.conftest import broker, daemon_log  # noqa: F401  (the fixtures, for these tests too)

WINDOW_LEN = 10  # TrainSettings' default


@pytest.fixture(scope="session")
def well_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PCA model of a simulated well (10 s samples), trained on a normal day."""
    folder = tmp_path_factory.mktemp("reliability-model")
    stream = simulate("well", hours=24, period_s=10.0, faults=[], seed=1)
    write_csv(stream, folder / "normal.csv")
    settings = TrainSettings(name="well", fit=FitSettings(show_progress=False))
    path = folder / "well.aew"
    train_bundle([read_table(folder / "normal.csv")], settings).bundle.save(path)
    assert ModelBundle.load(path).window_len == WINDOW_LEN
    return path
