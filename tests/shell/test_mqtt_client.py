"""BufferedClient's fast path: PUBLISH parsing on hand-built packets, then a real mosquitto."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from aewatch.config import BrokerConfig
from aewatch.daemon.mqtt import Publish, _BufferedSocket, connect, make_client
from tests.core.test_packets import publish_packet as _publish
from tests.shell.conftest import Broker


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


def test_the_socket_hands_over_what_the_parser_takes_and_keeps_the_rest() -> None:
    """The parsing itself is tested on bytes alone (tests/core/test_packets.py)."""
    first, second = _publish("a/b", b"1"), _publish("a/b", b"2", qos=2, mid=9)
    sock = _buffered(first + second)
    assert sock.take_publishes(is_v5=False) == [Publish("a/b", b"1", 0, 0, False)]
    assert sock.buffered() == len(second)
    assert sock.take_publishes(is_v5=False) == []  # QoS 2 is paho's
    assert sock.buffered() == len(second)


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
