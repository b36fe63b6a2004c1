"""MQTT PUBLISH packets from bytes, and PUBACKs to bytes (pure: no socket, no paho).

The daemon's network thread reads its socket in large chunks; :func:`parse_publishes`
takes the QoS 0 and 1 PUBLISH packets buffered whole at the head of such a chunk in one
pass (MQTT 3.1.1 and 5: fixed header, remaining length, topic, packet id, MQTT 5
properties, payload). It stops at the first packet it leaves to paho's own reader:
another packet type, QoS 2 (paho's PUBREC/PUBREL exchange), a topic alias, a topic that
is not UTF-8, anything malformed, or a packet not buffered whole. It never raises and
never skips over a packet. :func:`pubacks` writes the acknowledgements of QoS 1 packets.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = ["Publish", "parse_publishes", "pubacks", "remaining_length"]

_PUBLISH = 0x30
_PUBACK = 0x40
_MAX_LENGTH_BYTES = 4  # MQTT's remaining length takes 1 to 4 bytes


class Publish(NamedTuple):
    """One QoS 0 or 1 PUBLISH taken off the wire."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool


def parse_publishes(buffer: bytes, position: int = 0, *, is_v5: bool) -> tuple[list[Publish], int]:
    """The QoS 0/1 PUBLISH packets buffered whole from ``position`` on, and where the
    first packet left unparsed starts (``position`` when there is none).

    >>> packet = bytes([0x30, 6, 0, 3]) + b"a/b" + b"1"
    >>> parse_publishes(packet + b"\\xd0\\x00", is_v5=False)
    ([Publish(topic='a/b', payload=b'1', qos=0, mid=0, retain=False)], 8)
    """
    end = len(buffer)
    found: list[Publish] = []
    while position + 2 <= end:
        header = buffer[position]
        qos = (header >> 1) & 3
        if header & 0xF0 != _PUBLISH or qos == 2:
            break
        length, body = remaining_length(buffer, position + 1, end)
        if body < 0 or length < 2 or body + length > end:
            break
        stop = body + length
        topic_end = body + 2 + ((buffer[body] << 8) | buffer[body + 1])
        if topic_end == body + 2 or topic_end > stop:
            break  # a topic alias, or malformed: paho decides
        cursor = topic_end
        mid = 0
        if qos:
            if cursor + 2 > stop:
                break
            mid = (buffer[cursor] << 8) | buffer[cursor + 1]
            cursor += 2
        if is_v5:
            properties, cursor = remaining_length(buffer, cursor, stop)
            if cursor < 0:
                break
            cursor += properties
        if cursor > stop:
            break
        try:
            topic = buffer[body + 2 : topic_end].decode()
        except UnicodeDecodeError:
            break
        found.append(Publish(topic, buffer[cursor:stop], qos, mid, bool(header & 1)))
        position = stop
    return found, position


def remaining_length(buffer: bytes, position: int, end: int) -> tuple[int, int]:
    """MQTT's variable-length integer at ``position``: (value, where it ends), or (0, -1)
    when it runs past ``end`` or over four bytes.

    >>> remaining_length(b"\\xc8\\x01", 0, 2)
    (200, 2)
    """
    value = 0
    for i in range(_MAX_LENGTH_BYTES):
        if position + i >= end:
            return 0, -1
        byte = buffer[position + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, position + i + 1
    return 0, -1


def pubacks(mids: list[int]) -> bytes:
    """The PUBACK packets of QoS 1 messages ``mids``, back to back (MQTT 3.1.1's short
    form, which MQTT 5 reads as reason code 0, success).

    >>> pubacks([1, 513]).hex()
    '4002000140020201'
    """
    return b"".join(struct.pack("!BBH", _PUBACK, 2, mid) for mid in mids)
