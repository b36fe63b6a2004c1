"""``ExecReload=`` of aewatch.service: SIGHUP the daemon, return once its reload is done.

systemd 252 ends a reload job when the ``ExecReload=`` command exits, and has no
``Type=notify-reload``; ``kill -HUP $MAINPID`` would return before the daemon re-read
anything. This helper reads the daemon's reload counters (``aewatch_reloads_total``,
labels ``result="ok"`` and ``"failed"``) from the metrics endpoint named in the config
file, sends SIGHUP to ``--pid``, and polls until one of them goes up. Exit status: 0, the
new configuration and bundles serve; 1, the daemon kept the old ones (its log says why),
did not answer within ``--timeout``, or its counters could not be read. It needs only
the standard library and PyYAML, so it runs on the daemon's own interpreter, and it is
installed as ``/opt/aewatch/libexec/aewatch-reload``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["ReloadCounts", "main", "metrics_url", "read_counts"]

DEFAULT_LISTEN = "127.0.0.1"  # MetricsConfig's defaults
DEFAULT_PORT = 9108
POLL_S = 0.2
_SAMPLE = re.compile(r'^aewatch_reloads_total\{result="(ok|failed)"\}\s+(\S+)', re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ReloadCounts:
    """The daemon's reloads since it started, by result.

    >>> ReloadCounts(ok=2, failed=0).after(ReloadCounts(ok=1, failed=0))
    'ok'
    """

    ok: int
    failed: int

    def after(self, before: ReloadCounts) -> str | None:
        """``"failed"``/``"ok"`` when a reload finished since ``before``, else None."""
        if self.failed > before.failed:
            return "failed"
        if self.ok > before.ok:
            return "ok"
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Reload the daemon ``--pid``; return the exit status (0 when the reload served)."""
    args = _parser().parse_args(argv)
    try:
        url = args.metrics_url or metrics_url(args.config)
        before = read_counts(url)
    except (OSError, ValueError) as err:
        return _fail(
            f"cannot read the daemon's reload counters ({err}), so not reloading; a change "
            "to metrics.listen or metrics.port takes effect only at `systemctl restart`"
        )
    try:
        os.kill(args.pid, signal.SIGHUP)
    except OSError as err:
        return _fail(f"cannot signal the daemon (pid {args.pid}): {err}")
    result = _wait_for_reload(url, before, timeout_s=args.timeout)
    if result == "ok":
        print(f"aewatch-reload: pid {args.pid} serves the new configuration")
        return 0
    if result == "failed":
        return _fail(
            "the daemon rejected the new configuration or a bundle and keeps serving the "
            "old ones; `journalctl -u aewatch` says why (`aewatch check-config` checks a file)"
        )
    return _fail(f"no reload result from {url} within {args.timeout:.0f} s")


def metrics_url(config_file: Path) -> str:
    """The ``/metrics`` URL of the daemon running ``config_file`` (its metrics section).

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not YAML, or its metrics.port is 0 (a port nobody can know).
    """
    try:
        data = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{config_file} is not valid YAML: {err}") from err
    metrics = data.get("metrics") if isinstance(data, dict) else None
    metrics = metrics if isinstance(metrics, dict) else {}
    listen = str(metrics.get("listen", DEFAULT_LISTEN))
    try:
        port = int(metrics.get("port", DEFAULT_PORT))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{config_file} has metrics.port: {metrics.get('port')!r}") from err
    if port == 0:
        raise ValueError(f"{config_file} has metrics.port: 0; set a fixed port to reload")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen, listen)
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


def read_counts(url: str, timeout_s: float = 5.0) -> ReloadCounts:
    """The reload counters at ``url``.

    Raises:
        OSError: the endpoint does not answer (URLError is an OSError).
        ValueError: the page has no ``aewatch_reloads_total`` samples.
    """
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode("utf-8", errors="replace")
    found = {label: int(float(value)) for label, value in _SAMPLE.findall(text)}
    if set(found) != {"ok", "failed"}:
        raise ValueError(f"{url} has no aewatch_reloads_total samples; is it aewatch?")
    return ReloadCounts(ok=found["ok"], failed=found["failed"])


def _wait_for_reload(url: str, before: ReloadCounts, *, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        try:
            result = read_counts(url).after(before)
        except (OSError, ValueError):
            continue  # busy reloading; the next poll may answer
        if result is not None:
            return result
    return None


def _fail(message: str) -> int:
    print(f"aewatch-reload: {message}", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aewatch-reload",
        description="Send SIGHUP to an aewatch daemon and wait until it has reloaded.",
    )
    parser.add_argument("--pid", type=int, required=True, help="the daemon ($MAINPID)")
    parser.add_argument(
        "--config", type=Path, required=True, metavar="FILE", help="its config file"
    )
    parser.add_argument(
        "--timeout", type=float, default=100.0, metavar="S", help="seconds to wait (100)"
    )
    parser.add_argument(
        "--metrics-url", metavar="URL", help="the daemon's /metrics, instead of the config's"
    )
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
