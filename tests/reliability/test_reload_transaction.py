"""A reload is a transaction: checked in full first, the old models serve on any failure.

The daemon runs as a subprocess against a real Mosquitto (the fixtures of
``test_operate``) while a publisher keeps sending. Each broken bundle is moved over the
configured one and the daemon reloaded: the window of 10^9 samples that once made the
reload install the new fleet and then stop scoring, a period of 0, a hop of 0, a header
nested 100 000 deep. Each reload is refused and counted, the log names the field, the old
version keeps scoring and /healthz stays truthful; a good bundle then reloads, and every
reading sent is aligned. A model that cannot serve on the configured device refuses to start.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aewatch.cli import main

from ..shell import test_operate as operate
from ..shell.conftest import Broker
from ..shell.test_operate import (
    RELOADS_FAILED,
    WINDOWS,
    Bundles,
    Feed,
    Launch,
    _drops,
    _is_settled,
    _model_versions,
    _reload_failures,
    _replace,
)
from .figures import record

pytestmark = pytest.mark.reliability

# The daemon-as-a-subprocess fixtures of test_operate, shared here.
bundles, launch, prefix = operate.bundles, operate.launch, operate.prefix


def _with_meta(source: Path, change: Callable[[dict[str, Any]], str]) -> bytes:
    """``source``'s bytes with its metadata replaced by ``change(meta)`` (JSON text)."""
    raw = source.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["aewatch"])
    header["__metadata__"]["aewatch"] = change(meta)
    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + raw[8 + n :]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], str]:
    def change(meta: dict[str, Any]) -> str:
        *parents, last = path.split(".")
        node = meta
        for part in parents:
            node = node[part]
        node[last] = value
        return json.dumps(meta)

    return change


def _more_windows(scored: float) -> Callable[[dict[str, float]], bool]:
    return lambda m: m[WINDOWS] > scored


def _deep(meta: dict[str, Any]) -> str:
    return json.dumps({**meta, "provenance": "DEEP"}).replace(
        '"DEEP"', "[" * 100_000 + "]" * 100_000
    )


BROKEN = [
    ("a window of 10^9 samples", _set("window.length", 10**9), "window.length = 1000000000"),
    ("period 0", _set("period_s", 0), "period_s = 0 must be between"),
    ("hop 0", _set("window.hop", 0), "window.hop = 0 must be between 1 and"),
    ("a header nested 100 000 deep", _deep, "nests 100001 levels deep"),
]


@pytest.mark.broker
def test_a_failed_reload_under_load_keeps_the_old_models_scoring(
    broker: Broker, bundles: Bundles, launch: Launch, prefix: str
) -> None:
    service = launch()
    service.wait_ready()
    feed = Feed(broker, prefix, bundles.rows)
    done = threading.Event()

    def publish() -> None:
        while not done.is_set():
            feed.send("w1", 5, pause_s=0.002)
            feed.send("w2", 5, pause_s=0.002)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        scored = service.wait_for("windows scored", lambda m: m[WINDOWS] > 0)[WINDOWS]
        for failed, (case, change, named) in enumerate(BROKEN, start=1):
            _replace(service.bundle, _with_meta(bundles.old, change))
            samples = service.reload(expect_ok=0, expect_failed=failed)
            assert _model_versions(samples) == [bundles.old_version], case
            last_failure = _reload_failures(service.log_text())[-1]
            assert str(service.bundle) in last_failure and named in last_failure, last_failure
            assert service.get("/healthz") == (200, "ok\n"), case
            scored = service.wait_for(
                f"the old model to go on scoring after {case}",
                _more_windows(scored),
            )[WINDOWS]
        _replace(service.bundle, bundles.new.read_bytes())
        reloaded = service.reload(expect_ok=1, expect_failed=len(BROKEN))
        assert _model_versions(reloaded) == [bundles.new_version]
    finally:
        done.set()
        publisher.join()
    settled = service.wait_for("every reading aligned", lambda m: _is_settled(m, feed.sent))
    feed.close()
    assert settled[RELOADS_FAILED] == len(BROKEN)
    assert _drops(settled) == 0
    # Aligned is not yet scored: the windows of the last rows may wait for the next flush.
    final = service.wait_for("the new model to score", _more_windows(scored))
    assert service.get("/healthz") == (200, "ok\n")
    assert settled["aewatch_internal_errors_total"] == 0
    record(
        "reload of a broken bundle under load (window 10^9, period 0, hop 0, header 100 000 deep)",
        "each refused, counted and named in the log; the old model scored on; /healthz 200",
        reloads_refused=int(settled[RELOADS_FAILED]),
        readings_sent=feed.sent,
        dropped=int(_drops(settled)),
        windows_scored=int(final[WINDOWS]),
    )


def test_a_model_that_cannot_serve_on_the_device_refuses_to_start(
    bundles: Bundles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fleet is built and checked as it will serve: on ``--device`` (here 'meta',
    torch's device of shapes without data, where nothing can be read back)."""
    config = tmp_path / "aewatch.yaml"
    config.write_text(
        "broker:\n  url: mqtt://127.0.0.1:1\n"
        "inputs:\n  - topic: t/{asset}/{channel}\n    payload: json\n"
        f"models:\n  - path: {bundles.old}\nmetrics:\n  port: 0\n"
    )
    assert main(["run", "--config", str(config), "--device", "meta"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"model 'well' ({bundles.old}) cannot be put on device 'meta'" in err
    assert "run with `--device cpu`" in err
