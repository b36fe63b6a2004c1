"""The processes ``bench/throughput/run.py`` measures and drives, each one its own process.

:class:`Broker` is a private mosquitto (loopback, free port, no queue limits) stopped by
its PID. A :class:`Contender` is a subscriber under test: :class:`Daemon` runs
``python -m aewatch run --config FILE`` with a config written for the case and reads its
counts from ``/metrics``; :class:`Script` runs one of ``consumers.py`` and reads
its JSON reports. :class:`Publisher` runs ``publisher.py`` on one plan. CPU
(``utime + stime``) and memory (``VmRSS``, ``VmHWM``) come from ``/proc/PID``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import numpy as np
import yaml
from publisher import Plan

__all__ = [
    "Broker",
    "Contender",
    "Daemon",
    "Publisher",
    "Samples",
    "Script",
    "messages_in",
    "stop_process",
]

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
POLL_S = 0.25  # /metrics polls of a running aewatch; each costs it a little CPU
BEHIND_AFTER_S = 1.5  # a paced run is given up after this long when the consumer is
BEHIND_SHARE = 0.7  # ... further behind than this share of what was sent
SETTLE_S = 3.0  # a consumer whose counts stop short for this long has lost messages
_TICK = os.sysconf("SC_CLK_TCK")

Samples = list[tuple[float, dict[str, float]]]  # (monotonic s, counts) polls of a run


class Broker:
    """A private mosquitto on a free loopback port with no queue limits; stopped by PID."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        config = folder / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            *(["user root"] if os.geteuid() == 0 else []),
        ]
        config.write_text("\n".join(lines) + "\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with (folder / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        _wait_listening(self.port, self.process)

    def stop(self) -> None:
        """SIGTERM by PID, then wait."""
        stop_process(self.process)


class Contender:
    """A subscriber under test, in its own process."""

    name: str
    prefix: str
    warm_prefix: str  # where json_multi rows go (the warm-up), for the same assets
    process: subprocess.Popen[bytes]
    next_slot: int

    def usage(self) -> tuple[float, float, float]:
        """(CPU seconds, RSS MB, peak RSS MB) of the process so far."""
        return _cpu_s(self.process.pid), *_memory_mb(self.process.pid)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Return once the contender is subscribed; raise RuntimeError if it is not in time."""
        raise NotImplementedError

    def totals(self) -> dict[str, float]:
        """Its counts so far (``messages``, and what else it reports)."""
        raise NotImplementedError

    def finish(
        self, before: dict[str, float], messages: int, publisher: Publisher
    ) -> tuple[float, dict[str, float], Samples]:
        """Wait until ``messages`` more have been handled; (end time, totals, samples)."""
        raise NotImplementedError

    def stop(self) -> None:
        """SIGTERM by PID, then wait (SIGKILL after 20 s)."""
        stop_process(self.process)


class Daemon(Contender):
    """``python -m aewatch run`` with a config written for the case (see ``daemon_config``)."""

    def __init__(
        self,
        folder: Path,
        *,
        broker: Broker,
        bundle: Path,
        payload: str,
        qos: int,
        limits: dict[str, float],
        protocol: str,
    ) -> None:
        self.name, self.prefix, self.warm_prefix, self.next_slot = "aewatch", "d", "w", 0
        folder.mkdir(parents=True, exist_ok=True)
        self.metrics_port = _free_port()
        self.config = _daemon_config(
            folder,
            broker_port=broker.port,
            metrics_port=self.metrics_port,
            bundle=bundle,
            payload=payload,
            qos=qos,
            limits=limits,
            protocol=protocol,
        )
        with (folder / "aewatch.log").open("ab") as log:
            self.process = subprocess.Popen(
                [PYTHON, "-m", "aewatch", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Poll ``/readyz`` until it answers 200 (connected, subscribed, models loaded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"aewatch exited; see {self.config.parent}/aewatch.log")
            try:
                with urllib.request.urlopen(self._url("/readyz"), timeout=1) as reply:
                    if reply.status == 200:
                        time.sleep(0.3)  # the SUBSCRIBE goes out just before ready
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("aewatch did not become ready")

    def totals(self) -> dict[str, float]:
        """The counts the bench needs, from ``/metrics``."""
        with urllib.request.urlopen(self._url("/metrics"), timeout=5) as reply:
            return _parse_metrics(reply.read().decode())

    def finish(
        self, before: dict[str, float], messages: int, publisher: Publisher
    ) -> tuple[float, dict[str, float], Samples]:
        """Poll ``/metrics`` until every message came, every reading is placed or dropped and
        the last windows are scored; the end is when ``aligned`` and ``windows`` reached
        their final counts, interpolated between polls. A paced run it falls far behind is
        given up early (:meth:`Publisher.is_behind`)."""
        samples: Samples = []
        changed_s = time.monotonic()
        while True:
            at = time.monotonic()
            now = _delta(self.totals(), before)
            if samples and now != samples[-1][1]:
                changed_s = at
            settled = (
                now["aligned"] + now["pipeline_drops"] >= now["received"]
                and not now.get("queue")
                and samples
                and now["windows"] == samples[-1][1]["windows"]  # the last batch was scored
            )
            samples.append((at, now))
            if publisher.is_done() and now["messages"] >= messages and settled:
                break
            if publisher.is_behind(int(now["messages"])):
                publisher.abort()  # what is queued would take minutes; the rate is known
                break
            if publisher.is_done() and time.monotonic() - changed_s > 3.0:
                break  # something was lost; report what came
            time.sleep(POLL_S)
        final = samples[-1][1]
        end_s = max(
            _reach_time(samples, "aligned", final["aligned"]),
            _reach_time(samples, "windows", final["windows"]),
        )
        return end_s, final, samples

    def latency(self) -> dict[str, float]:
        """The decision-latency histogram's buckets (cumulative, by upper bound)."""
        with urllib.request.urlopen(self._url("/metrics"), timeout=5) as reply:
            return _latency_buckets(reply.read().decode())

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"


class Script(Contender):
    """A ``consumers.py`` process; reads its JSON reports from stdout."""

    def __init__(
        self,
        kind: str,
        name: str,
        *,
        broker: Broker,
        qos: int,
        bundle: Path,
        protocol: str,
        payload: str = "json",
    ) -> None:
        self.name, self.prefix, self.warm_prefix, self.next_slot = name, kind, kind, 0
        # Sparkplug B: the plans' prefix is the group, under Sparkplug's namespace.
        topic = f"spBv1.0/{kind}/#" if payload == "sparkplug_b" else f"{kind}/#"
        self.process = subprocess.Popen(
            [
                PYTHON,
                str(HERE / "consumers.py"),
                kind,
                *("--port", str(broker.port), "--topic", topic, "--qos", str(qos)),
                *("--client-id", f"bench-{kind}", "--bundle", str(bundle)),
                *("--protocol", protocol),
            ],
            stdout=subprocess.PIPE,
        )
        self.lines: Queue[str] = Queue()
        self._last: dict[str, Any] = {"messages": 0, "readings": 0, "windows": 0}
        threading.Thread(target=self._read, daemon=True).start()

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait for the script's ``ready`` line (printed once subscribed)."""
        if self.lines.get(timeout=timeout_s) != "ready":
            raise RuntimeError(f"{self.name} did not subscribe")

    def totals(self) -> dict[str, float]:
        """The counts of the script's last report."""
        return {k: self._last[k] for k in ("messages", "readings", "windows")}

    def finish(
        self, before: dict[str, float], messages: int, publisher: Publisher
    ) -> tuple[float, dict[str, float], Samples]:
        """Read reports until one counts ``messages`` more; the end is its last message."""
        end_s = 0.0
        while True:
            try:
                report = json.loads(self.lines.get(timeout=5.0 if publisher.is_done() else 60))
            except Empty:
                break  # something was lost; report what came
            if "progress" in report:
                continue
            self._last = report
            end_s = report["last_s"]
            if report["messages"] - before["messages"] >= messages:
                break
        now = _delta(self.totals(), before)
        now["latency"] = self._last.get("latency")
        return end_s, now, []

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.decode().strip())


