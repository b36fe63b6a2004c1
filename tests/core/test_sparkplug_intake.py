"""Sparkplug B messages through the intake: routing, models, names, events, rebirth requests.

What the broker test (tests/shell/test_sparkplug_daemon.py) shows end to end, here message
by message against an :class:`Intake` with a fixed clock: the readings queued, the counts,
the events and the commands waiting to be published.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any

import numpy as np
import pytest

from aewatch.config import Config
from aewatch.core.decode import DECODE_REASONS, Decoded, Reading, Row
from aewatch.daemon.fleet import Fleet, ServedModel
from aewatch.daemon.intake import Intake, ReadingQueue
from aewatch.daemon.sparkplug import REBIRTH_METRIC, SPARKPLUG_REASONS
from aewatch.daemon.sparkplug_input import SPARKPLUG_EVENTS, SparkplugEvents
from aewatch.daemon.sparkplug_schema import Payload
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table
from aewatch.model.fit import FitSettings
from aewatch.model.train import TrainSettings, train_bundle

T0_MS = 1_767_225_600_000
NOW = T0_MS / 1000.0 + 5.0
DOUBLE = 10
GROUP = "north"
SOURCE: dict[str, Any] = {
    "payload": "sparkplug_b",
    "sparkplug": {"group": GROUP, "channels": {"Pump/Flow": "flow"}},
}


def config(source: dict[str, Any] = SOURCE, **limits: Any) -> Config:
    return Config.model_validate(
        {
            "broker": {"url": "mqtt://localhost"},
            "inputs": [source, {"topic": "plant/{asset}/{channel}", "payload": "json"}],
            "models": [{"path": "pump.aew", "assets": "gw1/*"}],
            "limits": limits,
        }
    )


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    """A pca model of channels flow and temp, sampled every second."""
    rng = np.random.default_rng(0)
    t = NOW + np.arange(600, dtype=np.float64)
    values = np.column_stack([np.sin(t / 10), np.cos(t / 10)]) + 0.05 * rng.standard_normal(
        (600, 2)
    )
    rows = Table("x.csv", t, values, ("flow", "temp"), None, None, np.arange(600) + 2)
    return train_bundle([rows], TrainSettings(fit=FitSettings(show_progress=False))).bundle


@pytest.fixture
def intake(bundle: ModelBundle) -> Intake:
    fleet = Fleet([ServedModel.from_bundle(bundle, pattern="gw1/*")])
    return Intake(config(), fleet, ReadingQueue(1000), clock=lambda: NOW)


def payload(seq: int | None, *metrics: dict[str, Any], at_ms: int = T0_MS) -> bytes:
    message = Payload(timestamp=at_ms)
    if seq is not None:
        message.seq = seq
    for metric in metrics:
        message.metrics.add(**metric)
    return bytes(message.SerializeToString())


def node_birth(bd_seq: int = 0) -> bytes:
    return payload(
        0,
        {"name": "bdSeq", "datatype": 4, "long_value": bd_seq},
        {"name": REBIRTH_METRIC, "datatype": 11, "boolean_value": False},
        {"name": "Node Info/Version", "datatype": 12, "string_value": "8.1"},
    )


def device_birth(seq: int) -> bytes:
    return payload(
        seq,
        {"name": "Pump/Flow", "alias": 1, "datatype": DOUBLE, "double_value": 3.0},
        {"name": "temp", "alias": 2, "datatype": DOUBLE, "double_value": 40.0},
    )


def device_data(seq: int, flow: float, temp: float, *, at_ms: int = T0_MS + 1000) -> bytes:
    return payload(
        seq, {"alias": 1, "double_value": flow}, {"alias": 2, "double_value": temp}, at_ms=at_ms
    )


def topic(kind: str, device: str | None = "pump-1", node: str = "gw1") -> str:
    return f"spBv1.0/{GROUP}/{kind}/{node}" + ("" if device is None else f"/{device}")


def queued(source: Intake) -> list[Any]:
    return [item for batch in source.queue.take(timeout_s=0) for item in batch]


def refusals(source: Intake) -> dict[str, int]:
    return {
        k: v for k, v in source.counts.as_dict().items() if v and k not in ("messages", "readings")
    }


def born(source: Intake) -> None:
    source.take(topic("NBIRTH", None), node_birth())
    source.take(topic("DBIRTH"), device_birth(1))


def test_every_sparkplug_reason_is_a_decode_reason_and_events_start_at_zero(
    intake: Intake,
) -> None:
    assert set(SPARKPLUG_REASONS) <= set(DECODE_REASONS)
    assert intake.sparkplug.events == SparkplugEvents()
    assert tuple(f.name for f in fields(SparkplugEvents)) == SPARKPLUG_EVENTS


def test_births_and_data_by_alias_become_rows_of_the_device_asset(intake: Intake) -> None:
    born(intake)
    intake.take(topic("DDATA"), device_data(2, 3.5, 41.0))
    assert queued(intake) == [
        Row("gw1/pump-1", ("flow", "temp"), T0_MS / 1000.0, (3.0, 40.0)),  # renamed Pump/Flow
        Row("gw1/pump-1", ("flow", "temp"), T0_MS / 1000.0 + 1.0, (3.5, 41.0)),
    ]
    assert (intake.counts.messages, intake.counts.readings) == (3, 4)
    assert refusals(intake) == {}
    assert (intake.sparkplug.events.birth, intake.sparkplug.take_commands()) == (2, [])


def test_data_that_reports_by_exception_still_makes_whole_rows(intake: Intake) -> None:
    """A DDATA with the flow alone: the temperature is held, so the row is whole."""
    born(intake)
    queued(intake)
    intake.take(topic("DDATA"), payload(2, {"alias": 1, "double_value": 3.5}, at_ms=T0_MS + 1000))
    assert queued(intake) == [
        Row("gw1/pump-1", ("flow", "temp"), T0_MS / 1000.0 + 1.0, (3.5, 40.0))
    ]


def test_readings_at_different_times_stay_readings(intake: Intake) -> None:
    born(intake)
    queued(intake)
    intake.take(
        topic("DDATA"),
        payload(
            2,
            {"alias": 1, "double_value": 4.0, "timestamp": T0_MS + 1000},
            {"alias": 2, "double_value": 42.0, "timestamp": T0_MS + 2000},
        ),
    )
    assert queued(intake) == [
        Reading("gw1/pump-1", "flow", T0_MS / 1000.0 + 1.0, 4.0),
        Reading("gw1/pump-1", "temp", T0_MS / 1000.0 + 2.0, 42.0),
    ]


def test_data_before_a_birth_is_counted_and_asks_for_a_rebirth_once(intake: Intake) -> None:
    intake.take(topic("DDATA"), device_data(7, 1.0, 2.0))
    intake.take(topic("DDATA"), device_data(8, 1.0, 2.0))
    assert queued(intake) == []
    assert refusals(intake) == {"decode_error:no_birth": 2}
    ((command_topic, body),) = intake.sparkplug.take_commands()  # once per node per 30 s
    assert command_topic == f"spBv1.0/{GROUP}/NCMD/gw1"
    request = Payload.FromString(body)
    assert [(m.name, m.boolean_value) for m in request.metrics] == [(REBIRTH_METRIC, True)]
    assert intake.sparkplug.events.rebirth_request == 1
    assert intake.sparkplug.take_commands() == []


def test_a_sequence_gap_stales_the_node_and_asks_for_a_rebirth(
    intake: Intake, caplog: pytest.LogCaptureFixture
) -> None:
    born(intake)
    with caplog.at_level(logging.INFO, logger="aewatch.sparkplug"):
        intake.take(topic("DDATA"), device_data(5, 3.5, 41.0))  # 2, 3, 4 lost
        commands = intake.sparkplug.take_commands()
    assert len(queued(intake)) == 2  # the DBIRTH's row and the DDATA's: still read
    assert intake.sparkplug.events.seq_gap == 1
    assert [c[0] for c in commands] == [f"spBv1.0/{GROUP}/NCMD/gw1"]
    gap = [r.getMessage() for r in caplog.records if "skipped a sequence number" in r.message]
    assert gap == [
        f"Sparkplug edge node gw1 (group {GROUP}) skipped a sequence number (at its DDATA): "
        "messages were lost; assets gw1, gw1/pump-1 are stale until its next birth"
    ]
    assert any(
        "asking for a rebirth on spBv1.0/north/NCMD/gw1" in r.message for r in caplog.records
    )


def test_deaths_are_events_and_rebirth_false_asks_nothing(bundle: ModelBundle) -> None:
    quiet = {**SOURCE, "sparkplug": {**SOURCE["sparkplug"], "rebirth": False}}
    fleet = Fleet([ServedModel.from_bundle(bundle, pattern="gw1/*")])
    intake = Intake(config(quiet), fleet, ReadingQueue(1000), clock=lambda: NOW)
    born(intake)
    intake.take(topic("DDEATH"), payload(2))
    intake.take(
        topic("NDEATH", None), payload(None, {"name": "bdSeq", "datatype": 4, "long_value": 0})
    )
    intake.take(topic("DDATA"), device_data(3, 1.0, 2.0))  # after the death: no birth
    assert intake.sparkplug.events.death == 2
    assert refusals(intake) == {"decode_error:no_birth": 1}
    assert intake.sparkplug.take_commands() == []


def test_an_asset_no_model_serves_is_counted_but_its_node_is_still_followed(
    intake: Intake,
) -> None:
    intake.take(topic("NBIRTH", None, node="gw2"), node_birth())
    intake.take(topic("DBIRTH", node="gw2"), device_birth(1))  # gw2/pump-1: no model
    intake.take(topic("DDATA", node="gw2"), device_data(2, 1.0, 2.0))
    assert queued(intake) == []
    assert refusals(intake) == {"no_model": 2}  # the messages with readings; no no_birth


def test_other_topics_under_the_namespace_are_no_data(bundle: ModelBundle) -> None:
    every = {**SOURCE, "sparkplug": {**SOURCE["sparkplug"], "group": "+"}}
    fleet = Fleet([ServedModel.from_bundle(bundle, pattern="gw1/*")])
    intake = Intake(config(every), fleet, ReadingQueue(1000), clock=lambda: NOW)
    intake.take("spBv1.0/STATE/scada-host", b'{"online": true}')  # a host's state: ignored
    intake.take(topic("NCMD", None), b"")  # a command (our own rebirth request, say)
    intake.take("spBv1.0/north/DDATA", b"")  # a level short: counted
    intake.take("plant/gw1/flow", b'{"ts": 1767225600, "value": 1.5}')  # the template input
    assert refusals(intake) == {"unknown_topic": 1, "no_model": 1}
    assert intake.counts.messages == 4


def test_a_reload_keeps_an_unchanged_inputs_births(intake: Intake, bundle: ModelBundle) -> None:
    born(intake)
    intake.config = config(max_payload_bytes=4096)  # a new Config, the input unchanged
    intake.take(topic("DDATA"), device_data(2, 3.5, 41.0))
    assert refusals(intake) == {}
    changed = {**SOURCE, "sparkplug": {**SOURCE["sparkplug"], "channels": {}}}
    intake.config = config(changed)
    intake.take(topic("DDATA"), device_data(3, 3.5, 41.0))  # a new decoder: no birth known
    assert refusals(intake) == {"decode_error:no_birth": 1}


def test_a_payload_that_is_no_sparkplug_is_refused_alone(intake: Intake) -> None:
    born(intake)
    intake.take(topic("DDATA"), b"\xff\xff\xff")
    intake.take(topic("DDATA"), device_data(2, 3.5, 41.0))
    assert refusals(intake) == {"decode_error:not_protobuf": 1}
    assert len(Decoded(tuple(queued(intake))).readings) == 4  # the births and the data


def test_the_rebirth_interval_is_the_configured_one(bundle: ModelBundle) -> None:
    """A node asked for its births is asked again only after rebirth_interval_s."""
    slow = {**SOURCE, "sparkplug": {**SOURCE["sparkplug"], "rebirth_interval_s": 300}}
    now = [NOW]
    fleet = Fleet([ServedModel.from_bundle(bundle, pattern="gw1/*")])
    source = Intake(config(slow), fleet, ReadingQueue(1000), clock=lambda: now[0])
    asked = []
    for step_s in (0.0, 60.0, 250.0, 301.0):  # data from a node with no birth on record
        now[0] = NOW + step_s
        source.take(topic("DDATA"), device_data(1, 3.0, 40.0))
        asked.append(len(source.sparkplug.take_commands()))
    assert asked == [1, 0, 0, 1]
