"""Alerts an earlier run left open, resumed from their retained states at start (shell).

Each asset's state topic holds its last alert event, signed by the daemon's
:class:`~aewatch.daemon.state_key.StateKey` (:mod:`aewatch.daemon.outputs` publishes
them). At start the daemon reads them back; an alert still firing whose signature this
daemon's key verifies resumes under its id, so its next normal run resolves it rather
than a second alert being raised. Any other state (unsigned, a bad signature, unreadable)
is ignored, counted by reason and logged: another client may have planted it.
"""

from __future__ import annotations

import logging

from aewatch.config import Config
from aewatch.core import messages
from aewatch.core.pipeline import Pipeline
from aewatch.daemon.fleet import ServedModel
from aewatch.daemon.mqtt import read_retained
from aewatch.daemon.outputs import Outputs
from aewatch.daemon.service_counts import ServiceCounts
from aewatch.daemon.state_key import StateKey

__all__ = ["believed_state", "resume_alerts"]

log = logging.getLogger("aewatch.daemon")


def resume_alerts(
    config: Config,
    key: StateKey | None,
    pipeline: Pipeline[ServedModel],
    *,
    outputs: Outputs,
    counts: ServiceCounts,
) -> None:
    """Read the retained states back from ``config``'s broker; resume every alert still
    firing that ``key`` signed (any other is ignored, counted and logged)."""
    if key is None:
        log.warning(
            "no state key: retained alert states cannot be told from ones another client "
            "planted, so none is resumed, and alerts left open by an earlier run are "
            "raised again under new ids; set state_dir, or outputs.state_key"
        )
        return
    broker = config.broker
    state_filter = config.outputs.state_topic_for("+")
    retained = read_retained(broker, state_filter, client_id=f"{broker.client_id}-resume")
    if retained is None:
        log.warning(
            "could not read retained alert states from %s; alerts left open by an earlier "
            "run will be raised again under new ids",
            broker.display_url,
        )
        return
    for topic, payload in retained.items():
        open_alert = believed_state(key, topic, payload, counts)
        if open_alert is None:
            continue
        if pipeline.restore_alert(open_alert):
            counts.resumed_alerts += 1
            outputs.resumed(open_alert.asset, open_alert.alert_id)
    if counts.resumed_alerts:
        log.info("resumed %d open alerts", counts.resumed_alerts)


def believed_state(
    key: StateKey, topic: str, payload: bytes, counts: ServiceCounts
) -> messages.OpenAlert | None:
    """The open alert of a retained state signed with ``key``; None when the asset is
    normal or the state is not believed (counted in ``counts`` and logged)."""
    refusal = key.refusal(payload)
    if refusal is not None:
        counts.state_ignored[refusal] += 1
        log.warning(
            "ignoring the retained state on %s: %s with this daemon's state key (%s), so "
            "another client may have put it there; if it is yours from before the key "
            "changed, it is replaced at the asset's next alert event",
            topic,
            "not signed" if refusal == "unsigned" else "its signature does not verify",
            key.source,
        )
        return None
    try:
        return messages.parse_state(payload)
    except ValueError as err:
        counts.state_ignored["unreadable"] += 1
        log.warning("ignoring the retained state on %s: %s", topic, err)
        return None
