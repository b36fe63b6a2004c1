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

from aewatch.commands.alert_text import alert_line
from aewatch.config import OutputConfig
from aewatch.core.messages import parse_time
from aewatch.errors import AewatchError

__all__ = ["OutputWatch"]

_POLL_S = 0.2


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
