"""Failed connections to a real mosquitto say why: an untrusted certificate, a host name the
certificate is not for, a port where nothing listens, a broker that says no; each counted by
reason and logged once with the endpoint, not once per retry. ``insecure_skip_verify``
connects whatever the certificate, with a warning."""

from __future__ import annotations

import functools
import logging
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from aewatch.config import BrokerConfig, load_config
from aewatch.daemon.connect_failures import CONNECT_FAILURE_REASONS, ConnectFailures
from aewatch.daemon.mqtt import BufferedClient, connect, make_client
from aewatch.daemon.service import Daemon
from tests.polling import wait_until
from tests.shell.conftest import Broker, Certificates, Credentials, StartBroker
from tests.shell.test_secret_redaction import _tiny_bundle

pytestmark = pytest.mark.broker

WAIT_S = 60.0  # generous: paho retries every second here, a loaded machine is slower


@dataclass
class Attempts:
    """A client connecting in the background, and the lines ``aewatch.mqtt`` logged."""

    client: BufferedClient
    is_connected: threading.Event
    records: list[logging.LogRecord] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        failures = self.client.connect_failures
        assert failures is not None
        return {reason: n for reason, n in failures.counts.items() if n}

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == logging.WARNING]

    def wait_failures(self, reason: str, at_least: int = 1) -> None:
        _wait_until(lambda: self.counts.get(reason, 0) >= at_least, f"{at_least} x {reason}")


