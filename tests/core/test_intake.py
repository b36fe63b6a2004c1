"""Tests for aewatch.daemon.intake: the reading queue's bound, routing, counts and log rate."""

from __future__ import annotations

import dataclasses
import logging
import struct
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aewatch.config import Config
from aewatch.core.decode import DECODE_REASONS, Decoded, Reading
from aewatch.daemon.fleet import Fleet, ServedModel
from aewatch.daemon.intake import Intake, RateLimitedLog, ReadingQueue
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table
from aewatch.model.fit import FitSettings
from aewatch.model.train import TrainSettings, train_bundle

T0 = 1_700_000_000.0
NOW = T0 + 10.0  # the injected arrival clock
PERIOD_S = 0.5
MAX_PAYLOAD_BYTES = 200
CONFIG: dict[str, Any] = {
    "broker": {"url": "mqtt://localhost"},
    "inputs": [
        {
            "topic": "plant/{site}/well/{asset}/{channel}",
            "payload": "json",
            "asset_prefix": "well-",
        },
        {"topic": "raw/{asset}/{channel}", "payload": "number"},
        {"topic": "mine/{asset}/telemetry", "payload": "json_multi"},
        {"topic": "vib/{asset}/{channel}", "payload": "float32_le"},
    ],
    "models": [{"path": "well.aew", "assets": "well-*"}],
    "limits": {"max_payload_bytes": MAX_PAYLOAD_BYTES},
}


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    """A pca model sampled every 0.5 s (trains in well under a second)."""
    rng = np.random.default_rng(0)
    t = T0 + PERIOD_S * np.arange(600, dtype=np.float64)
    values = np.column_stack([np.sin(t / 10), np.cos(t / 10)]) + 0.05 * rng.standard_normal(
        (600, 2)
    )
    rows = Table("x.csv", t, values, ("flow", "temp"), None, None, np.arange(600) + 2)
    return train_bundle([rows], TrainSettings(fit=FitSettings(show_progress=False))).bundle


def intake(bundle: ModelBundle, *, max_readings: int = 1000) -> Intake:
    fleet = Fleet([ServedModel.from_bundle(bundle, pattern="well-*")])
    config = Config.model_validate(CONFIG)
    return Intake(config, fleet, ReadingQueue(max_readings), clock=lambda: NOW)


def queued(source: Intake) -> list[Reading]:
    """The queued readings, rows (json_multi messages) taken apart."""
    return list(Decoded(tuple(i for b in source.queue.take(timeout_s=0) for i in b)).readings)


def refusals(source: Intake) -> dict[str, int]:
    """The non-zero counts other than messages and readings."""
    skip = ("messages", "readings")
    return {k: v for k, v in source.counts.as_dict().items() if v and k not in skip}


# --- ReadingQueue -----------------------------------------------------------------------


def reading(i: int = 0) -> Reading:
    return Reading("well-1", "flow", T0 + i, float(i))


def test_queue_bound_counts_readings_and_a_put_is_all_or_nothing() -> None:
    q = ReadingQueue(max_readings=5)
    assert q.put((reading(0), reading(1), reading(2)))
    assert not q.put((reading(3), reading(4), reading(5)))  # 6 > 5: none of the three
    assert len(q) == 3
    assert q.put((reading(6), reading(7)))  # exactly full
    assert not q.put((reading(8),))
    assert [[r.value for r in batch] for batch in q.take(timeout_s=0)] == [[0, 1, 2], [6, 7]]
    assert len(q) == 0
    assert q.put((reading(9),) * 5)


def test_a_batch_larger_than_the_bound_never_fits() -> None:
    q = ReadingQueue(max_readings=2)
    assert not q.put((reading(),) * 3)
    assert len(q) == 0
    assert q.take(timeout_s=0) == []


def test_queue_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_readings"):
        ReadingQueue(max_readings=0)


@settings(deadline=None, max_examples=100)
@given(
    st.integers(1, 10),
    st.lists(st.one_of(st.integers(0, 6), st.just(-1)), max_size=40),  # -1: take all
)
def test_queue_matches_a_list_model(max_readings: int, steps: list[int]) -> None:
    q = ReadingQueue(max_readings)
    model: list[tuple[Reading, ...]] = []
    for size in steps:
        if size < 0:
            assert q.take(timeout_s=0) == model
            model = []
            continue
        batch = tuple(reading(i) for i in range(size))
        fits = sum(map(len, model)) + size <= max_readings
        assert q.put(batch) is fits
        if fits:
            model.append(batch)
        assert len(q) == sum(map(len, model)) <= max_readings