class Publisher:
    """One ``publisher.py`` process running one plan."""

    def __init__(self, plan: Plan, folder: Path) -> None:
        path = folder / f"plan-{plan.client_id}.json"
        plan.save(path)
        self.process = subprocess.Popen(
            [PYTHON, str(HERE / "publisher.py"), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        if self.process.stdout.readline().strip() != b"ready":
            raise RuntimeError("the publisher did not connect")
        self.result: dict[str, Any] | None = None
        self.messages_per_s = _messages_per_s(plan)
        self.ramp_s = plan.ramp_s  # float32: assets come online over it, half the rate lost
        self.go_s = 0.0

    def go(self) -> None:
        """Start sending."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()
        self.go_s = time.monotonic()

    def is_behind(self, received: int) -> bool:
        """Whether a paced consumer has taken less than ``BEHIND_SHARE`` of what was sent."""
        elapsed = time.monotonic() - self.go_s
        if self.messages_per_s is None or elapsed < BEHIND_AFTER_S + self.ramp_s:
            return False
        if self.is_done():
            return False
        return received < BEHIND_SHARE * (elapsed - self.ramp_s / 2) * self.messages_per_s

    def abort(self) -> None:
        """Stop sending now (SIGTERM); :meth:`wait` then reports the time of the abort."""
        stop_process(self.process)
        self.result = {"first_s": self.go_s, "last_s": time.monotonic(), "aborted": True}

    def is_done(self) -> bool:
        """Whether every packet went out (and, with QoS 1, was acknowledged)."""
        return self.process.poll() is not None

    def wait(self) -> dict[str, Any]:
        """The publisher's report (monotonic first and last send times, counts)."""
        assert self.process.stdout is not None
        if self.result is None:
            self.result = json.loads(self.process.stdout.readline())
            self.process.wait()
        return self.result


def _daemon_config(
    folder: Path,
    *,
    broker_port: int,
    metrics_port: int,
    bundle: Path,
    payload: str,
    qos: int,
    limits: dict[str, float],
    protocol: str,
) -> Path:
    """Write the case's aewatch.yaml: inputs ``d/...`` (and ``w/{asset}`` rows for the
    warm-up), or the Sparkplug B group ``d`` (whose warm-up sends the births), the bench
    model for every asset, defaults elsewhere but ``limits``."""
    topic = "d/{asset}" if payload == "json_multi" else "d/{asset}/{channel}"
    inputs: list[dict[str, Any]] = [{"topic": topic, "payload": payload}]
    if payload == "sparkplug_b":
        inputs = [{"payload": payload, "sparkplug": {"group": "d", "device_asset": "{device}"}}]
    elif payload != "float32_le":
        inputs.append({"topic": "w/{asset}", "payload": "json_multi"})
    config = {
        "broker": {
            "url": f"mqtt://127.0.0.1:{broker_port}",
            "client_id": f"aewatch-bench-{folder.name}",
            "qos": qos,
            "protocol": protocol,
        },
        "inputs": inputs,
        "models": [{"path": str(bundle)}],
        "limits": limits,
        "metrics": {"listen": "127.0.0.1", "port": metrics_port},
        "logging": {"level": "WARNING"},
    }
    if os.environ.get("AEWATCH_BENCH_JOURNAL") == "1":  # at-least-once: the QoS 1 journal
        config["state_dir"] = str(folder / "state")
    path = folder / "aewatch.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


_METRICS = {
    "aewatch_messages_received_total": "messages",
    "aewatch_readings_received_total": "received",
    "aewatch_readings_aligned_total": "aligned",
    "aewatch_windows_scored_total": "windows",
    "aewatch_values_filled_total": "filled",
    "aewatch_slots_dropped_total": "slots_dropped",
    "aewatch_assets_tracked": "assets_tracked",
    "aewatch_assets_warming": "assets_warming",
    "aewatch_queue_readings": "queue",
    "aewatch_internal_errors_total": "internal_errors",
}
_PIPELINE_DROPS = ("late", "unknown_channel", "invalid", "no_model", "too_many_assets")


def _parse_metrics(text: str) -> dict[str, float]:
    """The counts the bench needs from a Prometheus text page."""
    values: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("aewatch_"):
            continue
        name_labels, _, number = line.rpartition(" ")
        name, _, labels = name_labels.partition("{")
        if name in _METRICS:
            values[_METRICS[name]] += float(number)
        elif name == "aewatch_readings_dropped_total":
            reason = labels.split('"')[1]
            values[f"drop:{reason}"] += float(number)
            values["drops"] += float(number)
            if reason in _PIPELINE_DROPS:
                values["pipeline_drops"] += float(number)
        elif name in ("aewatch_decode_errors_total", "aewatch_messages_dropped_total"):
            values["drops"] += float(number)
            values[f"drop:{labels.split(chr(34))[1]}"] += float(number)
        elif name == "aewatch_alerts_total":
            values["alerts"] += float(number)
    for key in ("messages", "received", "aligned", "windows", "drops", "pipeline_drops"):
        values.setdefault(key, 0.0)
    return dict(values)


def _latency_buckets(text: str) -> dict[str, float]:
    buckets: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("aewatch_decision_latency_seconds_bucket{"):
            name_labels, _, number = line.rpartition(" ")
            buckets[name_labels.split('le="')[1].split('"')[0]] = float(number)
    return buckets


def _delta(now: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """Counters minus ``before``; gauges as they are."""
    gauges = ("assets_tracked", "assets_warming", "queue")
    return {k: v if k in gauges else v - before.get(k, 0.0) for k, v in now.items()}


def _reach_time(samples: Samples, key: str, target: float) -> float:
    """When ``samples[key]`` reached ``target``, interpolated at the rate just before."""
    for i, (at, values) in enumerate(samples):
        if values[key] < target:
            continue
        if i < 2:
            return at
        (t0, v0), (t1, v1) = (samples[i - 2][0], samples[i - 2][1][key]), samples[i - 1]
        rate = (v1[key] - v0) / (t1 - t0) if t1 > t0 else 0.0
        if rate <= 0:
            return at
        return min(at, t1 + (target - v1[key]) / rate)
    return samples[-1][0]


def messages_in(plan: Plan) -> int:
    """How many messages ``plan`` sends."""
    channels = len(plan.channels)
    if plan.mode in ("flood", "paced"):
        per_row = channels if plan.payload == "json" else 1
        births = plan.assets if plan.births else 0  # an NBIRTH for each asset's node
        return plan.rows * plan.assets * per_row + births
    if plan.mode == "live":
        per_row = channels if plan.payload == "json" else 1
        return round(plan.duration_s / plan.period_s) * plan.assets * per_row
    span_s = plan.samples * plan.period_s
    rounds = max(1, int(np.ceil(plan.duration_s / span_s)))
    ramp_rounds = plan.ramp_s / span_s  # asset i skips its first int(ramp_rounds * i / n)
    skipped = sum(min(rounds, int(ramp_rounds * i / plan.assets)) for i in range(plan.assets))
    return (rounds * plan.assets - skipped) * channels


def _messages_per_s(plan: Plan) -> float | None:
    """Messages a second a paced plan sends; None for a flood."""
    channels = len(plan.channels)
    per_row = channels if plan.payload == "json" else 1
    if plan.mode == "paced" and plan.rate_per_s:
        return plan.rate_per_s / (channels / per_row)
    if plan.mode == "live":
        return plan.assets * per_row / plan.period_s
    if plan.mode == "float32":
        return plan.assets * channels / (plan.samples * plan.period_s)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError("mosquitto exited at start") from None
            time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on {port}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``process`` by its PID and wait; SIGKILL it after 20 s."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _memory_mb(pid: int) -> tuple[float, float]:
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024
