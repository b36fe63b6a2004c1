"""``aewatch run``: the long-running service wiring MQTT, the pipeline and the outputs (shell).

Two threads do the work. paho's network thread runs :class:`Intake` in ``on_message``
(route, decode, queue; never scoring, so keepalives never starve). The scoring worker
takes everything queued, feeds it to the :class:`Pipeline`, and flushes the waiting
windows as one batch per model when ``limits.batch_size`` windows wait or the oldest has
waited ``limits.max_wait_ms``: a busy daemon scores big batches (cheap per window), a quiet
one decides within the wait. It then publishes alerts, retained per-asset state and, if
asked, the denoised signal.

Start: read back the retained alert states (open alerts whose state the daemon's
:class:`~aewatch.daemon.state_key.StateKey` signed resume under their ids), connect
with a Last Will ``offline``, subscribe in ``on_connect`` (so a reconnect resubscribes),
publish ``online``. Stop: stop taking messages (those not yet acknowledged stay with the
broker's persistent session and come again after a restart), drain the queue and the
waiting windows within a deadline, publish ``stopped``, disconnect.

With ``state_dir`` set, a QoS 1 message is acknowledged only once its readings are queued
and written to the :class:`~aewatch.daemon.journal.Journal` (what a full queue has no room
for waits, unacknowledged, so the broker holds the rest back), and the worker releases a
record once its readings are done with; a start replays what was not released
(:class:`~aewatch.daemon.ledger.Ledger` keeps that account).

The parts it wires: :class:`Intake` (network thread), :class:`Pipeline` (worker),
:class:`~aewatch.daemon.outputs.Outputs` (alerts, states and signals onto MQTT),
:func:`~aewatch.daemon.resume.resume_alerts` (at start), the metrics it reads into one
:class:`~aewatch.daemon.metrics.MetricsSnapshot` per scrape.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from aewatch.config import Config, load_config
from aewatch.core import messages
from aewatch.core.pipeline import Pipeline
from aewatch.daemon.asset_errors import AssetErrors
from aewatch.daemon.asset_gauges import AssetGauges
from aewatch.daemon.checkpoint import Checkpoints
from aewatch.daemon.fleet import Fleet, ServedModel, load_fleet
from aewatch.daemon.intake import Intake, RateLimitedLog, ReadingQueue
from aewatch.daemon.ledger import Ledger, open_journal
from aewatch.daemon.liveness import ScoringLiveness
from aewatch.daemon.metrics import (
    BATCH_BUCKETS,
    LATENCY_BUCKETS_S,
    Buckets,
    JournalFigures,
    MetricsSnapshot,
    ModelFigures,
    StatusServer,
    metrics_page,
)
from aewatch.daemon.mqtt import BufferedClient, Publish, Will, connect, make_client
from aewatch.daemon.outputs import Outputs
from aewatch.daemon.resume import resume_alerts
from aewatch.daemon.service_counts import ServiceCounts
from aewatch.daemon.state_key import open_state_key
from aewatch.errors import AewatchError
from aewatch.model.scorer import set_inference_threads

__all__ = ["Daemon"]

log = logging.getLogger("aewatch.daemon")

_IDLE_WAIT_S = 0.5
_STALL_S = 60.0  # /healthz fails when the worker has not come round its loop for this long
_RELOAD_WAIT_S = 60.0


class Daemon:
    """One running service for ``config``; :meth:`start`, then :meth:`stop`.

    ``fleet`` defaults to loading the configured bundles (raising ``BundleError`` when
    one is unusable, before anything connects). ``client`` defaults to one made from
    ``config.broker`` (:func:`~aewatch.daemon.mqtt.make_client`) with the Last Will
    ``offline`` on the status topic and manual acknowledgements, which the at-least-once
    path needs; a client handed in must be made that way too, and is not yet connected.
    """

    def __init__(
        self,
        config: Config,
        *,
        fleet: Fleet | None = None,
        client: BufferedClient | None = None,
        device: str = "cpu",
        config_path: Path | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.device = device
        self.fleet = fleet or load_fleet(
            config.models, device=device, batch_size=config.limits.batch_size
        )
        limits = config.limits
        self.queue = ReadingQueue(limits.queue_size)
        self.asset_errors = AssetErrors(log)  # aewatch_asset_errors_total{asset,stage}
        self.intake = Intake(config, self.fleet, self.queue, errors=self.asset_errors)
        self.pipeline = Pipeline(
            self.fleet,
            max_assets=limits.max_assets,
            max_late_s=limits.max_late_s,
            max_gap_periods=limits.max_gap_periods,
            with_denoised=config.outputs.denoised,
            clock_tolerance_s=limits.clock_tolerance_s,
        )
        self.counts = ServiceCounts()
        self.batch_windows = Buckets(BATCH_BUCKETS)
        self.inference_s = Buckets(LATENCY_BUCKETS_S)
        self.latency_s = Buckets(LATENCY_BUCKETS_S)
        self.asset_gauges = AssetGauges()  # each tracked asset's newest decision
        self._beat = time.monotonic()  # the worker's last round
        self.liveness = ScoringLiveness()  # readings in, windows scored: told by the worker
        self._reload: tuple[Config, Fleet] | None = None
        self._reloaded = threading.Event()
        self._reload_ok = False
        self.last_reload_failed = False  # for aewatch_config_last_reload_successful
        self.status_server: StatusServer | None = None
        self.is_connected = threading.Event()
        self._is_closing = False
        self._intake_lock = threading.Lock()  # closing never falls between check and queue
        self._stop_worker = threading.Event()
        self._worker = threading.Thread(target=self._work, name="aewatch-worker", daemon=True)
        self._log = RateLimitedLog(log)
        self.client = client or make_client(
            config.broker,
            will=Will(config.outputs.status_topic_name, messages.STATUS_OFFLINE, qos=1),
            manual_ack=True,
        )
        self.client.max_queued_messages_set(limits.queue_size)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publishes = self._on_publishes
        # At-least-once (state_dir set): every QoS 1 message queued is journaled before it
        # is acknowledged; a record is released once its readings are done with.
        self.journal = open_journal(config.state_dir)
        # Signs the retained states; a start resumes only states it signed (read at start).
        self.state_key = open_state_key(config.outputs.state_key, config.state_dir)
        self.outputs = Outputs(
            self.client,
            config.outputs,
            counts=self.counts,
            asset_errors=self.asset_errors,
            asset_gauges=self.asset_gauges,
            state_key=self.state_key,
            track_sent=self.journal is not None,
        )
        self.ledger = (
            None
            if self.journal is None
            else Ledger(self.journal, self.intake, self.counts, self._intake_lock)
        )
        # Each asset's decisions' state, saved now and then and at a clean stop (worker).
        self.checkpoints = (
            None
            if self.journal is None or self.ledger is None
            else Checkpoints(
                self.journal,
                self.pipeline,
                functools.partial(self.ledger.unacknowledged, self.outputs),
            )
        )
        # Set while the journal's replay is ingested, skipping the windows decided before
        # the newest checkpoint (the worker clears it once it has taken every record).
        self._is_replaying = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Resume open alerts, connect in the background and start the scoring worker."""
        broker = self.config.broker
        log.info(
            "starting: broker %s as %s, models %s",
            broker.display_url,
            broker.client_id,
            ", ".join(f"{m.name} {m.version} for {m.pattern}" for m in self.fleet.models),
        )
        metrics = self.config.metrics
        self.status_server = StatusServer(
            metrics.listen,
            metrics.port,
            metrics_page(self.metrics_snapshot),
            is_alive=self.is_alive,
            is_ready=self.is_ready,
        )
        self.status_server.start()
        log.info("metrics on http://%s:%d/metrics", metrics.listen, self.status_server.port)
        resume_alerts(
            self.config, self.state_key, self.pipeline, outputs=self.outputs, counts=self.counts
        )
        if self.journal is None:
            log.warning(
                "no state_dir: QoS 1 readings are acknowledged on receipt, so a crash loses "
                "those not yet scored; set state_dir to a folder only this daemon writes"
            )
        if self.journal is not None:
            self._is_replaying = True  # until the worker has taken every replayed record
            self._go_on(self.journal.read_checkpoint())
        self._worker.start()
        if self.ledger is not None:
            self.ledger.replay(self._worker.is_alive)
        connect(self.client, broker)

    def is_alive(self) -> tuple[bool, str]:
        """Whether the scoring worker runs, comes round its loop and scores (``/healthz``).

        Not alive when the worker has stopped, has not come round for ``_STALL_S``, or
        readings keep arriving while windows wait (or rounds fail) with none scored for
        ``SCORING_STALL_S`` (:class:`~aewatch.daemon.liveness.ScoringLiveness`).
        """
        if not self._worker.is_alive():
            return False, "scoring worker not running"
        now = time.monotonic()
        stalled_s = now - self._beat
        if stalled_s > _STALL_S:
            return False, f"scoring worker stalled for {stalled_s:.0f} s"
        return self.liveness.check(now)

    def is_ready(self) -> tuple[bool, str]:
        """Whether readings can be scored now: connected, models loaded (``/readyz``)."""
        if self._is_closing:
            return False, "stopping"
        if not self.fleet.models:
            return False, "no model loaded"
        if not self.is_connected.is_set():
            return False, f"not connected to {self.config.broker.display_url}"
        alive, why = self.is_alive()
        return alive, "ready" if alive else why

    def metrics_snapshot(self) -> MetricsSnapshot:
        """What ``/metrics`` shows now, read from the stages and the service (any thread)."""
        journal = self.journal
        return MetricsSnapshot(
            intake=self.intake.counts.copy(),
            pipeline=self.pipeline.counts.copy(),
            own=self.counts.copy(),
            sparkplug_events=self.intake.sparkplug.events.copy(),
            asset_errors=list(self.asset_errors.counts()),
            assets_tracked=self.pipeline.assets,
            assets_warming=self.pipeline.warming,
            batch_windows=self.batch_windows,
            inference_s=self.inference_s,
            latency_s=self.latency_s,
            alerts_active=self.outputs.active_alerts(),
            is_connected=self.is_connected.is_set(),
            connect_failures=self.client.connect_failures,
            queue_readings=len(self.queue),
            queue_capacity=self.queue.max_readings,
            last_reload_failed=self.last_reload_failed,
            journal=None
            if journal is None
            else JournalFigures(
                journal.records_kept(),
                journal.bytes_kept(),
                journal.dropped,
                0 if self.checkpoints is None else self.checkpoints.written,
                0 if self.checkpoints is None else self.checkpoints.failed,
            ),
            models=[
                ModelFigures(m.name, m.version, m.pattern, m.bundle.threshold.value)
                for m in self.fleet.models
            ],
            asset_gauges=self.asset_gauges,
            alerting_assets=self.outputs.alerting_assets(),
        )

    def reload(self, timeout_s: float = _RELOAD_WAIT_S) -> bool:
        """Re-read the config file and every bundle; swap them in whole, or keep the old.

        A transaction: the new configuration and every model are loaded and checked here,
        off the worker, in full (each model scores and decides one synthetic window on the
        configured device, :func:`~aewatch.daemon.fleet.load_fleet`) before anything is
        swapped. The worker then swaps them in between two batches, so no reading is lost
        and no window is scored half old, half new; should the swap itself fail, every
        asset goes back to its old model. A failure at any step is logged and counted and
        leaves the old set serving. Broker and metrics settings need a restart; a change
        to them is logged and ignored. Returns True when the new configuration serves.
        """
        if self.config_path is None:
            log.error("reload: this daemon was not started from a config file")
            self.counts.reloads_failed += 1
            self.last_reload_failed = True
            return False
        try:
            config = load_config(self.config_path)
            fleet = load_fleet(
                config.models, device=self.device, batch_size=config.limits.batch_size
            )
        except AewatchError as err:
            self.counts.reloads_failed += 1
            self.last_reload_failed = True
            log.error("reload failed, still serving the old configuration and models: %s", err)
            return False
        except Exception:  # a bug must not end the service; the old models keep serving
            self.counts.reloads_failed += 1
            self.last_reload_failed = True
            log.exception("reload failed unexpectedly, still serving the old configuration")
            return False
        for section in ("broker", "metrics"):
            if getattr(config, section) != getattr(self.config, section):
                log.warning("reload: %s settings changed; they take effect at restart", section)
        config = config.model_copy(
            update={"broker": self.config.broker, "metrics": self.config.metrics}
        )
        self._reloaded.clear()
        self._reload_ok = False
        self._reload = (config, fleet)
        self.queue.wake()
        if not self._reloaded.wait(timeout_s):
            self.counts.reloads_failed += 1
            self.last_reload_failed = True
            log.error("reload: the worker did not take the new models within %.0f s", timeout_s)
            return False
        return self._reload_ok

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Drain and disconnect within ``timeout_s``; True when everything queued was scored."""
        deadline = time.monotonic() + timeout_s
        with self._intake_lock:
            self._is_closing = True  # messages from now on stay unacknowledged, with the broker
        self._stop_worker.set()
        self.queue.wake()
        self._worker.join(max(0.0, deadline - time.monotonic()))
        drained = not self._worker.is_alive()
        if not drained:
            log.error(
                "stop: the worker did not drain within %.1f s; %d readings left",
                timeout_s,
                len(self.queue),
            )
        if self.is_connected.is_set():
            info = self.client.publish(
                self.config.outputs.status_topic_name,
                messages.STATUS_STOPPED,
                qos=1,
                retain=True,
            )
            _wait(info, max(0.1, deadline - time.monotonic()))
        if self.ledger is not None and drained:
            # The worker's last pass may have found outputs not yet acknowledged; the broker
            # has taken them by the time it took the status behind them: release what is
            # done, so the next start replays only what the next windows need.
            self.ledger.settle(self.ledger.marked, self.pipeline, self.outputs)
            if self.checkpoints is not None and not self._is_replaying:
                self.checkpoints.final()
        self.client.disconnect()
        self.client.loop_stop()
        if self.journal is not None:
            with self._intake_lock:
                self.journal.close()
        if self.status_server is not None:
            self.status_server.stop()
        log.info("stopped")
        return drained

    # -- network thread -------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, flags: Any, reason: Any, _props: object
    ) -> None:
        if reason.is_failure:
            self._log.warning("connect", "broker refused the connection: %s", reason)
            return
        self.counts.connects += 1
        qos = self.config.broker.qos
        client.subscribe([(source.subscription, int(qos)) for source in self.config.inputs])
        client.publish(
            self.config.outputs.status_topic_name, messages.STATUS_ONLINE, qos=1, retain=True
        )
        self.is_connected.set()
        self._send_commands()  # those asked for while not connected (a replay at start)
        log.info(
            "connected to %s (session %s); subscribed %s",
            self.config.broker.display_url,
            "resumed" if getattr(flags, "session_present", False) else "new",
            ", ".join(source.subscription for source in self.config.inputs),
        )

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: object, _flags: object, reason: Any, _p: object
    ) -> None:
        was_connected = self.is_connected.is_set()
        self.is_connected.clear()
        with self._intake_lock:
            # Not acknowledged: the broker's session sends them again after the reconnect.
            if self.ledger is not None:
                self.ledger.forget_held()
        if was_connected:
            self.counts.disconnects += 1
        if not self._is_closing:
            self._log.warning("disconnect", "lost the broker (%s); reconnecting", reason)

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        publish = Publish(
            message.topic, bytes(message.payload), message.qos, message.mid, message.retain
        )
        with self._intake_lock:
            if self._is_closing:
                return  # not acknowledged: the broker delivers it again to the next session
            if self.ledger is not None:
                done = self.ledger.take([publish])
            else:
                try:
                    self.intake.take(publish.topic, publish.payload)
                except Exception:  # a bug must not kill the network thread; count and go on
                    self.intake.counts.internal_error += 1
                    log.exception("internal error on a message of %s", message.topic)
                done = [publish]
        self._ack(done)
        self._send_commands()

    def _on_publishes(self, found: list[Publish]) -> None:
        """The fast path: every whole QoS 0/1 PUBLISH of one socket read (network thread)."""
        with self._intake_lock:
            if self._is_closing:
                return  # not acknowledged: the broker delivers them again to the next session
            if self.ledger is not None:
                found = self.ledger.take(found)
            else:
                self.intake.take_many([(publish.topic, publish.payload) for publish in found])
        self._ack(found)
        self._send_commands()

    def _ack(self, publishes: Sequence[Publish]) -> None:
        """Acknowledge QoS 1 messages in one write, QoS 2 ones each (any thread)."""
        self.client.ack_many([publish.mid for publish in publishes if publish.qos == 1])
        for publish in publishes:
            if publish.qos == 2:
                self.client.ack(publish.mid, publish.qos)

    def _send_commands(self) -> None:
        """Publish the Sparkplug B commands the intake asked for (rebirth requests): QoS 0,
        not retained, as Sparkplug has them; while not connected they wait (paho would drop
        a QoS 0 message)."""
        if self.is_connected.is_set():
            for topic, payload in self.intake.sparkplug.take_commands():
                self.client.publish(topic, payload, qos=0, retain=False)

    # -- scoring worker ---------------------------------------------------------------

    def _work(self) -> None:
        oldest: float | None = None  # when the oldest waiting window was cut
        threads = 0  # the inference threads set in this thread (the one that scores)
        while True:
            self._beat = time.monotonic()
            limits = self.config.limits
            if limits.inference_threads != threads:  # at the start, and after a reload
                threads = limits.inference_threads
                set_inference_threads(threads)
            max_wait_s = limits.max_wait_ms / 1000.0
            if oldest is None:
                timeout = _IDLE_WAIT_S
            else:
                timeout = max(0.0, oldest + max_wait_s - time.monotonic())
            is_stopping = self._stop_worker.is_set()
            ledger = self.ledger
            marked = 0 if ledger is None else ledger.marked  # queued or taken already
            added = 0 if ledger is None else ledger.added
            items = self.queue.take(0 if is_stopping or self._reload else timeout)
            try:
                if ledger is not None and ledger.has_held:
                    self._admit_room(ledger)
                if items:
                    self.liveness.took(time.monotonic())
                    self.pipeline.ingest(itertools.chain.from_iterable(items))
                    if self.pipeline.clock_steps:
                        self._log_clock_steps()
                    if self.pipeline.unknown_channels:
                        self._log_unknown_channels()
                    if self.pipeline.crowded_channels:
                        self._log_crowded_channels()
                if self._is_replaying and ledger is not None:
                    self._end_replay(ledger, added)
                if self.pipeline.pending and oldest is None:
                    oldest = time.monotonic()
                    self.liveness.waiting(oldest)
                is_due = oldest is not None and (
                    self.pipeline.pending >= limits.batch_size
                    or time.monotonic() - oldest >= max_wait_s
                    or self._reload is not None
                    or (is_stopping and not len(self.queue))
                )
                if is_due:
                    self._flush()
                    oldest = None
                if self._reload is not None and not self.pipeline.pending:
                    self._take_reload(*self._reload)
                if ledger is not None and not self.pipeline.pending:
                    ledger.settle(marked, self.pipeline, self.outputs)
                    if self.checkpoints is not None and not self._is_replaying:
                        self.checkpoints.tick()
            except Exception:  # a bug in one batch must not stop scoring for good
                self.counts.internal_error += 1
                self.liveness.failed(time.monotonic())
                log.exception("internal error in the scoring worker; batch skipped")
                oldest = None
            if is_stopping and not len(self.queue) and not self.pipeline.pending:
                return

    def _end_replay(self, ledger: Ledger, taken: int) -> None:
        """Once the worker has ingested every replayed record (``taken`` records were
        queued before its last take), live readings are decided whatever their times."""
        if ledger.replay_end is None or taken < ledger.replay_end:
            return
        self.pipeline.end_replay()
        self._is_replaying = False
        if ledger.replay_end:
            log.info(
                "replay ingested: %d windows the last run had decided were not decided again",
                self.pipeline.skipped,
            )

    def _go_on(self, note: dict[str, Any]) -> None:
        """Start from the newest checkpoint (:class:`Checkpoints`, a clean stop's or the
        last before a kill): each asset served by the same model goes on from its state,
        and the windows decided before it are not decided again when the journal replays
        their readings."""
        if not note:
            return  # a first start, or none usable
        decided, assets = note.get("decided", {}), note.get("assets", {})
        if not isinstance(decided, dict) or not isinstance(assets, dict):
            log.warning("the checkpoint is not in the form a run leaves; it is ignored")
            return
        restored, unfit = 0, []
        for asset, saved in assets.items():
            model = self.fleet.model_for(asset)
            if model is None or not isinstance(saved, dict) or saved.get("model") != model.version:
                continue  # another model serves it now: it starts afresh
            try:
                restored += self.pipeline.restore_state(asset, saved.get("state", {}))
            except ValueError as err:
                unfit.append(f"{asset} ({err})")
        if unfit:
            log.warning(
                "%d assets start afresh: their saved state does not fit their model, e.g. %s",
                len(unfit),
                unfit[0],
            )
        marks = {
            str(a): float(t)
            for a, t in decided.items()
            if isinstance(t, int | float) and math.isfinite(t)
        }
        if marks:
            self.pipeline.skip_decided(marks)
        log.info(
            "going on from the last checkpoint: %d of %d assets from their saved state",
            restored,
            len(assets),
        )

    def _flush(self) -> None:
        started = time.monotonic()
        results = self.pipeline.flush()
        for failed in self.pipeline.failures:
            self.asset_errors.note(failed.asset, "score", failed.reason, failed.detail)
        done = time.monotonic()
        self.inference_s.observe([done - started])
        if any(len(scored.end_timestamps) for scored in results):
            self.liveness.scored(done)
        now = time.time()
        for scored in results:  # one per model
            self.latency_s.observe(now - scored.end_timestamps)
        self.batch_windows.observe([len(scored.end_timestamps) for scored in results])
        self.outputs.publish(results)

    def _admit_room(self, ledger: Ledger) -> None:
        """Queue the held messages the worker just made room for, and acknowledge them."""
        with self._intake_lock:
            done = [] if self._is_closing else ledger.admit_held()
        self._ack(done)

    def _take_reload(self, config: Config, fleet: Fleet) -> None:
        """Swap in a reload, or count it failed; either way the caller of reload() wakes."""
        try:
            self._swap(config, fleet)
            self._reload_ok = True
        except Exception:
            self.counts.reloads_failed += 1
            self.last_reload_failed = True
            log.exception(
                "reload failed while swapping models; every asset is back on its old model"
            )
        finally:
            self._reload = None
            self._reloaded.set()

    def _swap(self, config: Config, fleet: Fleet) -> None:
        """Serve ``config`` and ``fleet`` from now on (worker thread, nothing pending).

        Raises whatever the pipeline's swap raised, after moving every asset back to the
        old fleet (assets whose windows changed then start them again).
        """
        old_inputs = {source.subscription for source in self.config.inputs}
        old_fleet = self.fleet
        try:
            kept, restarted, dropped = self.pipeline.swap_fleet(fleet)
        except Exception:
            self.pipeline.swap_fleet(old_fleet)
            raise
        self.asset_gauges.keep_served(lambda asset: _name(fleet.model_for(asset)))
        limits = config.limits
        self.pipeline.max_assets = limits.max_assets
        self.pipeline.max_late_s = limits.max_late_s
        self.pipeline.max_gap_periods = limits.max_gap_periods
        self.pipeline.clock_tolerance_s = limits.clock_tolerance_s  # for assets seen from now
        self.pipeline.with_denoised = config.outputs.denoised
        self.queue.max_readings = limits.queue_size
        self.intake.config, self.intake.fleet = config, fleet
        self.outputs.config = config.outputs
        self.config, self.fleet = config, fleet
        new_inputs = {source.subscription for source in config.inputs}
        if self.is_connected.is_set():
            for topic in old_inputs - new_inputs:
                self.client.unsubscribe(topic)
            for topic in new_inputs - old_inputs:
                self.client.subscribe(topic, qos=int(config.broker.qos))
        self.counts.reloads_ok += 1
        self.last_reload_failed = False
        log.info(
            "reloaded: models %s; assets kept %d, restarted %d, dropped %d",
            ", ".join(f"{m.name} {m.version}" for m in fleet.models),
            kept,
            restarted,
            dropped,
        )

    def _log_unknown_channels(self) -> None:
        """Log each asset's channel that no model channel takes, once (the pipeline notes
        each pair once, and at most 1 000 of them)."""
        pairs, self.pipeline.unknown_channels = self.pipeline.unknown_channels, []
        for asset, channel in pairs:
            model = self.fleet.model_for(asset)
            known = ", ".join(model.bundle.channels) if model is not None else "none"
            log.warning(
                "asset %s: readings of channel %r are dropped: model %s has no such channel "
                "(it has %s); rename the channel at the source or in the input's topic, or "
                "retrain with it (counted in aewatch_readings_dropped_total"
                '{reason="unknown_channel"})',
                asset,
                channel,
                _name(model),
                known,
            )

    def _log_crowded_channels(self) -> None:
        """Log each asset's channel published more often than its model's period, once
        (the pipeline notes each pair once, and at most 1 000 of them)."""
        pairs, self.pipeline.crowded_channels = self.pipeline.crowded_channels, []
        for asset, channel in pairs:
            model = self.fleet.model_for(asset)
            period = "its period" if model is None else f"{model.bundle.period_s:g} s"
            log.warning(
                "asset %s: channel %r is published more often than model %s's period "
                "(%s): the first reading of each slot is used and the others are dropped "
                '(counted in aewatch_readings_dropped_total{reason="late"}); train on '
                "history at the rate the channel is published, or publish at the model's "
                "period",
                asset,
                channel,
                _name(model),
                period,
            )

    def _log_clock_steps(self) -> None:
        """Log the clock steps the pipeline followed, at most one per asset every 10 s."""
        steps, self.pipeline.clock_steps = self.pipeline.clock_steps, []
        for asset, at, step_s in steps:
            self._log.warning(
                f"clock:{asset}",
                "asset %s: its clock stepped %s by %.0f s, to %s; following the new time",
                asset,
                "back" if step_s < 0 else "forward (or it was silent that long)",
                abs(step_s),
                messages.iso(at),
            )


def _name(model: ServedModel | None) -> str | None:
    return None if model is None else model.name


def _wait(info: mqtt.MQTTMessageInfo, timeout_s: float) -> None:
    # Not connected or the queue is full: the Last Will then says offline.
    with contextlib.suppress(RuntimeError, ValueError):
        info.wait_for_publish(timeout_s)