class _Records(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def tls_broker(start_broker: StartBroker, broker_certificates: Certificates) -> Broker:
    """A TLS mosquitto whose certificate the test CA signed, for IP 127.0.0.1 only."""
    certs = broker_certificates
    settings = [f"certfile {certs.server_cert}", f"keyfile {certs.server_key}"]
    return start_broker("\n".join([*settings, "allow_anonymous true"]), scheme="mqtts")


@contextmanager
def _attempting(url: str, **broker: Any) -> Iterator[Attempts]:
    """A client of ``url`` (retrying every second) connecting in the background."""
    config = BrokerConfig(
        url=url, client_id="connect-failures", reconnect_min_s=1, reconnect_max_s=1, **broker
    )
    logger = logging.getLogger("aewatch.mqtt")
    records: list[logging.LogRecord] = []
    handler, level = _Records(records), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        attempts = Attempts(make_client(config), threading.Event(), records)

        def on_connect(_c: object, _u: object, _f: object, reason: Any, _p: object) -> None:
            if not reason.is_failure:
                attempts.is_connected.set()

        attempts.client.on_connect = on_connect
        connect(attempts.client, config)
        try:
            yield attempts
        finally:
            attempts.client.disconnect()
            attempts.client.loop_stop()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_an_untrusted_certificate_is_logged_once_with_its_reason(tls_broker: Broker) -> None:
    # No ca_file: the system CAs, which never signed the test CA's certificate.
    with _attempting(tls_broker.url) as attempts:
        attempts.wait_failures("certificate_untrusted", at_least=3)
        assert not attempts.is_connected.is_set()
        warnings = attempts.warnings()
    assert set(attempts.counts) == {"certificate_untrusted"}
    # Three attempts a second apart, one line: the next comes after 30 s of the same.
    assert len(warnings) == 1, warnings
    assert f"cannot connect to {tls_broker.url}: certificate not trusted" in warnings[0]
    assert "unable to get local issuer certificate" in warnings[0]
    assert "set broker.tls.ca_file" in warnings[0]


def test_a_certificate_for_another_host_name_is_logged_as_a_mismatch(
    tls_broker: Broker, broker_certificates: Certificates
) -> None:
    url = f"mqtts://localhost:{tls_broker.port}"  # the certificate names 127.0.0.1 only
    tls = {"ca_file": broker_certificates.ca_cert}
    with _attempting(url, tls=tls) as attempts:
        attempts.wait_failures("hostname_mismatch")
        assert not attempts.is_connected.is_set()
        warnings = attempts.warnings()
    assert set(attempts.counts) == {"hostname_mismatch"}
    assert f"cannot connect to {url}: certificate hostname mismatch" in warnings[0]
    assert "'localhost'" in warnings[0]  # OpenSSL's message names the host it checked


def test_insecure_skip_verify_connects_whatever_the_certificate(tls_broker: Broker) -> None:
    # Neither the CA (system CAs only) nor the host name (localhost) would pass a check.
    url = f"mqtts://localhost:{tls_broker.port}"
    with _attempting(url, tls={"insecure_skip_verify": True}) as attempts:
        assert attempts.is_connected.wait(WAIT_S), attempts.warnings()
        warnings = attempts.warnings()
    assert attempts.counts == {}
    assert len(warnings) == 1, warnings
    assert f"TLS VERIFICATION IS OFF for {url}" in warnings[0]


def test_a_port_where_nothing_listens_is_logged_as_refused() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"mqtt://127.0.0.1:{unused.getsockname()[1]}"  # bound, not listening: refused
        with _attempting(url) as attempts:
            attempts.wait_failures("connection_refused", at_least=2)
            warnings = attempts.warnings()
    assert set(attempts.counts) == {"connection_refused"}
    assert len(warnings) == 1, warnings
    assert f"cannot connect to {url}: connection refused" in warnings[0]
    assert "nothing listens on that port" in warnings[0]


def test_a_broker_refusing_the_credentials_is_counted(
    start_broker: StartBroker, broker_credentials: Credentials
) -> None:
    broker = start_broker(
        f"allow_anonymous false\npassword_file {broker_credentials.password_file}"
    )
    with _attempting(broker.url) as attempts:
        attempts.wait_failures("broker_refused", at_least=2)
    assert set(attempts.counts) == {"broker_refused"}


def test_a_broker_reached_again_is_said_and_the_next_failure_logs_afresh(
    tls_broker: Broker, broker_certificates: Certificates
) -> None:
    tls = {"ca_file": broker_certificates.ca_cert}
    with _attempting(tls_broker.url, tls=tls) as attempts:
        assert attempts.is_connected.wait(WAIT_S)
        tls_broker.stop()
        attempts.wait_failures("connection_refused")
        attempts.is_connected.clear()
        tls_broker.restart()
        assert attempts.is_connected.wait(WAIT_S), attempts.warnings()
        lines = [r.getMessage() for r in attempts.records]
    assert any(f"cannot connect to {tls_broker.url}: connection refused" in x for x in lines)
    assert any(f"reached {tls_broker.url} again after" in x for x in lines), lines


def test_the_daemon_exports_the_failures_by_reason(tmp_path: Path, tls_broker: Broker) -> None:
    data = {
        "broker": {"url": tls_broker.url, "client_id": "failures", "reconnect_max_s": 1},
        "inputs": [{"topic": "failures/in/{asset}/{channel}", "payload": "json"}],
        "models": [{"path": str(_tiny_bundle(tmp_path / "m.aew")), "assets": "well-*"}],
        "outputs": {"topic_prefix": "failures"},
        "metrics": {"port": 0},
    }
    config_file = tmp_path / "aewatch.yaml"
    config_file.write_text(yaml.safe_dump(data))
    daemon = Daemon(load_config(config_file))
    daemon.start()
    try:
        assert daemon.status_server is not None
        url = f"http://127.0.0.1:{daemon.status_server.port}/metrics"
        untrusted = 'aewatch_broker_connect_failures_total{reason="certificate_untrusted"}'

        def exported() -> dict[str, float]:
            with urllib.request.urlopen(url, timeout=10) as reply:
                text = reply.read().decode()
            return {
                line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("aewatch_broker_")
            }

        _wait_until(lambda: exported().get(untrusted, 0) >= 1, "a failure exported")
        samples = exported()
    finally:
        daemon.stop()
    listed = {k for k in samples if k.startswith("aewatch_broker_connect_failures_total{")}
    assert listed == {
        f'aewatch_broker_connect_failures_total{{reason="{reason}"}}'
        for reason in CONNECT_FAILURE_REASONS
    }
    assert samples["aewatch_broker_connected"] == 0


def test_back_off_logs_first_on_change_and_then_at_growing_intervals() -> None:
    now = [0.0]
    failures = ConnectFailures("mqtt://broker:1883", clock=lambda: now[0])
    logger = logging.getLogger("aewatch.mqtt")
    records: list[logging.LogRecord] = []
    handler, level = _Records(records), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for second in range(0, 400):  # one refused attempt a second
            now[0] = float(second)
            failures.failed(ConnectionRefusedError(111, "Connection refused"))
        now[0] = 400.0
        failures.failed(TimeoutError("timed out"))  # a new reason: logged at once
        failures.connected()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [r.getMessage() for r in records]
    refused = [x for x in lines if "connection refused" in x]
    # At 0 s, then 30 s, 90 s (30 + 60), 210 s (+120), 450 s would be next: beyond 399.
    assert len(refused) == 4, refused
    assert "after 31 attempts over 30 s" in refused[1]
    assert "after 91 attempts over 90 s" in refused[2]
    assert "after 211 attempts over 210 s" in refused[3]
    assert "cannot connect to mqtt://broker:1883: timed out" in lines[4]
    assert lines[5] == "reached mqtt://broker:1883 again after 401 failed attempts over 400 s"
    assert failures.counts["connection_refused"] == 400
    assert failures.counts["timeout"] == 1


_wait_until = functools.partial(wait_until, timeout_s=WAIT_S)
