"""The status server over real sockets: idle, slow and surplus clients hold no thread and
never stop /healthz from answering; the endpoints answer as they always did."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from prometheus_client import CollectorRegistry, Counter

from aewatch.daemon.status import WORKERS, StatusServer, registry_page

from .figures import record

pytestmark = pytest.mark.reliability

# Generous: a loaded two-core machine may be slow, never this slow.
ANSWER_S = 10.0


@contextmanager
def _serving(**bounds: float) -> Iterator[StatusServer]:
    registry = CollectorRegistry()
    Counter("aewatch_test_things", "Things counted by the test.", registry=registry).inc(3)
    server = StatusServer(
        "127.0.0.1",
        0,
        registry_page(registry),
        is_alive=lambda: (True, "ok"),
        is_ready=lambda: (False, "not connected to mqtt://nowhere:1883"),
        **bounds,  # type: ignore[arg-type]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _get(server: StatusServer, path: str) -> tuple[int, str, str]:
    """Status, content type and body of ``GET path``."""
    url = f"http://127.0.0.1:{server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=ANSWER_S) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def _idle(server: StatusServer, stack: ExitStack) -> socket.socket:
    connection = stack.enter_context(socket.create_connection(("127.0.0.1", server.port)))
    connection.settimeout(ANSWER_S)
    return connection


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_endpoints_answer_as_before() -> None:
    with _serving() as server:
        status, content_type, body = _get(server, "/metrics?name[]=x")
        assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
        assert "aewatch_test_things_total 3.0" in body
        assert _get(server, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
        assert _get(server, "/readyz") == (
            503,
            "text/plain; charset=utf-8",
            "not connected to mqtt://nowhere:1883\n",
        )
        assert _get(server, "/") == (404, "text/plain", "try /metrics, /healthz or /readyz\n")


def test_healthz_and_metrics_answer_beside_1000_idle_connections() -> None:
    threads_before, descriptors_before = threading.active_count(), _descriptors()
    with _serving() as server, ExitStack() as stack:
        idle = [_idle(server, stack) for _ in range(1000)]
        started = time.monotonic()
        assert _get(server, "/healthz")[:1] == (200,)
        assert "aewatch_test_things_total 3.0" in _get(server, "/metrics")[2]
        answered_s = time.monotonic() - started
        threads = threading.active_count() - threads_before
        # The test's own 1000 client sockets, plus what the server kept open of the other ends.
        server_descriptors = _descriptors() - descriptors_before - len(idle)
        print(f"answered in {answered_s:.3f} s; {threads} threads, {server_descriptors} fds")
    assert answered_s < ANSWER_S
    assert threads <= 1 + WORKERS  # the selector thread and the workers, whatever the load
    assert server_descriptors <= 256 + 16  # the waiting connections' bound, listener, wakers
    record(
        "1 000 idle HTTP connections held open on the metrics port",
        "/healthz and /metrics answered; threads and descriptors stayed bounded",
        idle_connections=len(idle),
        healthz_and_metrics_answered_in=f"{answered_s:.3f} s",
        server_threads=threads,
        server_descriptors=server_descriptors,
    )


def test_a_client_that_never_finishes_its_request_is_cut_off() -> None:
    with _serving(timeout_s=1.0) as server, ExitStack() as stack:
        slow = _idle(server, stack)
        slow.sendall(b"GET /healthz HTTP/1.0\r\nHost: x\r\n")  # the blank line never comes
        started = time.monotonic()
        assert slow.recv(1024) == b""  # closed without a reply
        assert time.monotonic() - started < ANSWER_S
        assert _get(server, "/healthz")[0] == 200


def test_stop_after_the_selector_thread_has_ended_is_clean() -> None:
    """stop() sets the flag, then wakes the selector; a selector that saw the flag first has
    closed its end of the wake pair already (this once ended a test run in BrokenPipeError).
    The state is made here directly: the thread ended before the wake-up is sent."""
    with _serving() as server:  # leaving it calls stop(): no BrokenPipeError
        server._is_stopping.set()
        server._wake_out.send(b"\0")
        server._thread.join(ANSWER_S)
        assert not server._thread.is_alive()


def test_the_oldest_waiting_connection_goes_when_too_many_wait() -> None:
    with _serving(max_connections=4) as server, ExitStack() as stack:
        first = _idle(server, stack)
        _wait_accepted(first)
        rest = [_idle(server, stack) for _ in range(4)]
        assert first.recv(1024) == b""  # the fifth closed the first
        rest[0].sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert rest[0].recv(1024).startswith(b"HTTP/1.0 200 OK\r\n")


def test_a_request_sent_byte_by_byte_is_answered() -> None:
    with _serving() as server, ExitStack() as stack:
        client = _idle(server, stack)
        for byte in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n":
            client.sendall(bytes([byte]))
        reply = _read_all(client)
    assert reply.startswith(b"HTTP/1.0 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\nok\n")


def test_a_garbled_request_gets_400_and_the_server_goes_on() -> None:
    with _serving() as server, ExitStack() as stack:
        client = _idle(server, stack)
        client.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        assert b"400 - Bad request" in _read_all(client)  # as http.server says it
        huge = _idle(server, stack)
        huge.sendall(b"GET /healthz HTTP/1.0\r\nX: " + b"y" * 20_000)
        assert _read_all(huge) == b""  # a head that big is closed unanswered
        assert _get(server, "/healthz")[0] == 200


def test_stop_closes_the_port_and_stop_without_start_is_fine() -> None:
    with _serving() as server:
        port = server.port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=ANSWER_S).close()
    never_started = StatusServer(
        "127.0.0.1",
        0,
        registry_page(CollectorRegistry()),
        is_alive=lambda: (True, "ok"),
        is_ready=lambda: (True, "ready"),
    )
    never_started.stop()


def _wait_accepted(connection: socket.socket) -> None:
    """Return once the server has taken ``connection`` in (it answers a request on another)."""
    probe = socket.create_connection(connection.getpeername(), timeout=ANSWER_S)
    with probe:
        probe.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        _read_all(probe)


def _read_all(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
