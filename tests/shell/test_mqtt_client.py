"""BufferedClient's fast path: PUBLISH parsing on hand-built packets, then a real mosquitto."""

from __future__ import annotations

import struct
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from aewatch.config import BrokerConfig
from aewatch.daemon.mqtt import Publish, _BufferedSocket, connect, make_client
from tests.shell.conftest import Broker


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    mid: int = 0,
    retain: bool = False,
    properties: bytes | None = None,
    raw_topic: bytes | None = None,
) -> bytes:
    name = topic.encode() if raw_topic is None else raw_topic
    body = struct.pack("!H", len(name)) + name
    if qos:
        body += struct.pack("!H", mid)
    if properties is not None:
        body += _varint(len(properties)) + properties
    body += payload
    return bytes([0x30 | (qos << 1) | int(retain)]) + _varint(len(body)) + body


class _Chunks:
    """A socket that returns prepared chunks, then would block."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def recv(self, _size: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        return self.chunks.pop(0)

    def close(self) -> None:
        """paho closes its socket when the client goes."""


def _buffered(data: bytes) -> _BufferedSocket:
    sock = _BufferedSocket(_Chunks(data))
    sock.recv(1)  # fill the buffer as paho's first read does; hand back that byte
    sock._position = 0
    return sock


def test_parses_mqtt311_publishes_of_qos_0_and_1() -> None:
    data = (
        _publish("plant/w1/flow", b"1.5")
        + _publish("plant/w2/temp", b'{"v": 2}', qos=1, mid=513, retain=True)
        + _publish("plant/w3/flow", b"x" * 300)  # a two-byte remaining length
    )
    sock = _buffered(data)
    assert sock.take_publishes(is_v5=False) == [
        Publish("plant/w1/flow", b"1.5", 0, 0, False),
        Publish("plant/w2/temp", b'{"v": 2}', 1, 513, True),
        Publish("plant/w3/flow", b"x" * 300, 0, 0, False),
    ]
    assert sock.buffered() == 0


def test_parses_mqtt5_publishes_and_skips_their_properties() -> None:
    content_type = b"\x03" + struct.pack("!H", 16) + b"application/json"
    data = _publish("a/b", b"{}", qos=1, mid=7, properties=content_type) + _publish(
        "a/c", b"2", properties=b""
    )
    sock = _buffered(data)
    assert sock.take_publishes(is_v5=True) == [
        Publish("a/b", b"{}", 1, 7, False),
        Publish("a/c", b"2", 0, 0, False),
    ]


@pytest.mark.parametrize(
    ("second", "why"),
    [
        (_publish("a/b", b"2", qos=2, mid=9), "QoS 2 needs paho's PUBREC/PUBREL exchange"),
        (b"\xd0\x00", "a PINGRESP is paho's"),
        (_publish("", b"2", properties=b"\x23\x00\x01"), "a topic alias is paho's"),
        (_publish("x", b"2", raw_topic=b"\xff\xfe"), "a topic that is not UTF-8"),
    ],
)
def test_stops_at_a_packet_it_leaves_to_paho(second: bytes, why: str) -> None:
    first = _publish("a/b", b"1", properties=b"")
    sock = _buffered(first + second + _publish("a/b", b"3", properties=b""))
    assert [p.payload for p in sock.take_publishes(is_v5=True)] == [b"1"], why
    assert sock.buffered() == len(second) + len(_publish("a/b", b"3", properties=b""))
    assert sock.take_publishes(is_v5=True) == [], "it does not skip over the packet"


def test_leaves_a_packet_not_buffered_whole() -> None:
    whole = _publish("a/b", b"1") + _publish("a/b", b"2" * 200)
    for cut in (1, 2, 4, 150):  # cut inside the second packet
        sock = _buffered(whole[:-cut] if cut < 150 else whole[: len(whole) - 200 + 50])
        assert [p.payload for p in sock.take_publishes(is_v5=False)] == [b"1"]
    sock = _buffered(_publish("a/b", b"1") + b"\x30")  # only the next command byte
    assert [p.payload for p in sock.take_publishes(is_v5=False)] == [b"1"]
    assert sock.buffered() == 1


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_flood_goes_through_the_fast_path_and_is_acknowledged(
    broker: Broker, protocol: str
) -> None:
    """5 000 QoS 1 messages arrive in order, mostly in batches, and are all acknowledged.

    Acknowledged means the broker does not deliver them again to the same persistent
    session after a reconnect.
    """
    settings = BrokerConfig.model_validate(
        {"url": broker.url, "protocol": protocol, "client_id": f"fast-{protocol}"}
    )
    got: list[bytes] = []
    batches: list[int] = []
    done = threading.Event()
    total = 5000

    def on_publishes(found: list[Publish]) -> None:
        batches.append(len(found))
        got.extend(p.payload for p in found)
        client.ack_many([p.mid for p in found if p.qos])
        if len(got) >= total:
            done.set()

    def on_message(c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(bytes(message.payload))
        c.ack(message.mid, message.qos)
        if len(got) >= total:
            done.set()

    subscribed = threading.Event()
    client = make_client(settings, is_clean=False, manual_ack=True)
    client.on_publishes = on_publishes
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("flood/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    connect(client, settings, is_clean=False)
    assert subscribed.wait(10)

    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood-sender")
    sender.connect("127.0.0.1", broker.port)
    sender.loop_start()
    infos = [sender.publish("flood/w1", str(i).encode(), qos=1) for i in range(total)]
    for info in infos:
        info.wait_for_publish(10)
    sender.disconnect()
    sender.loop_stop()

    assert done.wait(20), f"received {len(got)} of {total}"
    assert got == [str(i).encode() for i in range(total)], "in order, each once"
    assert sum(batches) > total // 2, f"the fast path took only {sum(batches)} of {total}"
    time.sleep(0.5)  # let the last PUBACKs leave
    client.disconnect()
    client.loop_stop()

    again: list[bytes] = []
    connected = threading.Event()
    client = make_client(settings, is_clean=False, manual_ack=True)
    client.on_message = lambda _c, _u, m: again.append(bytes(m.payload))
    client.on_connect = lambda *_: connected.set()
    connect(client, settings, is_clean=False)
    assert connected.wait(10)
    time.sleep(1.0)
    client.disconnect()
    client.loop_stop()
    assert again == [], f"{len(again)} messages were delivered again: not acknowledged"


def test_messages_that_come_one_per_read_take_the_fast_path_too(broker: Broker) -> None:
    """At a low rate every read holds one PUBLISH: it goes to on_publishes, not on_message."""
    settings = BrokerConfig.model_validate({"url": broker.url, "client_id": "trickle"})
    fast: list[bytes] = []
    slow: list[bytes] = []
    subscribed = threading.Event()
    client = make_client(settings, manual_ack=True)
    client.on_publishes = lambda found: fast.extend(p.payload for p in found)
    client.on_message = lambda _c, _u, m: slow.append(bytes(m.payload))
    client.on_connect = lambda c, *_: c.subscribe("trickle/#", qos=0)
    client.on_subscribe = lambda *_: subscribed.set()
    connect(client, settings)
    assert subscribed.wait(10)
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="trickle-sender")
    sender.connect("127.0.0.1", broker.port)
    sender.loop_start()
    for i in range(20):
        sender.publish("trickle/w1", str(i).encode()).wait_for_publish(5)
        time.sleep(0.02)
    deadline = time.monotonic() + 10
    while len(fast) + len(slow) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    sender.disconnect()
    sender.loop_stop()
    client.disconnect()
    client.loop_stop()
    assert fast == [str(i).encode() for i in range(20)] and slow == []


def test_messages_in_flight_do_not_send_the_rest_of_a_read_through_paho() -> None:
    """paho's loop_read reads one packet per message in flight; ours reads one, then goes
    back to the fast path. A PINGRESP (paho's) heads a read of ten PUBLISHes while twenty
    outgoing QoS 1 messages await their PUBACK: the ten take the fast path."""
    settings = BrokerConfig.model_validate({"url": "mqtt://127.0.0.1:1", "client_id": "inflight"})
    client = make_client(settings, manual_ack=True)
    fast: list[bytes] = []
    slow: list[bytes] = []
    client.on_publishes = lambda found: fast.extend(p.payload for p in found)
    client.on_message = lambda _c, _u, m: slow.append(bytes(m.payload))
    for mid in range(1, 21):
        client._out_messages[mid] = mqtt.MQTTMessage(mid, b"aewatch/alert/w1")
    pingresp = b"\xd0\x00"
    publishes = b"".join(_publish(f"a/w{i}", str(i).encode(), properties=b"") for i in range(10))
    client._sock = _BufferedSocket(_Chunks(pingresp + publishes))
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert fast == [str(i).encode() for i in range(10)] and slow == []
