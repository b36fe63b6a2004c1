"""Sparkplug B decoding on bytes alone: births, data by alias, deaths, sequence gaps.

Some payloads are written byte by byte from the protobuf wire format (not through the
protobuf library), so the decoder is checked against what any Sparkplug B edge node sends,
not only against its own encoder.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aewatch.core.decode import DecodeError, Reading
from aewatch.daemon.sparkplug import (
    REBIRTH_METRIC,
    SparkplugDecoder,
    SparkplugOutcome,
    parse_topic,
)
from aewatch.daemon.sparkplug_schema import DataType, Payload

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
T0_S = T0_MS / 1000.0
INT16, INT64, UINT32, FLOAT, DOUBLE, BOOLEAN, STRING = 2, 4, 7, 9, 10, 11, 12


# -- the protobuf wire format, by hand ------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, body: bytes) -> bytes:
    return _varint(number << 3 | wire) + body


def _text(number: int, text: str) -> bytes:
    data = text.encode()
    return _field(number, 2, _varint(len(data)) + data)


def wire_metric(
    *,
    name: str | None = None,
    alias: int | None = None,
    datatype: int | None = None,
    timestamp_ms: int | None = None,
    double: float | None = None,
    single: float | None = None,
    integer: int | None = None,
    long: int | None = None,
    boolean: bool | None = None,
    string: str | None = None,
) -> bytes:
    """One ``Payload.Metric`` in wire format (fields as sparkplug_b.proto numbers them)."""
    body = b""
    if name is not None:
        body += _text(1, name)
    if alias is not None:
        body += _field(2, 0, _varint(alias))
    if timestamp_ms is not None:
        body += _field(3, 0, _varint(timestamp_ms))
    if datatype is not None:
        body += _field(4, 0, _varint(datatype))
    if integer is not None:
        body += _field(10, 0, _varint(integer))
    if long is not None:
        body += _field(11, 0, _varint(long))
    if single is not None:
        body += _field(12, 5, struct.pack("<f", single))
    if double is not None:
        body += _field(13, 1, struct.pack("<d", double))
    if boolean is not None:
        body += _field(14, 0, _varint(int(boolean)))
    if string is not None:
        body += _text(15, string)
    return body


def wire_payload(*metrics: bytes, seq: int | None, timestamp_ms: int | None = T0_MS) -> bytes:
    body = b"" if timestamp_ms is None else _field(1, 0, _varint(timestamp_ms))
    for metric in metrics:
        body += _field(2, 2, _varint(len(metric)) + metric)
    if seq is not None:
        body += _field(3, 0, _varint(seq))
    return body


def node_birth(*, bd_seq: int = 0) -> bytes:
    """An Ignition-style NBIRTH: bdSeq, a rebirth control, a string property, two values."""
    return wire_payload(
        wire_metric(name="bdSeq", datatype=INT64, long=bd_seq),
        wire_metric(name=REBIRTH_METRIC, alias=0, datatype=BOOLEAN, boolean=False),
        wire_metric(name="Properties/Hardware", datatype=STRING, string="gateway v8"),
        wire_metric(name="flow_kg_s", alias=1, datatype=DOUBLE, double=41.5),
        wire_metric(name="whp_bar", alias=2, datatype=FLOAT, single=12.25),
        seq=0,
    )


def node_data(seq: int, *, flow: float = 42.0, at_ms: int = T0_MS + 10_000) -> bytes:
    return wire_payload(wire_metric(alias=1, double=flow), seq=seq, timestamp_ms=at_ms)


def born(**kwargs: object) -> SparkplugDecoder:
    decoder = SparkplugDecoder(**kwargs)  # type: ignore[arg-type]
    decoder.decode("spBv1.0/field/NBIRTH/gw1", node_birth(), arrival_s=T0_S)
    return decoder


def decode(decoder: SparkplugDecoder, topic: str, payload: bytes, at_s: float) -> SparkplugOutcome:
    outcome = decoder.decode(topic, payload, arrival_s=at_s)
    assert outcome is not None
    return outcome


def rebirth_asked(outcome: SparkplugOutcome, node: str) -> bool:
    """Whether ``outcome`` asks ``node`` for its births: one NCMD, Node Control/Rebirth true."""
    ((topic, payload),) = outcome.commands
    (metric,) = Payload.FromString(payload).metrics
    return (
        topic == f"spBv1.0/field/NCMD/{node}"
        and metric.name == REBIRTH_METRIC
        and metric.datatype == DataType.values_by_name["Boolean"].number
        and metric.boolean_value
    )


# -- births and data ------------------------------------------------------------------------


def test_a_birth_declares_the_metrics_and_gives_their_current_values() -> None:
    decoder = SparkplugDecoder()
    out = decode(decoder, "spBv1.0/field/NBIRTH/gw1", node_birth(), T0_S + 0.2)
    assert out.readings == (
        Reading("gw1", "flow_kg_s", T0_S, 41.5),
        Reading("gw1", "whp_bar", T0_S, 12.25),
    )  # bdSeq, the boolean control and the string are no sensor readings
    assert out.born == ("gw1",)
    assert not out.errors and not out.stale and not out.commands


def test_data_by_alias_reads_with_the_births_names() -> None:
    decoder = born()
    out = decode(decoder, "spBv1.0/field/NDATA/gw1", node_data(1, flow=43.0), T0_S + 10.3)
    assert out.readings == (
        Reading("gw1", "flow_kg_s", T0_S + 10.0, 43.0),
        Reading("gw1", "whp_bar", T0_S + 10.0, 12.25),  # unchanged: held from the birth
    )
    assert not out.stale and not out.commands and not out.errors


def test_a_metric_left_out_of_data_holds_its_last_value_until_a_gap_or_death() -> None:
    """Report by exception: DATA carries what changed; the rest is held, not missing."""
    decoder = born()
    out = decode(decoder, "spBv1.0/field/NDATA/gw1", node_data(1, flow=43.0), T0_S + 10)
    assert [(r.channel, r.value) for r in out.readings] == [("flow_kg_s", 43.0), ("whp_bar", 12.25)]
    whp = wire_payload(wire_metric(alias=2, single=13.0), seq=2, timestamp_ms=T0_MS + 20_000)
    out = decode(decoder, "spBv1.0/field/NDATA/gw1", whp, T0_S + 20)
    assert out.readings == (
        Reading("gw1", "whp_bar", T0_S + 20.0, 13.0),
        Reading("gw1", "flow_kg_s", T0_S + 20.0, 43.0),  # the newest value held
    )
    # A lost message (seq 3 to 5) may have changed anything: nothing is held until a birth.
    out = decode(decoder, "spBv1.0/field/NDATA/gw1", node_data(5, flow=44.0), T0_S + 30)
    assert [(r.channel, r.value) for r in out.readings] == [("flow_kg_s", 44.0)]
    decode(decoder, "spBv1.0/field/NBIRTH/gw1", node_birth(bd_seq=1), T0_S + 40)
    will = wire_payload(wire_metric(name="bdSeq", datatype=INT64, long=1), seq=None)
    decode(decoder, "spBv1.0/field/NDEATH/gw1", will, T0_S + 50)
    out = decode(decoder, "spBv1.0/field/NDATA/gw1", node_data(1, flow=45.0), T0_S + 55)
    assert out.readings == () and out.errors[0].reason == "no_birth"  # dead: nothing held
    decode(decoder, "spBv1.0/field/NBIRTH/gw1", node_birth(bd_seq=2), T0_S + 60)
    out = decode(decoder, "spBv1.0/field/NDATA/gw1", node_data(1, flow=45.0), T0_S + 70)
    assert [(r.channel, r.value) for r in out.readings] == [("flow_kg_s", 45.0), ("whp_bar", 12.25)]


def test_a_metrics_own_timestamp_beats_the_payloads_and_arrival_time_can_be_chosen() -> None:
    payload = wire_payload(
        wire_metric(alias=1, double=1.0, timestamp_ms=T0_MS + 7_000),
        wire_metric(alias=2, single=2.0),
        seq=1,
        timestamp_ms=T0_MS + 9_000,
    )
    out = decode(born(), "spBv1.0/field/NDATA/gw1", payload, T0_S + 9.5)
    assert [r.timestamp for r in out.readings] == [T0_S + 7.0, T0_S + 9.0]
    arrival = born(use_payload_time=False)
    out = decode(arrival, "spBv1.0/field/NDATA/gw1", payload, T0_S + 9.5)
    assert [r.timestamp for r in out.readings] == [T0_S + 9.5, T0_S + 9.5]


def test_devices_are_assets_of_their_own_and_their_aliases_stay_theirs() -> None:
    decoder = born()
    device_birth = wire_payload(
        wire_metric(name="speed_rpm", alias=10, datatype=DOUBLE, double=1480.0), seq=1
    )
    out = decode(decoder, "spBv1.0/field/DBIRTH/gw1/pump-3", device_birth, T0_S + 1)
    assert out.born == ("gw1/pump-3",)
    assert out.readings == (Reading("gw1/pump-3", "speed_rpm", T0_S, 1480.0),)
    data = wire_payload(
        wire_metric(alias=10, double=1490.0), wire_metric(alias=1, double=5.0), seq=2
    )
    out = decode(decoder, "spBv1.0/field/DDATA/gw1/pump-3", data, T0_S + 2)
    assert out.readings == (Reading("gw1/pump-3", "speed_rpm", T0_S, 1490.0),)
    (error,) = out.errors  # alias 1 is the node's flow, not the pump's
    assert error.reason == "unknown_alias"
    assert "alias 1" in str(error)
    assert "gw1/pump-3" in str(error)


def test_the_asset_names_follow_the_templates() -> None:
    decoder = SparkplugDecoder(asset_template="{group}.{device}", node_template="{group}.{node}")
    decode(decoder, "spBv1.0/field/NBIRTH/gw1", node_birth(), T0_S)
    birth = wire_payload(wire_metric(name="x", alias=5, datatype=DOUBLE, double=1.0), seq=1)
    out = decode(decoder, "spBv1.0/field/DBIRTH/gw1/pump-3", birth, T0_S)
    assert out.born == ("field.pump-3",)
    with pytest.raises(ValueError, match="asset_template"):
        SparkplugDecoder(asset_template="{node}")
    with pytest.raises(ValueError, match="only"):
        SparkplugDecoder(asset_template="{site}/{device}")


@pytest.mark.parametrize(
    ("datatype", "field", "sent", "read"),
    [
        (INT16, "integer", 65531, -5.0),  # two's complement in the unsigned int_value
        (INT64, "long", 2**64 - 1, -1.0),
        (UINT32, "integer", 4_000_000_000, 4e9),
        (BOOLEAN, "boolean", True, 1.0),
        (FLOAT, "single", 0.5, 0.5),
    ],
)
def test_numbers_are_read_by_their_sparkplug_type(
    datatype: int, field: str, sent: object, read: float
) -> None:
    decoder = SparkplugDecoder()
    birth = wire_payload(
        wire_metric(name="m", alias=3, datatype=datatype, **{field: sent}),  # type: ignore[arg-type]
        seq=0,
    )
    (reading,) = decode(decoder, "spBv1.0/field/NBIRTH/gw1", birth, T0_S).readings
    assert reading.value == read


def test_a_bad_value_drops_that_metric_only() -> None:
    payload = wire_payload(
        wire_metric(alias=1, double=math.inf), wire_metric(alias=2, single=3.0), seq=1
    )
    out = decode(born(), "spBv1.0/field/NDATA/gw1", payload, T0_S + 10)
    assert [r.channel for r in out.readings] == ["whp_bar"]
    ((reason, channel),) = [(e.reason, e.channel) for e in out.errors]
    assert (reason, channel) == ("non_finite", "flow_kg_s")


def test_null_values_and_metrics_without_a_value_give_no_reading() -> None:
    message = Payload(seq=1, timestamp=T0_MS)
    message.metrics.add(alias=1, is_null=True)
    message.metrics.add(alias=2)
    out = decode(born(), "spBv1.0/field/NDATA/gw1", message.SerializeToString(), T0_S)
    assert out == SparkplugOutcome()


# -- sequence numbers, deaths and rebirths --------------------------------------------------


def test_seq_counts_on_through_its_wrap_without_a_gap() -> None:
    decoder = born()
    for n, seq in enumerate([*range(1, 256), 0, 1], start=1):
        out = decode(decoder, "spBv1.0/field/NDATA/gw1", node_data(seq), T0_S + n)
        assert not out.stale and not out.commands, seq


def test_a_seq_gap_stales_the_node_and_its_devices_and_asks_for_a_rebirth_once() -> None:
    decoder = born()
    device_birth = wire_payload(wire_metric(name="x", alias=9, datatype=DOUBLE, double=0.0), seq=1)
    decode(decoder, "spBv1.0/field/DBIRTH/gw1/pump-3", device_birth, T0_S + 1)
    out = decode(decoder, "spBv1.0/field/NDATA/gw1", node_data(5, flow=44.0), T0_S + 2)
    assert out.stale == ("gw1", "gw1/pump-3")
    assert rebirth_asked(out, "gw1")
    assert [r.value for r in out.readings] == [44.0]  # what arrived is still read
    out = decode(decoder, "spBv1.0/field/NDATA/gw1", node_data(9), T0_S + 3)
    assert out.stale == ("gw1", "gw1/pump-3")
    assert out.commands == ()  # asked 1 s ago: not again before rebirth_interval_s
    out = decode(decoder, "spBv1.0/field/NDATA/gw1", node_data(20), T0_S + 40)
    assert rebirth_asked(out, "gw1")


def test_data_before_any_birth_asks_for_one_and_reads_nothing() -> None:
    decoder = SparkplugDecoder()
    out = decode(decoder, "spBv1.0/field/NDATA/gw1", node_data(4), T0_S)
    assert out.readings == ()
    ((reason, text),) = [(e.reason, str(e)) for e in out.errors]
    assert reason == "no_birth"
    assert "a rebirth is requested" in text
    assert rebirth_asked(out, "gw1")
    quiet = SparkplugDecoder(ask_rebirth=False)
    out = decode(quiet, "spBv1.0/field/NDATA/gw1", node_data(4), T0_S)
    assert out.commands == ()
    assert "waiting for its NBIRTH" in str(out.errors[0])


def test_a_death_of_the_current_session_stales_the_node_until_its_next_birth() -> None:
    decoder = born()
    stale_will = wire_payload(wire_metric(name="bdSeq", datatype=INT64, long=7), seq=None)
    out = decode(decoder, "spBv1.0/field/NDEATH/gw1", stale_will, T0_S + 1)
    assert out == SparkplugOutcome()  # an earlier session's will, delivered late
    will = wire_payload(wire_metric(name="bdSeq", datatype=INT64, long=0), seq=None)
    out = decode(decoder, "spBv1.0/field/NDEATH/gw1", will, T0_S + 2)
    assert out.stale == ("gw1",)
    out = decode(decoder, "spBv1.0/field/NDATA/gw1", node_data(1), T0_S + 3)
    assert out.errors[0].reason == "no_birth"
    decode(decoder, "spBv1.0/field/NBIRTH/gw1", node_birth(bd_seq=1), T0_S + 4)
    out = decode(decoder, "spBv1.0/field/NDATA/gw1", node_data(1), T0_S + 5)
    assert out.errors == () and len(out.readings) == 2  # flow, and whp held from the birth


def test_a_device_death_stales_that_device_alone() -> None:
    decoder = born()
    birth = wire_payload(wire_metric(name="x", alias=9, datatype=DOUBLE, double=0.0), seq=1)
    decode(decoder, "spBv1.0/field/DBIRTH/gw1/pump-3", birth, T0_S + 1)
    out = decode(decoder, "spBv1.0/field/DDEATH/gw1/pump-3", wire_payload(seq=2), T0_S + 2)
    assert out.stale == ("gw1/pump-3",)
    assert out.commands == ()


# -- what is not for the decoder ------------------------------------------------------------


def test_topics_outside_the_group_or_the_namespace_are_not_its() -> None:
    decoder = SparkplugDecoder(group="field")
    assert decoder.decode("spBv1.0/other/NDATA/gw1", b"", arrival_s=T0_S) is None
    assert decoder.decode("spBv1.0/STATE/scada", b"ONLINE", arrival_s=T0_S) is None
    assert decoder.decode("plant/well-1/flow", b"1.0", arrival_s=T0_S) is None
    assert decode(decoder, "spBv1.0/field/NCMD/gw1", b"\x00", T0_S) == SparkplugOutcome()
    assert parse_topic("spBv1.0/field/DDATA/gw1") is None  # a device message needs a device
    assert parse_topic("spBv1.0/field/NDATA/gw1/dev") is None
    assert parse_topic("spBv1.0//NDATA/gw1") is None


def test_a_payload_that_is_no_sparkplug_b_is_refused_whole() -> None:
    decoder = born()
    with pytest.raises(DecodeError) as caught:
        decoder.decode("spBv1.0/field/NDATA/gw1", b"\xff\xff\xff", arrival_s=T0_S)
    assert caught.value.reason == "not_protobuf"
    assert "NDATA on spBv1.0/field/NDATA/gw1" in str(caught.value)
    small = born(max_bytes=200)
    with pytest.raises(DecodeError) as caught:
        small.decode("spBv1.0/field/NDATA/gw1", node_data(1) * 20, arrival_s=T0_S)
    assert caught.value.reason == "too_large"


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["NBIRTH", "NDATA", "NDEATH"]), payload=st.binary(max_size=200))
def test_no_bytes_make_it_raise_anything_but_a_decode_error(kind: str, payload: bytes) -> None:
    decoder = born()
    try:
        out = decoder.decode(f"spBv1.0/field/{kind}/gw1", payload, arrival_s=T0_S)
    except DecodeError:
        return
    assert out is not None
    for reading in out.readings:
        assert math.isfinite(reading.timestamp) and math.isfinite(reading.value)
