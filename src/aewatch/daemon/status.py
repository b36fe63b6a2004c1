"""The HTTP status server: ``/metrics``, ``/healthz`` and ``/readyz`` (shell).

An idle or slow client holds a file descriptor here, never a thread. One thread waits on
every open connection with a selector and reads each request's head without blocking; only
a request whose head is complete goes to one of a few worker threads, which answers it and
closes the connection (HTTP/1.0, one request per connection, as before). At most
``max_connections`` connections wait for their request: one more closes the oldest waiting.
Each may take ``timeout_s`` to send its request, and a reply the client does not read is
given up after ``timeout_s`` as well. So a thousand idle connections cost a few hundred
descriptors and no thread, and ``/healthz`` keeps answering beside them.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from aewatch.errors import ConfigError

__all__ = ["MetricsPage", "StatusServer", "registry_page"]

MAX_CONNECTIONS = 256  # waiting for their request; each is one file descriptor
TIMEOUT_S = 10.0  # to send a request's head, and to take the reply
WORKERS = 4  # threads answering complete requests

MetricsPage = Callable[[str], tuple[bytes, str]]  # Accept header -> body, content type

_MAX_HEAD_BYTES = 16384  # request line and headers; /metrics?... needs far less
_RECV_BYTES = 4096
_ACCEPTS_PER_WAKEUP = 64  # then expire and read the connections already open
_BACKLOG = 128
_NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

log = logging.getLogger("aewatch.metrics")


class StatusServer:
    """HTTP ``/metrics``, ``/healthz`` and ``/readyz`` on background threads.

    ``metrics`` writes the ``/metrics`` page for the request's ``Accept`` header
    (:func:`registry_page` makes one of a registry).

    ``max_connections``, ``timeout_s`` and ``workers`` bound what clients can hold (see the
    module docstring); the defaults suit a scraper and a health probe or two.

    Raises:
        ConfigError: it cannot listen on ``listen``:``port`` (taken, or not this host's).
    """

    def __init__(
        self,
        listen: str,
        port: int,
        metrics: MetricsPage,
        *,
        is_alive: Callable[[], tuple[bool, str]],
        is_ready: Callable[[], tuple[bool, str]],
        max_connections: int = MAX_CONNECTIONS,
        timeout_s: float = TIMEOUT_S,
        workers: int = WORKERS,
    ) -> None:
        if max_connections < 1 or timeout_s <= 0 or workers < 1:
            raise ValueError(
                f"max_connections={max_connections}, timeout_s={timeout_s} and "
                f"workers={workers} must all be positive"
            )
        self._listener = _listen(listen, port)
        self._max_connections = max_connections
        self._timeout_s = timeout_s
        self._handler = _handler(metrics, is_alive, is_ready, timeout_s=timeout_s)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ)
        # Insertion order is arrival order: the first entry is the oldest and expires first.
        self._waiting: dict[socket.socket, _Waiting] = {}
        self._requests: queue.Queue[_Request | None] = queue.Queue(maxsize=max_connections)
        self._is_stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="aewatch-http", daemon=True)
        self._workers = [
            threading.Thread(target=self._answer, name=f"aewatch-http-{i}", daemon=True)
            for i in range(workers)
        ]

    @property
    def port(self) -> int:
        """The port it listens on (useful when configured as 0)."""
        return int(self._listener.getsockname()[1])

    def start(self) -> None:
        """Serve in the background."""
        for worker in self._workers:
            worker.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every socket; requests already read are answered first.

        Waits at most about ``timeout_s`` for a worker still writing to a slow client.
        """
        self._is_stopping.set()
        with contextlib.suppress(OSError):  # the selector thread has closed its end
            self._wake_out.send(b"\0")
        if self._thread.ident is None:
            self._close_all()  # never started
        else:
            self._thread.join()
        deadline = time.monotonic() + self._timeout_s
        running = [worker for worker in self._workers if worker.is_alive()]
        for _ in running:
            self._requests.put(None)  # after the requests queued: those are answered
        for worker in running:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._wake_out.close()

    # -- the selector thread -----------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._is_stopping.is_set():
                for key, _events in self._selector.select(self._expire()):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_in:
                        self._wake_in.recv(_RECV_BYTES)
                    else:
                        self._read(key.fileobj)  # type: ignore[arg-type]
        finally:
            self._close_all()

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                connection, address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as err:
                self._out_of_descriptors(err)
                return
            connection.setblocking(False)
            self._selector.register(connection, selectors.EVENT_READ)
            deadline = time.monotonic() + self._timeout_s
            self._waiting[connection] = _Waiting(address, deadline)
            if len(self._waiting) > self._max_connections:
                oldest = next(iter(self._waiting))
                log.debug("http: %d connections wait; closing the oldest", len(self._waiting))
                self._drop(oldest)

    def _out_of_descriptors(self, err: OSError) -> None:
        """accept failed: free a descriptor if that is why, or pause; the listener stays ready."""
        log.warning("http: cannot accept a connection: %s", err.strerror or err)
        if err.errno in _NO_DESCRIPTORS and self._waiting:
            self._drop(next(iter(self._waiting)))
        else:
            self._is_stopping.wait(0.1)  # not a busy loop on a listener that stays readable

    def _read(self, connection: socket.socket) -> None:
        waiting = self._waiting.get(connection)
        if waiting is None:
            return  # dropped earlier in this round (the oldest, for one just accepted)
        try:
            chunk = connection.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(connection)  # the client went away
            return
        waiting.head += chunk
        if b"\r\n\r\n" in waiting.head or b"\n\n" in waiting.head:
            self._hand_over(connection, waiting)
        elif len(waiting.head) > _MAX_HEAD_BYTES:
            log.debug("http: a request head over %d bytes from %s", _MAX_HEAD_BYTES, waiting)
            self._drop(connection)

    def _hand_over(self, connection: socket.socket, waiting: _Waiting) -> None:
        self._selector.unregister(connection)
        del self._waiting[connection]
        try:
            self._requests.put_nowait(_Request(connection, waiting.address, bytes(waiting.head)))
        except queue.Full:  # the workers are that far behind: no answer beats a late one
            connection.close()

    def _expire(self) -> float:
        """Close the connections past their deadline; seconds until the next one's."""
        now = time.monotonic()
        while self._waiting:
            connection, waiting = next(iter(self._waiting.items()))
            if waiting.deadline > now:
                return waiting.deadline - now
            self._drop(connection)
        return self._timeout_s

    def _drop(self, connection: socket.socket) -> None:
        self._selector.unregister(connection)
        del self._waiting[connection]
        connection.close()

    def _close_all(self) -> None:
        for connection in list(self._waiting):
            self._drop(connection)
        self._selector.close()
        self._listener.close()
        self._wake_in.close()

    # -- the workers -------------------------------------------------------------------

    def _answer(self) -> None:
        while (request := self._requests.get()) is not None:
            try:
                self._handler(request)
            except OSError as err:  # the client left or did not take the reply in time
                log.debug("http: reply to %s abandoned: %s", request.address, err)
            except Exception:  # a bug must not end the worker; the next request is served
                log.exception("http: internal error answering %s", request.address)
            finally:
                _close(request.connection)


@dataclass
class _Waiting:
    """A connection whose request head is still arriving."""

    address: object
    deadline: float  # time.monotonic() by which the whole head must have come
    head: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True, slots=True)
