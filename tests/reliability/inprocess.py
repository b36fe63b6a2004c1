"""What the in-process reliability tests share: a config with a state folder, a started
daemon, simulated rows and a patient wait (the daemon runs in the test's process against
the shell tests' real mosquitto)."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from aewatch.config import load_config
from aewatch.daemon.service import Daemon
from aewatch.sim.simulate import parse_faults, simulate
from tests import polling

from ..shell.conftest import Broker

PERIOD_S = 10.0
T0 = 1_700_000_000.0
TIMEOUT_S = 120.0  # generous: other work may share the CPUs

Rows = list[tuple[float, dict[str, float]]]


def write_config(
    folder: Path,
    broker: Broker,
    bundle: Path,
    *,
    prefix: str,
    client_id: str,
    more: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """``folder/aewatch.yaml``: one json input under ``prefix``, ``bundle`` as model
    ``well``, metrics on a free port, ``folder/state`` as the state folder; ``more`` maps
    a section to keys merged into it."""
    data: dict[str, Any] = {
        "broker": {
            "url": broker.url,
            "client_id": client_id,
            "reconnect_min_s": 1,
            "reconnect_max_s": 1,
        },
        "inputs": [{"topic": f"{prefix}/in/{{asset}}/{{channel}}", "payload": "json"}],
        "models": [{"path": str(bundle), "name": "well"}],
        "outputs": {"topic_prefix": prefix},
        "metrics": {"port": 0},
        "state_dir": str(folder / "state"),
    }
    for section, keys in (more or {}).items():
        data[section] = {**data.get(section, {}), **keys}
    path = folder / "aewatch.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextmanager
def running(config_path: Path) -> Iterator[Daemon]:
    """A started daemon, connected and subscribed; drained and stopped afterwards."""
    daemon = Daemon(load_config(config_path))
    daemon.start()
    try:
        wait_until(daemon.is_connected.is_set, "the daemon connected")
        time.sleep(0.5)  # subscribed just after connecting
        yield daemon
    except BaseException:
        daemon.stop()
        raise
    assert daemon.stop(), "the daemon did not drain within its stop timeout"


def simulated_rows(n: int, *, seed: int, faults: str = "") -> Rows:
    """``n`` rows of the simulated well from ``T0``, ``PERIOD_S`` apart: (time, values)."""
    hours = n * PERIOD_S / 3600
    stream = simulate(
        "well", hours=hours, period_s=PERIOD_S, faults=parse_faults(faults), seed=seed
    )
    names = list(stream.channels)
    return [
        (T0 + i * PERIOD_S, {name: float(v) for name, v in zip(names, row, strict=True)})
        for i, row in enumerate(stream.values[:n])
    ]


wait_until = functools.partial(polling.wait_until, timeout_s=TIMEOUT_S)
