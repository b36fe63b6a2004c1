"""What the service itself counts beside its stages (shell): alerts, publishes, broker
sessions, reloads, retained states and the journal.

:class:`ServiceCounts` is written by the daemon's threads (each field by one of them) and
read by ``/metrics`` through ``copy()``; :mod:`aewatch.daemon.metrics`
says which metric each becomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aewatch.core.counts import Counts
from aewatch.daemon.state_key import IGNORED_REASONS

__all__ = ["ServiceCounts"]


@dataclass(slots=True)
class ServiceCounts(Counts):
    """The service's own counters since it started.

    ``alerts_raised``, ``alerts_resolved``: alert events published. ``published``,
    ``publish_failed``: messages handed to the MQTT client, and those it refused.
    ``connects``, ``disconnects``: broker sessions. ``resumed_alerts``: open alerts resumed
    from their retained states at start; ``state_ignored``: retained states not resumed, by
    reason (``IGNORED_REASONS``). ``reloads_ok``, ``reloads_failed``: SIGHUP reloads.
    ``internal_error``: bugs caught and survived. ``journal_failed``: QoS 1 messages
    acknowledged without a journal record; ``replayed``: messages replayed from the journal
    at start; ``held``: QoS 1 messages that waited, unacknowledged, for room in the queue.
    """

    alerts_raised: int = 0
    alerts_resolved: int = 0
    published: int = 0
    publish_failed: int = 0
    connects: int = 0
    disconnects: int = 0
    resumed_alerts: int = 0
    reloads_ok: int = 0
    reloads_failed: int = 0
    internal_error: int = 0
    journal_failed: int = 0
    replayed: int = 0
    held: int = 0
    state_ignored: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(IGNORED_REASONS, 0),
        metadata={"flat": "state_ignored"},
    )