class _Request:
    """A connection whose request head has come whole."""

    connection: socket.socket
    address: object
    head: bytes


class _SocketWriter(io.BufferedIOBase):
    """The reply stream: every write goes out whole (``sendall``), under the socket's timeout."""

    def __init__(self, connection: socket.socket) -> None:
        super().__init__()
        self._connection = connection

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        view = memoryview(data)  # type: ignore[arg-type]
        self._connection.sendall(view)
        return view.nbytes


def _listen(listen: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    try:
        listener = socket.create_server((listen, port), family=family, backlog=_BACKLOG)
    except OSError as err:  # port taken, address not on this host, no permission
        raise ConfigError(
            f"cannot serve metrics on {listen}:{port}: {err.strerror or err}; set "
            "metrics.port to a free port (0 picks one) and metrics.listen to an "
            "address of this host"
        ) from err
    listener.setblocking(False)
    return listener


def _close(connection: socket.socket) -> None:
    # The reply ends with a FIN, as socketserver's; a client that reset the connection
    # already has nothing left to be told.
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_WR)
    connection.close()


def registry_page(registry: CollectorRegistry) -> MetricsPage:
    """The page of a plain registry, in the format the scraper's ``Accept`` header asks for."""

    def page(accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type

    return page


def _handler(
    metrics: MetricsPage,
    is_alive: Callable[[], tuple[bool, str]],
    is_ready: Callable[[], tuple[bool, str]],
    *,
    timeout_s: float,
) -> Callable[[_Request], object]:
    class Handler(BaseHTTPRequestHandler):
        # The head was read by the selector thread; the standard parser reads it from memory.
        def __init__(self, request: _Request) -> None:
            self.request = request.connection
            self.client_address = request.address  # type: ignore[assignment]
            self._head = request.head
            self.setup()
            try:
                self.handle()
            finally:
                self.finish()

        def setup(self) -> None:
            self.connection = self.request
            self.connection.setblocking(True)
            self.connection.settimeout(timeout_s)
            self.rfile = io.BytesIO(self._head)
            self.wfile = _SocketWriter(self.connection)

        def finish(self) -> None:
            """Nothing is buffered; the worker closes the connection."""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, *metrics(self.headers.get("Accept", "")))
            elif path in ("/healthz", "/readyz"):
                ok, why = (is_alive if path == "/healthz" else is_ready)()
                self._reply(200 if ok else 503, f"{why}\n".encode(), "text/plain; charset=utf-8")
            else:
                self._reply(404, b"try /metrics, /healthz or /readyz\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http: " + format, *args)

    return Handler
