"""The JSON the daemon publishes, and the retained state it reads back (the MQTT contract).

Each builder returns a plain ``dict`` ready for ``json.dumps``; ``docs/mqtt.md`` shows one
of each and the tests hold these functions to it. Times are ISO 8601 UTC with milliseconds
and a ``Z``; numbers are JSON numbers (non-finite ones become ``null``).

* **alert** (``alert_topic``, QoS ``outputs.qos``, not retained): one ``raised`` or
  ``resolved`` event.
* **state** (``state_topic``, retained): the asset's alert state after its latest event,
  ``firing`` or ``normal``, signed by the daemon (``signature``). A restarted daemon reads
  these back (:func:`parse_state`) and resumes the open alerts it signed instead of raising
  them again.
* **denoised** (``denoised_topic``): the reconstructed signal of the newest rows.
* **status** (``status_topic``, retained): the bare text ``online``, ``stopped`` or the
  Last Will ``offline``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from aewatch.core.alerts import RECONSTRUCTION, AlertEvent, Finding, OpenAlert
from aewatch.core.alerts import iso_ms as iso  # messages write times as alerts and logs do

__all__ = [
    "SCHEMA_VERSION",
    "STATUS_OFFLINE",
    "STATUS_ONLINE",
    "STATUS_STOPPED",
    "OpenAlert",
    "alert_message",
    "denoised_message",
    "encode",
    "findings_json",
    "iso",
    "parse_state",
    "parse_time",
    "state_message",
]

SCHEMA_VERSION = 1
STATUS_ONLINE = "online"
STATUS_STOPPED = "stopped"
STATUS_OFFLINE = "offline"
_FIRING = "firing"
_NORMAL = "normal"


def parse_time(text: str) -> float:
    """Epoch seconds from :func:`iso`'s text; a time without an offset is UTC.

    >>> parse_time("2026-01-01T00:00:00.250Z"), parse_time("2026-01-01T01:00:00+01:00")
    (1767225600.25, 1767225600.0)

    Raises:
        ValueError: ``text`` is not an ISO 8601 time.
    """
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        # Not the host's zone: a retained state must mean the same moment on every machine.
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def alert_message(event: AlertEvent, *, model: str, model_version: str) -> dict[str, Any]:
    """The alert event as published: ids, times, peak score, threshold, contributions."""
    return {
        "schema": SCHEMA_VERSION,
        "alert_id": event.alert_id,
        "asset": event.asset,
        "state": event.state,
        "started_at": iso(event.started_at),
        "ended_at": None if event.ended_at is None else iso(event.ended_at),
        "at": iso(event.at),
        "peak_score": _number(event.peak_score),
        "threshold": _number(event.threshold),
        "contributions": _contributions(event.contributions),
        "kind": event.kind,
        "severity": _number(event.severity),
        "channels": findings_json(event.findings),
        "model": model,
        "model_version": model_version,
    }


def state_message(event: AlertEvent, *, model: str, model_version: str) -> dict[str, Any]:
    """The asset's retained state after ``event``: ``firing`` with the alert, or ``normal``.

    Its ``signature`` is null; the daemon signs the encoded message with its
    :class:`~aewatch.daemon.state_key.StateKey`, so that a start resumes only its own states.
    """
    is_firing = event.state == "raised"
    return {
        "schema": SCHEMA_VERSION,
        "asset": event.asset,
        "state": _FIRING if is_firing else _NORMAL,
        "alert_id": event.alert_id if is_firing else None,
        "started_at": iso(event.started_at) if is_firing else None,
        "peak_score": _number(event.peak_score) if is_firing else None,
        "threshold": _number(event.threshold) if is_firing else None,
        "contributions": _contributions(event.contributions) if is_firing else [],
        "kind": event.kind if is_firing else None,
        "severity": _number(event.severity) if is_firing else None,
        "channels": findings_json(event.findings) if is_firing else [],
        "updated_at": iso(event.at),
        "model": model,
        "model_version": model_version,
        "signature": None,  # last: StateKey.sign puts the HMAC here, in the encoded bytes
    }


def denoised_message(
    asset: str,
    *,
    model: str,
    model_version: str,
    channels: tuple[str, ...],
    timestamps: npt.NDArray[np.float64],
    values: npt.NDArray[np.float32],
) -> dict[str, Any]:
    """Reconstructed rows ``values`` ``(m, channels)`` at ``timestamps`` ``(m,)``."""
    return {
        "schema": SCHEMA_VERSION,
        "asset": asset,
        "model": model,
        "model_version": model_version,
        "channels": list(channels),
        "ts": [round(float(t), 3) for t in timestamps],
        "values": [[_number(v) for v in row] for row in values.tolist()],
    }


def encode(message: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes of a message."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()


def parse_state(payload: bytes) -> OpenAlert | None:
    """The open alert in a retained state message, or None when the asset is normal.

    >>> from aewatch.core.alerts import AlertEvent
    >>> event = AlertEvent("w1@x", "w1", "raised", 10.0, 12.0, None, 5.0, 1.0, (("flow", 1.0),))
    >>> parse_state(encode(state_message(event, model="m", model_version="v"))).alert_id
    'w1@x'

    Raises:
        ValueError: the payload is not a state message this version understands.
    """
    try:
        obj = json.loads(payload)
        if not isinstance(obj, dict) or obj.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"not a schema {SCHEMA_VERSION} state message")
        if obj["state"] == _NORMAL:
            return None
        if obj["state"] != _FIRING:
            raise ValueError(f"unknown state {obj['state']!r}")
        alert_id = obj["alert_id"]
        if not isinstance(alert_id, str) or not alert_id:
            raise ValueError(f"a firing state needs an alert_id, got {alert_id!r}")
        return OpenAlert(
            asset=str(obj["asset"]),
            alert_id=alert_id,
            started_at=parse_time(str(obj["started_at"])),
            peak_score=_float(obj["peak_score"]),
            threshold=_float(obj["threshold"]),
            contributions={str(c["channel"]): float(c["share"]) for c in obj["contributions"]},
            kind=str(obj.get("kind") or RECONSTRUCTION),
            severity=None if obj.get("severity") is None else float(obj["severity"]),
            findings=tuple(
                Finding(
                    channel=str(f["channel"]),
                    kind=str(f["kind"]),
                    measured=_float(f["measured"]),
                    expected=_float(f["expected"]),
                    noise_levels=_float(f["noise_levels"]),
                    ratio=_float(f["ratio"]),
                )
                for f in obj.get("channels") or ()
            ),
        )
    # RecursionError: JSON nested deeper than the interpreter's stack, which json.loads
    # does not turn into a ValueError (anyone may publish to the retained state topic).
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError, RecursionError) as err:
        raise ValueError(f"malformed state message ({type(err).__name__}: {err})") from err


def findings_json(findings: tuple[Finding, ...]) -> list[dict[str, Any]]:
    """The channels that look wrong, as the alert and state messages carry them."""
    return [
        {
            "channel": f.channel,
            "kind": f.kind,
            "measured": _number(f.measured),
            "expected": _number(f.expected),
            "noise_levels": _number(f.noise_levels),
            "ratio": _number(f.ratio),
        }
        for f in findings
    ]


def _float(value: Any) -> float:
    """A number of a message; null (what a non-finite number was written as) is NaN."""
    return math.nan if value is None else float(value)


def _contributions(pairs: tuple[tuple[str, float], ...]) -> list[dict[str, Any]]:
    return [{"channel": name, "share": _number(share)} for name, share in pairs]


def _number(value: float) -> float | None:
    value = float(value)
    return float(f"{value:.7g}") if math.isfinite(value) else None
