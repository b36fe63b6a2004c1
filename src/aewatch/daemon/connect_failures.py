"""Why connecting to the broker fails: each failed attempt counted by reason and logged with
back-off (shell).

paho retries a failed connection on its own and, by itself, says nothing about why. The
client (:class:`~aewatch.daemon.mqtt.BufferedClient`) hands every failed attempt's error to
:class:`ConnectFailures`, which names the reason from a small fixed set
(:data:`CONNECT_FAILURE_REASONS`, the ``reason`` label of
``aewatch_broker_connect_failures_total``), the endpoint and what to check. It logs a WARNING
on the first failure and whenever the reason changes; while the same reason goes on, it
logs again after 30 s, then 60 s, 120 s and so on, up to once an hour, so a broker that
stays away costs a few lines a day, not one per retry.

>>> failures = ConnectFailures("mqtts://broker:8883", clock=lambda: 0.0)
>>> failures.failed(ConnectionRefusedError(111, "Connection refused"))
'connection_refused'
>>> failures.counts["connection_refused"], failures.counts["hostname_mismatch"]
(1, 0)
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["CONNECT_FAILURE_REASONS", "ConnectFailures", "failure_reason"]

# What each reason means and what to check; the keys are the metric's label values.
_ADVICE = {
    "connection_refused": (
        "connection refused",
        "nothing listens on that port: is the broker running, and is the port in broker.url right?",
    ),
    "unreachable": (
        "host unreachable",
        "no route to the broker: check the network and the address in broker.url",
    ),
    "timeout": (
        "timed out",
        "no answer in time: check the address, firewalls and the broker's load",
    ),
    "name_not_resolved": (
        "host name not resolved",
        "the host name in broker.url does not resolve: check its spelling and DNS",
    ),
    "certificate_untrusted": (
        "certificate not trusted",
        "the broker's certificate is not signed by a CA we trust: set broker.tls.ca_file to "
        "the CA that signed it (or renew an expired certificate)",
    ),
    "hostname_mismatch": (
        "certificate hostname mismatch",
        "the broker's certificate is not issued for the host in broker.url: connect by a name "
        "the certificate lists, or reissue it with this name",
    ),
    "tls_error": (
        "TLS handshake failed",
        "check that the port speaks TLS, that both sides share a TLS version, and the "
        "client certificate (broker.tls.cert_file) if the broker asks for one",
    ),
    "connection_closed": (
        "connection closed during the handshake",
        "the broker hung up: is it a TLS port for mqtts:// (a plain one for mqtt://), and "
        "does it require a client certificate?",
    ),
    "broker_refused": (
        "refused by the broker",
        "the broker answered and said no (credentials, client id or authorisation)",
    ),
    "other": ("connection failed", "see the error"),
}
CONNECT_FAILURE_REASONS = tuple(_ADVICE)

_FIRST_REPEAT_S = 30.0
_MAX_REPEAT_S = 3600.0
_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
_HOSTNAME_MISMATCH = {62, 64}  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH

log = logging.getLogger("aewatch.mqtt")


class ConnectFailures:
    """Failed connection attempts to one endpoint: ``counts`` by reason, logged with back-off.

    Written by paho's network thread only; ``counts`` is read at scrape time.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        first_repeat_s: float = _FIRST_REPEAT_S,
        max_repeat_s: float = _MAX_REPEAT_S,
    ) -> None:
        self.endpoint = endpoint
        self.counts: Counter[str] = Counter({reason: 0 for reason in CONNECT_FAILURE_REASONS})
        self._clock = clock
        self._first_repeat_s = first_repeat_s
        self._max_repeat_s = max_repeat_s
        self._reason: str | None = None  # of the current run of failures
        self._run_started = 0.0
        self._run_attempts = 0
        self._next_report = 0.0
        self._repeat_s = first_repeat_s

    def failed(self, err: BaseException) -> str:
        """Count and (with back-off) log one failed attempt; return its reason."""
        reason = failure_reason(err)
        self._note(reason, _detail(err))
        return reason

    def refused(self) -> None:
        """Count an attempt the broker answered with a refusal (CONNACK); not logged here.

        The daemon logs a refusal itself when its ``on_connect`` sees one.
        """
        self.counts["broker_refused"] += 1

    def connected(self) -> None:
        """The broker accepted a connection: say so if attempts had failed, and start over."""
        if self._reason is not None:
            log.info(
                "reached %s again after %d failed attempts over %.0f s",
                self.endpoint,
                self._run_attempts,
                self._clock() - self._run_started,
            )
        self._reason = None
        self._run_attempts = 0

    def _note(self, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        now = self._clock()
        summary, advice = _ADVICE[reason]
        if self._reason is None:
            self._run_started, self._run_attempts = now, 0
        self._run_attempts += 1
        if reason != self._reason:
            self._reason, self._repeat_s = reason, self._first_repeat_s
            self._next_report = now + self._repeat_s
            log.warning(
                "cannot connect to %s: %s (%s); %s; retrying",
                *(self.endpoint, summary, detail, advice),
            )
        elif now >= self._next_report:
            self._repeat_s = min(2 * self._repeat_s, self._max_repeat_s)
            self._next_report = now + self._repeat_s
            log.warning(
                "still cannot connect to %s after %d attempts over %.0f s: %s (%s); %s; "
                "next report in %.0f s unless the reason changes",
                *(self.endpoint, self._run_attempts, now - self._run_started, summary),
                *(detail, advice, self._repeat_s),
            )


def failure_reason(err: BaseException) -> str:
    """The reason of :data:`CONNECT_FAILURE_REASONS` that a failed connect's error shows."""
    if isinstance(err, ssl.SSLCertVerificationError):
        code = err.verify_code
        return "hostname_mismatch" if code in _HOSTNAME_MISMATCH else "certificate_untrusted"
    if isinstance(err, ssl.CertificateError):  # paho's own host name check
        return "hostname_mismatch"
    if isinstance(err, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionResetError):
        return "connection_closed"
    if isinstance(err, BrokenPipeError | ConnectionAbortedError):
        return "connection_closed"
    if isinstance(err, ssl.SSLError):
        return "tls_error"
    if isinstance(err, socket.gaierror):
        return "name_not_resolved"
    if isinstance(err, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(err, OSError) and err.errno in _UNREACHABLE:
        return "unreachable"
    return "other"


def _detail(err: BaseException) -> str:
    if isinstance(err, ssl.SSLCertVerificationError) and err.verify_message:
        return str(err.verify_message)
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__