def test_take_waits_until_a_put_or_a_wake() -> None:
    q = ReadingQueue(max_readings=10)
    got: list[list[tuple[Reading, ...]]] = []
    taker = threading.Thread(target=lambda: got.append(q.take(timeout_s=None)))
    taker.start()
    q.put((reading(1),))
    taker.join(timeout=5)
    assert got == [[(reading(1),)]]
    woken = threading.Thread(target=lambda: got.append(q.take(timeout_s=None)))
    woken.start()
    while woken.is_alive():
        q.wake()
        woken.join(timeout=0.01)
    assert got[-1] == []


# --- Intake: routing --------------------------------------------------------------------


def test_counts_start_at_zero_for_every_name(bundle: ModelBundle) -> None:
    counts = intake(bundle).counts.as_dict()
    expected = {
        "messages",
        "readings",
        "unknown_topic",
        "no_model",
        "bad_asset_name",
        "queue_full",
        "internal_error",
    }
    assert set(counts) == expected | {f"decode_error:{reason}" for reason in DECODE_REASONS}
    assert not any(counts.values())


def test_the_topic_gives_asset_with_its_prefix_and_channel(bundle: ModelBundle) -> None:
    source = intake(bundle)
    source.take("plant/north/well/7/flow", b'{"ts": 1700000000, "value": 1.5}')
    source.take("raw/well-9/temp", b"20.5")
    assert queued(source) == [
        Reading("well-7", "flow", T0, 1.5),
        Reading("well-9", "temp", NOW, 20.5),  # number: at the arrival clock
    ]
    assert (source.counts.messages, source.counts.readings) == (2, 2)
    assert refusals(source) == {}


def test_consecutive_samples_are_one_model_period_apart(bundle: ModelBundle) -> None:
    source = intake(bundle)
    source.take("vib/well-3/flow", struct.pack("<3f", 1.0, 2.0, 0.5))
    assert [(r.timestamp, r.value) for r in queued(source)] == [
        (NOW - 2 * PERIOD_S, 1.0),
        (NOW - PERIOD_S, 2.0),
        (NOW, 0.5),
    ]


def test_new_models_decode_with_their_own_period(bundle: ModelBundle) -> None:
    """A reload that swaps the models alone must not keep decoders of the old period."""
    source = intake(bundle)
    source.take("vib/well-3/flow", struct.pack("<2f", 1.0, 2.0))
    slower = dataclasses.replace(bundle, period_s=2 * PERIOD_S)
    source.fleet = Fleet([ServedModel.from_bundle(slower, pattern="well-*")])
    source.take("vib/well-3/flow", struct.pack("<2f", 3.0, 4.0))
    source.fleet = Fleet([])
    source.take("vib/well-3/flow", struct.pack("<2f", 5.0, 6.0))
    assert [(r.timestamp, r.value) for r in queued(source)] == [
        (NOW - PERIOD_S, 1.0),
        (NOW, 2.0),
        (NOW - 2 * PERIOD_S, 3.0),
        (NOW, 4.0),
    ]
    assert refusals(source) == {"no_model": 1}


@pytest.mark.parametrize(
    "topic",
    [
        "other/well-7/flow",
        "plant/north/well/7",  # a level short
        "plant/north/well/7/flow/extra",  # a level long
        "plant/north/well//flow",  # an empty asset
        "mine/well-7/telemetry/x",
    ],
)
def test_a_topic_matching_no_input_is_counted(bundle: ModelBundle, topic: str) -> None:
    source = intake(bundle)
    source.take(topic, b"1.0")
    source.take(topic, b"1.0")  # the second answer comes from the route cache
    assert refusals(source) == {"unknown_topic": 2}
    assert queued(source) == []


def test_an_asset_no_model_serves_is_counted(bundle: ModelBundle) -> None:
    source = intake(bundle)
    source.take("raw/pump-1/flow", b"1.0")
    source.take("mine/pump-1/telemetry", b"not even json")  # refused before decoding
    assert refusals(source) == {"no_model": 2}
    assert queued(source) == []


def test_a_new_config_routes_with_its_own_inputs(bundle: ModelBundle) -> None:
    source = intake(bundle)
    source.take("plant/north/well/7/flow", b'{"ts": 1700000000, "value": 1.5}')
    # A reload swaps the config whole; a route cached from the old one must not survive it.
    renamed = CONFIG | {
        "inputs": [
            {"topic": "plant/{site}/well/{asset}/{channel}", "payload": "json"},
            {"topic": "raw/{asset}/{channel}", "payload": "number", "asset_prefix": "well-"},
        ]
    }
    source.config = Config.model_validate(renamed)
    source.take("plant/north/well/well-8/flow", b'{"ts": 1700000000, "value": 2.5}')
    source.take("plant/north/well/7/flow", b'{"ts": 1700000000, "value": 3.5}')
    source.take("raw/9/flow", b"4.5")
    assert [(r.asset, r.value) for r in queued(source)] == [
        ("well-7", 1.5),
        ("well-8", 2.5),
        ("well-9", 4.5),
    ]
    assert refusals(source) == {"no_model": 1}  # asset "7": the new input has no prefix


