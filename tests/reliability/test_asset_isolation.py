"""One asset cannot silence the others (issue 13, item 2).

An asset name that cannot make a valid output topic (MQTT wildcards, a NUL, an output topic
beyond 65 535 bytes) is refused at intake, counted and logged once; a model whose scorer
fails loses its own assets' windows, not the other model's; errors are counted by asset
and stage with a bounded label set. End to end: a real daemon beside a real Mosquitto takes
a long-named asset's messages (the input topic fits MQTT, its output topics would not)
between two healthy assets, and every window of the healthy ones is still published.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from aewatch.config import Config
from aewatch.core.decode import Reading
from aewatch.core.pipeline import Pipeline
from aewatch.daemon.asset_errors import OTHER, AssetErrors
from aewatch.daemon.fleet import Fleet, ServedModel
from aewatch.daemon.intake import MAX_TOPIC_BYTES, Intake, ReadingQueue
from aewatch.model.bundle import ModelBundle

from ..shell import test_operate as operate
from ..shell.conftest import Broker
from ..shell.test_operate import CHANNELS, WINDOWS, Bundles, Feed, Service, _drops, _free_port
from .figures import record

pytestmark = pytest.mark.reliability

bundles = operate.bundles  # two trained well models (test_operate's fixture)
T0 = 1_700_000_000.0


# -- AssetErrors ----------------------------------------------------------------------------


def test_asset_errors_keep_a_bounded_label_set_and_log_each_first_error_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = AssetErrors(logging.getLogger("aewatch.test"), max_assets=2)
    with caplog.at_level(logging.WARNING, logger="aewatch.test"):
        for _ in range(3):
            for asset in ("w1", "w2", "w3", "x" * 500):
                errors.note(asset, "score", "ValueError", "shapes disagree")
        errors.note("w1", "publish", "ValueError", "topic too long")
    assert errors.counts() == [
        (OTHER, "decode", 0),
        (OTHER, "publish", 0),
        (OTHER, "score", 6),  # w3 and the long name, 3 times each
        ("w1", "publish", 1),
        ("w1", "score", 3),
        ("w2", "score", 3),
    ]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5  # each asset and reason once, whatever its label
    assert "asset 'w3': score error (ValueError)" in lines[2]
    assert "(500 bytes in UTF-8)" in lines[3]
    with pytest.raises(ValueError, match="stage must be one of"):
        errors.note("w1", "align", "x", "y")


# -- refused at intake ------------------------------------------------------------------------


def _intake(bundle: ModelBundle, outputs: dict[str, object]) -> Intake:
    config = Config.model_validate(
        {
            "broker": {"url": "mqtt://localhost"},
            "inputs": [{"topic": "in/{asset}/{channel}", "payload": "json"}],
            "models": [{"path": "m.aew"}],
            "outputs": outputs,
        }
    )
    return Intake(config, Fleet([ServedModel.from_bundle(bundle)]), ReadingQueue(1000))


def test_names_that_cannot_make_an_output_topic_are_refused_at_intake(
    bundles: Bundles, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = ModelBundle.load(bundles.old)
    prefix = "out/" + "p" * 100
    intake = _intake(bundle, {"topic_prefix": prefix})
    alert_room = MAX_TOPIC_BYTES - len(f"{prefix}/alerts/".encode())
    fits = "é" * (alert_room // 2)  # two bytes each in UTF-8: as long as an alert topic goes
    payload = json.dumps({"ts": T0, "value": 1.0}).encode()
    names = {"w+1": "wildcard", "w#1": "wildcard", "w\x001": "nul", fits + "é": "topic_too_long"}
    with caplog.at_level(logging.WARNING, logger="aewatch.intake"):
        for name in names:
            intake.take(f"in/{name}/{CHANNELS[0]}", payload)
            intake.take(f"in/{name}/{CHANNELS[1]}", payload)  # the same name: no second line
        intake.take(f"in/{fits}/{CHANNELS[0]}", payload)
        intake.take(f"in/w1/{CHANNELS[0]}", payload)
    assert intake.counts.bad_asset_name == 2 * len(names)
    assert [r.asset for batch in intake.queue.take(0) for r in batch] == [fits, "w1"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(names), lines
    assert "holds '+' or '#', MQTT's wildcards" in lines[0]
    assert "holds a NUL character" in lines[2]
    too_long = len(f"{prefix}/alerts/{fits}é".encode())
    assert f"its alert topic would be {too_long} bytes, beyond MQTT's 65535" in lines[3]
    assert "shorten the asset names or outputs.topic_prefix" in lines[3]


def test_the_denoised_topic_counts_only_when_it_is_published(bundles: Bundles) -> None:
    bundle = ModelBundle.load(bundles.old)
    outputs = {"denoised_topic": "{prefix}/denoised/" + "d" * 1000 + "/{asset}"}
    name = "w" * (MAX_TOPIC_BYTES - len("aewatch/denoised/" + "d" * 1000 + "/"))
    payload = json.dumps({"ts": T0, "value": 1.0}).encode()
    for denoised, refused in ((False, 0), (True, 0), (True, 1)):
        intake = _intake(bundle, {**outputs, "denoised": denoised})
        intake.take(f"in/{name + 'w' * refused}/{CHANNELS[0]}", payload)
        assert intake.counts.bad_asset_name == refused


# -- scored apart ---------------------------------------------------------------------------


def test_a_model_whose_scoring_fails_loses_only_its_own_assets(bundles: Bundles) -> None:
    """A scorer that cannot run (a batch size of 0) serves 'bad-*'; 'w*' goes on."""
    good = ServedModel.from_bundle(ModelBundle.load(bundles.old), pattern="w*")
    bad = ServedModel.from_bundle(ModelBundle.load(bundles.new), pattern="bad-*", batch_size=0)
    pipeline = Pipeline(Fleet([good, bad]))
    readings = [
        Reading(asset, channel, T0 + i, value)
        for i, row in enumerate(bundles.rows[:40])
        for asset in ("w1", "bad-1", "w2", "bad-2")
        for channel, value in zip(CHANNELS, row, strict=True)
    ]
    pipeline.ingest(readings)
    scored = pipeline.flush()
    assert [s.assets for s in scored] == [("w1", "w2")]
    assert len(scored[0].end_timestamps) == pipeline.counts.windows > 0
    assert sorted(f.asset for f in pipeline.failures) == ["bad-1", "bad-2"]
    assert {f.reason for f in pipeline.failures} == {"ValueError"}
    assert pipeline.pending == 0
    pipeline.ingest(
        Reading("w1", c, T0 + 40, v) for c, v in zip(CHANNELS, bundles.rows[40], strict=True)
    )
    assert [s.assets for s in pipeline.flush()] == [("w1",)]
    assert pipeline.failures == []


# -- end to end ------------------------------------------------------------------------------


@dataclass
class Denoised:
    """Rows of every denoised message under one topic filter, per asset."""

    broker: Broker
    topic: str
    rows: dict[str, int] = field(default_factory=dict)
    _client: mqtt.Client = field(init=False)

    def __post_init__(self) -> None:
        self._client = operate.subscribed_client(self.broker, self.topic, self._take)

    def _take(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        body = json.loads(message.payload)
        self.rows[body["asset"]] = self.rows.get(body["asset"], 0) + len(body["ts"])

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@pytest.mark.broker
def test_a_long_named_asset_beside_healthy_ones_silences_nothing(
    broker: Broker,
    bundles: Bundles,
    tmp_path: Path,
    daemons: list[subprocess.Popen[bytes]],
) -> None:
    prefix = "longname"
    out = f"{prefix}/out/" + "o" * 200
    port = _free_port()
    config = tmp_path / "aewatch.yaml"
    config.write_text(
        f"broker:\n  url: {broker.url}\n  client_id: aewatch-{prefix}\n"
        f'inputs:\n  - topic: "{prefix}/in/{{asset}}/{{channel}}"\n    payload: json\n'
        f"models:\n  - path: {bundles.old}\n"
        f"outputs:\n  topic_prefix: {out}\n  denoised: true\n"
        f"metrics:\n  port: {port}\n"
    )
    log = tmp_path / "aewatch.log"
    with log.open("wb") as sink:
        command = [sys.executable, "-m", "aewatch", "run", "--config", str(config)]
        daemons.append(
            subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=dict(os.environ))
        )
    service = Service(daemons[0], port, config, bundles.old, log)
    service.wait_ready()
    # The longest name whose input topics MQTT carries; its alert topic would not fit.
    longest_channel = max(len(c) for c in CHANNELS)
    long_name = "L" * (MAX_TOPIC_BYTES - len(f"{prefix}/in//") - longest_channel)
    assert len(f"{out}/alerts/{long_name}".encode()) > MAX_TOPIC_BYTES
    denoised = Denoised(broker, f"{out}/denoised/+")
    feed = Feed(broker, prefix, bundles.rows)
    try:
        for _ in range(6):
            for asset in ("w1", long_name, "w2"):
                feed.send(asset, 10)
        settled = service.wait_for(
            "every message taken and accounted for",
            lambda m: operate._is_settled(m, feed.sent) and m[WINDOWS] > 0,
        )
        long_messages = 60 * len(CHANNELS)
        assert settled['aewatch_messages_dropped_total{reason="bad_asset_name"}'] == long_messages
        assert _drops(settled) == long_messages
        # Every message is accounted for once aligned; its windows may still wait for the
        # worker's next flush: wait for all of them (60 rows each) and their denoised rows.
        windows = 2 * (60 - ModelBundle.load(bundles.old).window_len + 1)
        settled = service.wait_for(
            "a denoised row for every window of the healthy assets",
            lambda m: m[WINDOWS] == windows and sum(denoised.rows.values()) >= windows,
        )
    finally:
        feed.close()
        denoised.close()
    assert sorted(denoised.rows) == ["w1", "w2"]
    assert sum(denoised.rows.values()) == settled[WINDOWS]
    assert denoised.rows["w1"] == denoised.rows["w2"]
    errors = {k: v for k, v in settled.items() if k.startswith("aewatch_asset_errors_total")}
    assert set(errors.values()) == {0}, errors
    assert settled["aewatch_internal_errors_total"] == 0
    text = service.log_text()
    assert text.count("refused: its alert topic would be") == 1, text[-3000:]
    assert f"({len(long_name)} bytes in UTF-8) (topic 'longname/in/" in text
    record(
        f"an asset named {len(long_name)} bytes long beside two healthy ones",
        "its readings refused at intake, counted and logged once; the others lost nothing",
        readings_sent=feed.sent,
        refused_long_name=long_messages,
        healthy_windows_scored=int(settled[WINDOWS]),
        healthy_windows_expected=windows,
        denoised_rows_published=sum(denoised.rows.values()),
    )
