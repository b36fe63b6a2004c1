"""What a flush decided, onto MQTT: alert events, retained states, denoised signals (shell).

:class:`Outputs` takes the pipeline's :class:`~aewatch.core.pipeline.Scored` results (one
per model) and publishes, per asset, each alert event on its alert topic, the asset's
state (signed with the daemon's :class:`~aewatch.daemon.state_key.StateKey`, retained) on
its state topic and, when asked, the denoised signal. It keeps which assets have an alert
open (``aewatch_alerts_active``) and, with a journal, the publishes the broker has not yet
acknowledged (a journal record is released only once the outputs it led to are taken).

A publish paho refuses is counted, logged at a limited rate and charged to its asset; a
failure on one asset's outputs never skips another's.
"""

from __future__ import annotations

import logging
from typing import Protocol

import paho.mqtt.client as mqtt

from aewatch.config import OutputConfig
from aewatch.core import messages
from aewatch.core.alerts import AlertEvent
from aewatch.core.pipeline import Scored
from aewatch.daemon.asset_errors import AssetErrors
from aewatch.daemon.asset_gauges import AssetGauges
from aewatch.daemon.fleet import ServedModel
from aewatch.daemon.intake import RateLimitedLog
from aewatch.daemon.service_counts import ServiceCounts
from aewatch.daemon.state_key import StateKey

__all__ = ["Outputs", "Publishes"]

log = logging.getLogger("aewatch.daemon")


class Publishes(Protocol):
    """What :class:`Outputs` needs of an MQTT client: paho's ``publish``."""

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> mqtt.MQTTMessageInfo: ...


class Outputs:
    """Publishes a flush's events and signals through ``client``; see the module.

    ``config`` is replaced whole on reload. With ``track_sent`` (a journal) every publish
    paho queued is kept until the broker acknowledged it (:meth:`unacknowledged`).
    """

    def __init__(
        self,
        client: Publishes,
        config: OutputConfig,
        *,
        counts: ServiceCounts,
        asset_errors: AssetErrors,
        asset_gauges: AssetGauges,
        state_key: StateKey | None,
        track_sent: bool,
    ) -> None:
        self.client = client
        self.config = config
        self.counts = counts
        self.asset_errors = asset_errors
        self.asset_gauges = asset_gauges
        self.state_key = state_key
        self._track_sent = track_sent
        self._active: dict[str, str] = {}  # asset -> open alert id, kept by the worker
        self._sent: list[mqtt.MQTTMessageInfo] = []  # outputs not yet seen acknowledged
        self._log = RateLimitedLog(log)

    def publish(self, results: list[Scored[ServedModel]]) -> None:
        """Publish every event and denoised signal; a failure stays with its asset."""
        for scored in results:
            model = scored.model
            self.asset_gauges.note(scored)
            for event in scored.events:
                try:
                    self._publish_event(model, event)
                except Exception as err:  # one asset's outputs must not skip the others'
                    self.asset_errors.note(event.asset, "publish", type(err).__name__, str(err))
            if scored.denoised is not None:
                for one in scored.per_asset():
                    try:
                        self._publish_denoised(one)
                    except Exception as err:
                        reason = type(err).__name__
                        self.asset_errors.note(one.assets[0], "publish", reason, str(err))

    def resumed(self, asset: str, alert_id: str) -> None:
        """Note an open alert resumed from its retained state at start."""
        self._active[asset] = alert_id

    def active_alerts(self) -> int:
        """Alerts raised and not yet resolved."""
        return len(self._active)

    def alerting_assets(self) -> frozenset[str]:
        """The assets with an alert raised and not yet resolved (a copy: any thread)."""
        return frozenset(self._active.copy())  # copy() holds the GIL throughout

    def unacknowledged(self, *, hand_over: bool) -> list[mqtt.MQTTMessageInfo]:
        """The publishes since the last hand-over the broker has not acknowledged yet; with
        ``hand_over`` they are the caller's to watch from now on (worker thread)."""
        sent = [info for info in self._sent if not info.is_published()]
        self._sent = [] if hand_over else sent
        return sent

    def _publish_event(self, model: ServedModel, event: AlertEvent) -> None:
        if event.state == "raised":
            self.counts.alerts_raised += 1
            self._active[event.asset] = event.alert_id
        else:
            self.counts.alerts_resolved += 1
            self._active.pop(event.asset, None)
        alert = messages.alert_message(event, model=model.name, model_version=model.version)
        state = messages.state_message(event, model=model.name, model_version=model.version)
        log.info(
            "alert %s %s: %s on %s, severity %.3g (window error %.4g over %.4g)",
            event.state,
            event.alert_id,
            event.kind,
            ", ".join(f.channel for f in event.findings)
            or (event.contributions[0][0] if event.contributions else "-"),
            event.severity,
            event.peak_score,
            event.threshold,
        )
        self._send(event.asset, self.config.alert_topic_for(event.asset), messages.encode(alert))
        payload = messages.encode(state)
        if self.state_key is not None:
            payload = self.state_key.sign(payload)
        self._send(event.asset, self.config.state_topic_for(event.asset), payload, retain=True)

    def _publish_denoised(self, one: Scored[ServedModel]) -> None:
        """The reconstructed signal of one asset's windows (``one`` holds one asset)."""
        assert one.denoised is not None
        model = one.model
        (asset,), (times, values) = one.assets, one.denoised
        body = messages.denoised_message(
            asset,
            model=model.name,
            model_version=model.version,
            channels=model.bundle.channels,
            timestamps=times,
            values=values,
        )
        self._send(asset, self.config.denoised_topic_for(asset), messages.encode(body))

    def _send(self, asset: str, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=self.config.qos, retain=retain)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.counts.published += 1  # queued by paho; sent when connected
            if self._track_sent:
                self._sent.append(info)  # its readings' records wait for the broker's ack
        else:
            self.counts.publish_failed += 1
            self.asset_errors.count(asset, "publish")
            self._log.warning(
                "publish", "could not publish on %s: %s", topic, mqtt.error_string(info.rc)
            )