# --- Intake: decode errors and a full queue ---------------------------------------------


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("raw/well-1/flow", b"abc", "not_number"),
        ("raw/well-1/flow", b"\xff", "not_utf8"),
        ("raw/well-1/flow", b"1e39", "out_of_range"),
        ("plant/n/well/1/flow", b"{", "not_json"),
        ("plant/n/well/1/flow", b"[1]", "bad_shape"),
        ("plant/n/well/1/flow", b'{"value": 1}', "missing_key"),
        ("plant/n/well/1/flow", b'{"ts": "noon", "value": 1}', "bad_timestamp"),
        ("plant/n/well/1/flow", b'{"ts": 1700000100, "value": 1}', "future_timestamp"),
        ("plant/n/well/1/flow", b'{"ts": 1700000000, "value": ' + b"1" * 200 + b"}", "too_large"),
        ("vib/well-1/flow", b"\x00\x00\x80", "bad_shape"),
    ],
)
def test_a_bad_payload_is_counted_by_reason(
    bundle: ModelBundle, topic: str, payload: bytes, reason: str
) -> None:
    source = intake(bundle)
    source.take(topic, payload)
    assert refusals(source) == {f"decode_error:{reason}": 1}
    assert queued(source) == []


def test_a_bad_part_is_counted_and_the_rest_queued(bundle: ModelBundle) -> None:
    source = intake(bundle)
    payload = b'{"ts": 1700000000, "values": {"flow": 1, "temp": NaN, "": 2, "rpm": true}}'
    source.take("mine/well-2/telemetry", payload)
    source.take("vib/well-2/flow", struct.pack("<3f", 1.0, float("nan"), 0.5))
    assert refusals(source) == {
        "decode_error:non_finite": 2,
        "decode_error:bad_channel": 1,
        "decode_error:not_number": 1,
    }
    assert [(r.channel, r.value) for r in queued(source)] == [
        ("flow", 1.0),
        ("flow", 1.0),
        ("flow", 0.5),
    ]
    assert source.counts.readings == 3


def test_a_full_queue_drops_the_whole_message_and_counts_its_readings(
    bundle: ModelBundle,
) -> None:
    source = intake(bundle, max_readings=2)
    source.take("mine/well-2/telemetry", b'{"ts": 1700000000, "flow": 1, "temp": 2, "x": 3}')
    assert refusals(source) == {"queue_full": 3}
    assert len(source.queue) == 0
    source.take("mine/well-2/telemetry", b'{"ts": 1700000000, "flow": 1, "temp": 2}')
    source.take("raw/well-2/flow", b"1")
    assert (source.counts.readings, source.counts.queue_full) == (2, 4)
    assert len(queued(source)) == 2


# --- logging at a limited rate ----------------------------------------------------------


class Records(logging.Handler):
    """Keeps the formatted messages of the records it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def records() -> Iterator[tuple[logging.Logger, Records]]:
    logger = logging.getLogger("tests.intake.rate")
    handler = Records()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)


def test_rate_limited_log_reports_the_first_then_one_per_interval_with_a_count(
    records: tuple[logging.Logger, Records],
) -> None:
    logger, handler = records
    now = [100.0]
    limited = RateLimitedLog(logger, every_s=10.0, clock=lambda: now[0])
    for t in (100.0, 101.0, 105.0, 109.9, 110.0, 111.0, 125.0, 140.0):
        now[0] = t
        limited.warning("late", "bad payload on %s", f"t={t:g}")
    assert handler.messages == [
        "bad payload on t=100",
        "bad payload on t=110 (3 more like it since the last report)",
        "bad payload on t=125 (1 more like it since the last report)",
        "bad payload on t=140",
    ]


def test_rate_limited_log_keeps_each_kind_apart(
    records: tuple[logging.Logger, Records],
) -> None:
    logger, handler = records
    limited = RateLimitedLog(logger, every_s=60.0, clock=lambda: 0.0)
    for kind in ("a", "b", "a", "c", "b"):
        limited.warning(kind, "kind %s", kind)
    assert handler.messages == ["kind a", "kind b", "kind c"]


def test_intake_logs_a_flood_of_refusals_once(bundle: ModelBundle) -> None:
    logger = logging.getLogger("aewatch.intake")
    handler = Records()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.WARNING)  # whatever another test left on the aewatch logger
    try:
        source = intake(bundle)
        for _ in range(50):
            source.take("raw/well-1/flow", b"abc")
            source.take("nowhere", b"1")
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)
    assert refusals(source) == {"decode_error:not_number": 50, "unknown_topic": 50}
    assert len(handler.messages) == 2
