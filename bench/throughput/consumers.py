"""The reference subscribers of ``bench/throughput/run.py``, each in its own process.

    python bench/throughput/consumers.py KIND --port PORT --topic FILTER --qos Q [...]

``KIND`` is one of:

* ``noop``: paho-mqtt with an empty ``on_message`` (it only counts); the ceiling of any
  paho-based daemon.
* ``json``: paho-mqtt plus ``json.loads`` of every payload.
* ``proto``: paho-mqtt plus parsing every payload as a Sparkplug B protobuf (the cost of
  reading the bytes alone, before any birth, alias or sequence number is looked at).
* ``naive``: the daemon one writes first: ``json.loads`` per message, a dict per asset
  gathering the channels of the current timestamp, a ``deque`` of rows per asset, and one
  forward pass (``Scorer.score``) per window as soon as it is full, compared with the
  bundle's threshold. It measures its own decision latency (wall clock minus the window's
  newest payload timestamp). Messages on ``PREFIX/ASSET/CHANNEL`` hold one reading
  (``json``), on ``PREFIX/ASSET`` one row (``json_multi``).

All use paho's client with ``--protocol`` (MQTT 5 by default, like the daemon). Each
prints ``ready`` once subscribed and, whenever messages stop for ``IDLE_S`` after a
burst, one JSON line: running totals (``messages``, ``readings``, ``windows``), the
burst's first and last message times (monotonic seconds) and, for ``naive``, the burst's
latency percentiles. During a burst it prints ``{"progress": MESSAGES}`` every
``PROGRESS_S``.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["NaiveDaemon", "main"]

IDLE_S = 0.3
PROGRESS_S = 1.0
LATENCY_SKIP_S = 1.0  # leave out each burst's first second (windows still filling)


@dataclass
class Tally:
    """Counts since start and the current burst's first and last message times."""

    messages: int = 0
    readings: int = 0
    windows: int = 0
    first_s: float | None = None
    last_s: float = 0.0
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (row ts, latency)

    def report(self) -> dict[str, Any]:
        """The line printed after a burst; starts the next burst."""
        line: dict[str, Any] = {
            "messages": self.messages,
            "readings": self.readings,
            "windows": self.windows,
            "first_s": self.first_s,
            "last_s": self.last_s,
        }
        if self.latencies:
            stamps = np.array(self.latencies)
            kept = stamps[stamps[:, 0] >= stamps[0, 0] + LATENCY_SKIP_S, 1]
            if len(kept):
                p50, p99 = np.percentile(kept, [50, 99])
                line["latency"] = {"n": len(kept), "p50_s": p50, "p99_s": p99}
        self.first_s = None
        self.latencies = []
        return line


@dataclass
class _Asset:
    ts: float | None = None
    row: dict[str, float] = field(default_factory=dict)
    rows: deque[list[float]] = field(default_factory=deque)
    is_firing: bool = False


class NaiveDaemon:
    """Per-message JSON, a deque per asset, one forward pass per window."""

    def __init__(self, bundle_path: Path, *, tally: Tally) -> None:
        # Imported here: the paho-only consumers must not carry torch in their memory.
        from aewatch.model.bundle import ModelBundle  # noqa: PLC0415

        bundle = ModelBundle.load(bundle_path)
        self.scorer = bundle.scorer()
        self.threshold = bundle.threshold.value
        self.channels = bundle.channels
        self.window_len = bundle.window_len
        self.tally = tally
        self.alerts = 0
        self.assets: dict[str, _Asset] = {}

    def take(self, topic: str, payload: bytes) -> None:
        """Parse one message, fill its asset's row and score every window that fills."""
        obj = json.loads(payload)
        parts = topic.split("/")
        asset = self.assets.get(parts[1])
        if asset is None:
            asset = self.assets[parts[1]] = _Asset(rows=deque(maxlen=self.window_len))
        ts = float(obj["ts"])
        if ts != asset.ts:
            asset.ts, asset.row = ts, {}
        if len(parts) == 2:  # PREFIX/ASSET: json_multi
            asset.row.update(obj["values"])
            self.tally.readings += len(obj["values"])
        else:
            asset.row[parts[2]] = obj["value"]
            self.tally.readings += 1
        if len(asset.row) == len(self.channels):
            asset.rows.append([asset.row[c] for c in self.channels])
            asset.row = {}
            if len(asset.rows) == self.window_len:
                self._score(asset, ts)

    def _score(self, asset: _Asset, ts: float) -> None:
        window = np.array(asset.rows, dtype=np.float32).T[None]  # (1, channels, length)
        error = float(self.scorer.score(window).errors[0])
        is_anomalous = error > self.threshold
        if is_anomalous != asset.is_firing:
            asset.is_firing = is_anomalous
            self.alerts += is_anomalous
        self.tally.windows += 1
        self.tally.latencies.append((ts, time.time() - ts))


def main() -> int:
    """Subscribe, count until SIGTERM, report after every burst."""
    args = _arguments()
    tally = Tally()
    take = _taker(args, tally)

    def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        take(message.topic, message.payload)
        tally.messages += 1
        tally.last_s = now = time.monotonic()
        if tally.first_s is None:
            tally.first_s = now

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        protocol=mqtt.MQTTv5 if args.protocol == "5" else mqtt.MQTTv311,
    )
    client.on_connect = lambda c, *_: c.subscribe(args.topic, qos=args.qos)
    client.on_subscribe = lambda *_: print("ready", flush=True)
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=60)
    signal.signal(signal.SIGTERM, lambda _s, _f: client.disconnect())
    threading.Thread(target=_report_bursts, args=(tally,), daemon=True).start()
    client.loop_forever()
    return 0


def _taker(args: argparse.Namespace, tally: Tally):  # type: ignore[no-untyped-def]
    """What on_message does with a payload besides counting, by kind."""
    if args.kind == "noop":
        return lambda _topic, _payload: None
    if args.kind == "json":

        def parse(_topic: str, payload: bytes) -> None:
            json.loads(payload)

        return parse
    if args.kind == "proto":
        from aewatch.daemon.sparkplug_schema import Payload  # noqa: PLC0415

        def parse_protobuf(_topic: str, payload: bytes) -> None:
            Payload.FromString(payload)

        return parse_protobuf
    return NaiveDaemon(args.bundle, tally=tally).take


def _report_bursts(tally: Tally) -> None:
    reported, progress_s = 0, time.monotonic()
    while True:
        time.sleep(0.05)
        now = time.monotonic()
        if tally.messages != reported and now - tally.last_s > IDLE_S:
            reported = tally.messages
            print(json.dumps(tally.report()), flush=True)
        elif tally.messages != reported and now - progress_s > PROGRESS_S:
            progress_s = now
            print(json.dumps({"progress": tally.messages}), flush=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["noop", "json", "proto", "naive"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True, help="subscription filter")
    parser.add_argument("--qos", type=int, default=0)
    parser.add_argument("--client-id", default="bench-consumer")
    parser.add_argument("--bundle", type=Path, help="model bundle (naive)")
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="5", help="MQTT version")
    return parser.parse_args()


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _ignore)  # the bench stops us with SIGTERM
    raise SystemExit(main())
