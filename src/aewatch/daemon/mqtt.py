"""The paho-mqtt client as the configuration asks for it (shell).

:func:`make_client` builds a paho 2.x client (``CallbackAPIVersion.VERSION2``) with the
protocol, credentials, TLS, Last Will and reconnect backoff of ``broker``, which reports
every failed connection attempt to a
:class:`~aewatch.daemon.connect_failures.ConnectFailures` (counted, and logged with
back-off); :func:`connect` starts it without blocking (paho's own thread then reconnects
whenever the connection drops). :func:`read_retained` collects the retained messages under
one filter with a short-lived clean session; the daemon uses it to read back its alert
states at start.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from aewatch.config import BrokerConfig
from aewatch.core.packets import Publish, parse_publishes, pubacks
from aewatch.daemon.connect_failures import ConnectFailures

__all__ = ["BufferedClient", "Publish", "Will", "connect", "make_client", "read_retained"]

log = logging.getLogger("aewatch.mqtt")

_QUIET_S = 0.3  # retained messages are done when none came for this long
_READ_CHUNK = 65536
_MAX_PACKETS_PER_WAKEUP = 10_000  # then paho's loop gets to write and ping again
_PUBACK = 0x40  # paho's queue takes the packet's command byte beside it

# Brokers already warned about, so the daemon's clients (resume, then serve) warn once.
_warned_insecure: set[str] = set()


class _BufferedSocket:
    """A socket whose small reads come from one large ``recv``.

    Stock paho reads a packet with three or more ``recv`` calls (command byte, length
    bytes, body) and, with QoS 0, one packet per ``select``. Every such system call
    releases the GIL, and a thread that releases it while the scoring worker computes
    waits up to the interpreter's switch interval to get it back: at tens of thousands of
    messages a second the network thread would spend most of its time waiting. Reading
    64 KiB at a time makes that one release per few hundred messages. ``pending()``
    reports the buffered bytes, so paho's loop does not wait in ``select`` while
    packets are still buffered (it does the same for TLS sockets).
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = b""
        self._position = 0

    def recv(self, size: int) -> bytes:
        if self._position >= len(self._buffer):
            self._buffer = self._sock.recv(_READ_CHUNK)  # BlockingIOError etc. go to paho
            self._position = 0
            if not self._buffer:
                return b""  # the peer closed the connection
        chunk = self._buffer[self._position : self._position + size]
        self._position += len(chunk)
        return chunk

    def buffered(self) -> int:
        """Bytes read from the socket and not yet handed to paho."""
        return len(self._buffer) - self._position

    def fill(self) -> bool:
        """With nothing buffered, read what the socket has (up to 64 KiB); any bytes read?

        Nothing to read, the end of the stream or an error reads nothing and leaves the
        buffer empty: paho's own read must then meet the same condition and handle it.
        """
        if self._position < len(self._buffer):
            return False
        try:
            data = self._sock.recv(_READ_CHUNK)
        except (OSError, ssl.SSLError):  # BlockingIOError and SSLWantRead* included
            return False
        if not data:
            return False
        self._buffer, self._position = data, 0
        return True

    def take_publishes(self, *, is_v5: bool) -> list[Publish]:
        """Parse the QoS 0/1 PUBLISH packets buffered whole at the head, and consume them
        (:func:`~aewatch.core.packets.parse_publishes`: it stops at the first packet it
        leaves to paho's own reader, which also reports any protocol error)."""
        found, self._position = parse_publishes(self._buffer, self._position, is_v5=is_v5)
        return found

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return self.buffered() + int(inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """paho's client reading its socket in large chunks and many packets per wakeup.

    With :attr:`on_publishes` set, the QoS 0 and 1 PUBLISH packets that arrive buffered
    whole are parsed here, in one pass over the buffer, and handed over as one list of
    :class:`Publish` per wakeup instead of one ``on_message`` call each: paho's per-packet
    work (``MQTTMessage``, MQTT 5 ``Properties``, callback locks) was most of the network
    thread's time. Every other packet goes through paho as before, so connection
    handling, keepalive, QoS 2 and errors stay paho's. The
    callback acknowledges QoS 1 messages itself (``manual_ack``), e.g. with
    :meth:`ack_many`.
    """

    on_publishes: Callable[[list[Publish]], None] | None = None
    connect_failures: ConnectFailures | None = None  # told of every attempt's outcome

    def _create_socket(self) -> Any:
        # paho catches a failed connect's error and retries without a word: the reason is
        # only seen here.
        try:
            sock = super()._create_socket()
        except OSError as err:  # ssl.SSLError and CertificateError included
            if self.connect_failures is not None:
                self.connect_failures.failed(err)
            raise
        return _BufferedSocket(sock)

    def _ssl_wrap_socket(self, tcp_sock: socket.socket) -> ssl.SSLSocket:
        """paho's TLS handshake, closing the socket when it fails (paho's leaks it).

        The host name is checked by the context (``check_hostname``, which ``tls_set`` and
        ``tls_insecure_set`` keep in step), so paho's extra ``match_hostname`` is not needed.
        """
        if self._ssl_context is None:
            raise ValueError("TLS is not configured on this client")
        try:
            ssl_sock = self._ssl_context.wrap_socket(
                tcp_sock, server_hostname=self._host, do_handshake_on_connect=False
            )
        except BaseException:
            tcp_sock.close()
            raise
        try:
            ssl_sock.settimeout(self._connect_timeout)
            ssl_sock.do_handshake()
        except BaseException:
            ssl_sock.close()
            raise
        return ssl_sock

    def _handle_connack(self) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        # Both MQTT 3.1.1's return code and MQTT 5's reason code are the second byte.
        is_accepted = len(packet) >= 2 and packet[1] == 0
        rc = super()._handle_connack()
        if self.connect_failures is not None:
            if is_accepted:
                self.connect_failures.connected()
            else:
                self.connect_failures.refused()
        return rc

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:  # paho ignores it too
        sock = self._sock
        is_v5 = self._protocol == mqtt.MQTTv5
        # A fresh read goes to the fast path first (at low rates it often holds a single
        # PUBLISH); when nothing could be read, paho's reader meets the same condition.
        is_fresh = (
            self.on_publishes is not None
            and isinstance(sock, _BufferedSocket)
            and self._in_packet["command"] == 0
            and not sock.buffered()
            and sock.fill()
        )
        rc = mqtt.MQTT_ERR_SUCCESS if is_fresh else self._read_packet()
        for _ in range(_MAX_PACKETS_PER_WAKEUP):
            if rc != mqtt.MQTT_ERR_SUCCESS or self._sock is not sock:
                break
            if not (isinstance(sock, _BufferedSocket) and sock.buffered()):
                break
            handler = self.on_publishes
            if (
                handler is not None
                and self._in_packet["command"] == 0
                and self._take_publishes(sock, handler, is_v5=is_v5)
            ):
                continue
            rc = self._read_packet()
        return rc

    def _read_packet(self) -> MQTTErrorCode:
        """One packet through paho's own reader, as its ``loop_read`` reads each.

        Not ``loop_read`` itself: that reads as many packets as messages are in flight
        (outgoing QoS 1 alerts, say) before it returns, and every one of them would miss
        the fast path.
        """
        if self._sock is None:
            return mqtt.MQTT_ERR_NO_CONN
        rc = self._packet_read()
        if rc > 0:
            return self._loop_rc_handle(rc)
        return mqtt.MQTT_ERR_SUCCESS  # MQTT_ERR_AGAIN included: nothing more to read now

    def _take_publishes(
        self,
        sock: _BufferedSocket,
        handler: Callable[[list[Publish]], None],
        *,
        is_v5: bool,
    ) -> bool:
        """Hand the whole PUBLISHes at the head of the buffer to ``handler``; any found?"""
        found = sock.take_publishes(is_v5=is_v5)
        if not found:
            return False
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        with self._in_callback_mutex:
            handler(found)
        return True

    def ack_many(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages (``manual_ack``): their PUBACKs go out in one write."""
        if mids:
            self._packet_queue(_PUBACK, pubacks(mids), 0, 0)


class Will:
    """The Last Will: ``payload`` published retained on ``topic`` if we vanish."""

    def __init__(self, topic: str, payload: str, qos: int = 1) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos


def make_client(
    broker: BrokerConfig,
    *,
    client_id: str | None = None,
    is_clean: bool | None = None,
    will: Will | None = None,
    manual_ack: bool = False,
) -> BufferedClient:
    """A configured, unconnected client; ``is_clean`` None takes ``broker.clean_start``."""
    clean = broker.clean_start if is_clean is None else is_clean
    is_v5 = broker.protocol == "5"
    client = BufferedClient(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or broker.client_id,
        protocol=mqtt.MQTTv5 if is_v5 else mqtt.MQTTv311,
        clean_session=None if is_v5 else clean,
        manual_ack=manual_ack,
    )
    if broker.username is not None and broker.password is not None:
        client.username_pw_set(broker.username, broker.password.value.get_secret_value())
    if broker.uses_tls:
        _set_tls(client, broker)
    client.connect_failures = ConnectFailures(broker.display_url)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=True)
    client.reconnect_delay_set(
        min_delay=max(1, round(broker.reconnect_min_s)),
        max_delay=max(1, round(broker.reconnect_max_s)),
    )
    return client


def _set_tls(client: BufferedClient, broker: BrokerConfig) -> None:
    tls = broker.tls
    is_insecure = tls is not None and tls.insecure_skip_verify
    # CERT_NONE makes paho skip the host name check too (check_hostname off, tls_insecure
    # on); CERT_REQUIRED with tls_insecure_set(True) alone would still check the CA.
    client.tls_set(
        ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
        certfile=str(tls.cert_file) if tls and tls.cert_file else None,
        keyfile=str(tls.key_file) if tls and tls.key_file else None,
        cert_reqs=ssl.CERT_NONE if is_insecure else ssl.CERT_REQUIRED,
    )
    if is_insecure and broker.display_url not in _warned_insecure:
        _warned_insecure.add(broker.display_url)
        log.warning(
            "TLS VERIFICATION IS OFF for %s (broker.tls.insecure_skip_verify: true): neither "
            "the certificate's CA nor its host name is checked, so anyone on the path can pose "
            "as the broker, read every reading and forge alerts; for tests only: set it to "
            "false and give broker.tls.ca_file",
            broker.display_url,
        )


def connect(client: mqtt.Client, broker: BrokerConfig, *, is_clean: bool | None = None) -> None:
    """Connect in the background and start paho's network thread (it retries on failure)."""
    clean = broker.clean_start if is_clean is None else is_clean
    kwargs: dict[str, Any] = {}
    if broker.protocol == "5":
        kwargs["clean_start"] = clean
        if not clean:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = broker.session_expiry_s
            kwargs["properties"] = properties
    client.connect_async(broker.host, broker.port, keepalive=broker.keepalive_s, **kwargs)
    client.loop_start()


def read_retained(
    broker: BrokerConfig, topic_filter: str, *, client_id: str, timeout_s: float = 5.0
) -> dict[str, bytes] | None:
    """Retained messages under ``topic_filter`` (topic → payload); None if unreachable.

    Connects a clean session as ``client_id``, subscribes, and returns once no retained
    message came for a short while after the subscription was granted.
    """
    client = make_client(broker, client_id=client_id, is_clean=True)
    found: dict[str, bytes] = {}
    granted = threading.Event()
    refused = threading.Event()
    last = [time.monotonic()]

    def on_connect(c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if reason.is_failure:
            refused.set()  # wrong credentials stay wrong: do not retry for the whole timeout
            granted.set()
        else:
            c.subscribe(topic_filter, qos=1)

    def on_subscribe(_c: mqtt.Client, _u: object, _m: int, _r: object, _p: object) -> None:
        last[0] = time.monotonic()
        granted.set()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            found[message.topic] = bytes(message.payload)
        last[0] = time.monotonic()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    deadline = time.monotonic() + timeout_s
    try:
        connect(client, broker, is_clean=True)
        if not granted.wait(timeout_s) or refused.is_set():
            return None
        while time.monotonic() < deadline and time.monotonic() - last[0] < _QUIET_S:
            time.sleep(0.05)
        return dict(found)
    finally:
        client.disconnect()
        client.loop_stop()
