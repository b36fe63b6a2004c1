"""What the demo sees of the daemon: its alerts, its status and how far it has scored (shell).

An :class:`OutputWatch` subscribes to the daemon's alert, status and denoised topics on the
demo broker. It prints each alert on one line as it arrives, keeps the alert messages for
the summary, and tracks the newest reconstructed row: the demo turns the denoised output
on so that it can tell when the daemon has scored the replay's last row.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from aewatch.config import OutputConfig
from aewatch.daemon.messages import parse_time
from aewatch.errors import AewatchError

__all__ = ["OutputWatch", "alert_line"]

_POLL_S = 0.2
_TOP_CHANNELS = 3
_MIN_SHARE = 0.005  # shown as at least 1%


class OutputWatch:
    """A subscriber to the daemon's outputs on the demo broker; :meth:`start`, :meth:`close`."""

    def __init__(self, port: int, outputs: OutputConfig) -> None:
        self.port = port
        self.alerts: list[dict[str, Any]] = []  # alert messages in arrival order
        self.statuses: list[str] = []  # status messages in arrival order
        self.scored_through = -math.inf  # newest row the daemon has reconstructed, epoch s
        self._topics = {
            "alert": outputs.alert_topic_for("+"),
            "status": outputs.status_topic_name,
            "denoised": outputs.denoised_topic_for("+"),
        }
        self._status_topic = outputs.status_topic_name
        self._subscribed = threading.Event()
        self._changed = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="aewatch-demo-watch", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect and subscribe; return once the broker granted the subscriptions.

        Raises:
            AewatchError: the broker did not answer within ``timeout_s``.
        """
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise AewatchError(
                f"the demo broker on 127.0.0.1:{self.port} did not grant a subscription "
                f"within {timeout_s:.0f} s; see mosquitto.log in the output folder"
            )

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def decisions(self) -> list[tuple[str, str, float]]:
        """``(alert_id, state, at)`` of each alert so far, ``at`` in epoch seconds."""
        with self._changed:
            return [(a["alert_id"], a["state"], parse_time(a["at"])) for a in self.alerts]

    def wait_status(
        self, status: str, *, timeout_s: float, is_alive: Callable[[], bool] = lambda: True
    ) -> bool:
        """Wait until the daemon's status topic said ``status``; False if not in time."""
        return self._wait(lambda: status in self.statuses, timeout_s=timeout_s, is_alive=is_alive)

    def wait_scored(
        self, timestamp: float, *, timeout_s: float, is_alive: Callable[[], bool]
    ) -> bool:
        """Wait until the daemon reconstructed the row at ``timestamp``; False if not in time."""
        return self._wait(
            lambda: self.scored_through >= timestamp, timeout_s=timeout_s, is_alive=is_alive
        )

    def _wait(
        self, is_done: Callable[[], bool], *, timeout_s: float, is_alive: Callable[[], bool]
    ) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not is_done():
                left = deadline - time.monotonic()
                if left <= 0 or not is_alive():
                    return is_done()
                self._changed.wait(min(left, _POLL_S))
        return True

    # -- paho's network thread ----------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, _flags: object, reason: Any, _p: object
    ) -> None:
        if not reason.is_failure:
            client.subscribe([(topic, 1) for topic in self._topics.values()])

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._changed:
            if msg.topic == self._status_topic:
                self.statuses.append(msg.payload.decode(errors="replace"))
            elif mqtt.topic_matches_sub(self._topics["alert"], msg.topic):
                alert = json.loads(msg.payload)
                self.alerts.append(alert)
                print(alert_line(alert), flush=True)
            elif mqtt.topic_matches_sub(self._topics["denoised"], msg.topic):
                stamps = json.loads(msg.payload)["ts"]
                if stamps:
                    self.scored_through = max(self.scored_through, float(stamps[-1]))
            self._changed.notify_all()


def alert_line(alert: dict[str, Any]) -> str:
    """One line for an alert message: data time, state, id, what looks wrong and where.

    A check's alert names its channels with the reading, what it should read and how many
    noise levels apart; an alert of the window error alone its top channels' shares.

    >>> alert_line({"at": "2026-01-08T22:23:00.000Z", "state": "raised", "alert_id": "w@t",
    ...     "peak_score": 9.5, "threshold": 6.3, "kind": "shift",
    ...     "contributions": [{"channel": "whp", "share": 0.81}],
    ...     "channels": [{"channel": "whp", "kind": "shift", "measured": 41.27,
    ...                   "expected": 40.9, "noise_levels": 2.61, "ratio": 1.4}]})
    '  2026-01-08 22:23:00  raised    w@t  shift: whp reads 41.27, expected 40.9 (+2.6 noise)'
    >>> alert_line({"at": "2026-01-08T22:23:00.000Z", "state": "raised", "alert_id": "w@t",
    ...     "peak_score": 9.5, "threshold": 6.3, "kind": "reconstruction", "channels": [],
    ...     "contributions": [{"channel": "whp", "share": 0.81}]})
    '  2026-01-08 22:23:00  raised    w@t  reconstruction: whp 81%  peak 9.5 / threshold 6.3'
    """
    at = alert["at"].replace("T", " ")[:19]
    kind = alert.get("kind") or "reconstruction"
    head = f"  {at}  {alert['state']:<8}  {alert['alert_id']}  {kind}: "
    if kind != "reconstruction" and alert.get("channels"):
        return head + "; ".join(_finding(f) for f in alert["channels"][:_TOP_CHANNELS])
    top = ", ".join(
        f"{c['channel']} {c['share']:.0%}"
        for c in alert["contributions"][:_TOP_CHANNELS]
        if c["share"] is not None and c["share"] >= _MIN_SHARE
    )
    return (
        f"{head}{top or '-'}  "
        f"peak {_number(alert['peak_score'])} / threshold {_number(alert['threshold'])}"
    )


def _finding(finding: dict[str, Any]) -> str:
    levels = finding["noise_levels"]
    apart = "" if levels is None else f" ({levels:+.1f} noise)"
    if finding["kind"] == "noise":
        apart = "" if levels is None else f" (residual {levels:.1f}x its usual spread)"
    return (
        f"{finding['channel']} reads {_reading(finding['measured'])}, "
        f"expected {_reading(finding['expected'])}{apart}"
    )


def _reading(value: float | None) -> str:
    """A reading in the plant's units: four significant digits, never an exponent."""
    if value is None:
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
