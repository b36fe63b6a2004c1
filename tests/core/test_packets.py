"""MQTT PUBLISH parsing on bytes alone: what the daemon's fast path takes, and what it leaves."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aewatch.core.packets import Publish, parse_publishes, pubacks, remaining_length


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def publish_packet(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    mid: int = 0,
    retain: bool = False,
    properties: bytes | None = None,
    raw_topic: bytes | None = None,
) -> bytes:
    """One PUBLISH as a broker sends it (``properties`` given: MQTT 5)."""
    name = topic.encode() if raw_topic is None else raw_topic
    body = struct.pack("!H", len(name)) + name
    if qos:
        body += struct.pack("!H", mid)
    if properties is not None:
        body += _varint(len(properties)) + properties
    body += payload
    return bytes([0x30 | (qos << 1) | int(retain)]) + _varint(len(body)) + body


def test_parses_mqtt311_publishes_of_qos_0_and_1() -> None:
    data = (
        publish_packet("plant/w1/flow", b"1.5")
        + publish_packet("plant/w2/temp", b'{"v": 2}', qos=1, mid=513, retain=True)
        + publish_packet("plant/w3/flow", b"x" * 300)  # a two-byte remaining length
    )
    assert parse_publishes(data, is_v5=False) == (
        [
            Publish("plant/w1/flow", b"1.5", 0, 0, False),
            Publish("plant/w2/temp", b'{"v": 2}', 1, 513, True),
            Publish("plant/w3/flow", b"x" * 300, 0, 0, False),
        ],
        len(data),
    )


def test_parses_mqtt5_publishes_and_skips_their_properties() -> None:
    content_type = b"\x03" + struct.pack("!H", 16) + b"application/json"
    data = publish_packet("a/b", b"{}", qos=1, mid=7, properties=content_type)
    data += publish_packet("a/c", b"2", properties=b"")
    found, _ = parse_publishes(data, is_v5=True)
    assert found == [Publish("a/b", b"{}", 1, 7, False), Publish("a/c", b"2", 0, 0, False)]


def test_starts_where_it_is_told() -> None:
    first, second = publish_packet("a/b", b"1"), publish_packet("a/c", b"2")
    found, end = parse_publishes(first + second, len(first), is_v5=False)
    assert [p.topic for p in found] == ["a/c"] and end == len(first + second)


@pytest.mark.parametrize(
    ("second", "why"),
    [
        (publish_packet("a/b", b"2", qos=2, mid=9), "QoS 2 needs paho's PUBREC/PUBREL exchange"),
        (b"\xd0\x00", "a PINGRESP is paho's"),
        (publish_packet("", b"2", properties=b"\x23\x00\x01"), "a topic alias is paho's"),
        (publish_packet("x", b"2", raw_topic=b"\xff\xfe"), "a topic that is not UTF-8"),
        (b"\x30\xff\xff\xff\xff\x01", "a remaining length over four bytes"),
    ],
)
def test_stops_at_a_packet_it_leaves_to_paho(second: bytes, why: str) -> None:
    first = publish_packet("a/b", b"1", properties=b"")
    third = publish_packet("a/b", b"3", properties=b"")
    found, end = parse_publishes(first + second + third, is_v5=True)
    assert [p.payload for p in found] == [b"1"], why
    assert end == len(first), "it does not skip over the packet"


def test_leaves_a_packet_not_buffered_whole() -> None:
    first = publish_packet("a/b", b"1")
    whole = first + publish_packet("a/b", b"2" * 200)
    for cut in (1, 2, 4, 150):  # inside the second packet
        assert parse_publishes(whole[:-cut], is_v5=False) == (
            [Publish("a/b", b"1", 0, 0, False)],
            len(first),
        )
    assert parse_publishes(first + b"\x30", is_v5=False)[1] == len(first)


def test_pubacks_are_four_bytes_each() -> None:
    assert pubacks([]) == b""
    assert pubacks([7, 65535]) == b"\x40\x02\x00\x07\x40\x02\xff\xff"


def test_remaining_length_reads_one_to_four_bytes() -> None:
    for value in (0, 127, 128, 16_383, 16_384, 268_435_455):
        encoded = _varint(value)
        assert remaining_length(encoded, 0, len(encoded)) == (value, len(encoded))
    assert remaining_length(b"\x80\x80", 0, 2) == (0, -1)  # runs past the end


_topics = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1
)
_packets = st.lists(
    st.tuples(_topics, st.binary(max_size=300), st.sampled_from([0, 1]), st.booleans()),
    max_size=8,
)


@given(_packets, st.booleans())
def test_well_formed_publishes_come_back_as_sent(
    packets: list[tuple[str, bytes, int, bool]], is_v5: bool
) -> None:
    sent = [Publish(t, p, q, 1000 + i if q else 0, r) for i, (t, p, q, r) in enumerate(packets)]
    data = b"".join(
        publish_packet(
            m.topic,
            m.payload,
            qos=m.qos,
            mid=m.mid,
            retain=m.retain,
            properties=b"" if is_v5 else None,
        )
        for m in sent
    )
    assert parse_publishes(data, is_v5=is_v5) == (sent, len(data))


@given(st.binary(max_size=400), st.booleans())
def test_any_bytes_end_on_a_packet_boundary_without_raising(data: bytes, is_v5: bool) -> None:
    found, end = parse_publishes(data, is_v5=is_v5)
    assert 0 <= end <= len(data)
    again, rest = parse_publishes(data[:end], is_v5=is_v5)
    assert again == found and rest == end  # what it took is whole packets, nothing more
