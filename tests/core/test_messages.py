"""Tests for aewatch.core.messages: state round trips, null for non-finite, malformed state."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aewatch.core.alerts import AlertEvent, AlertState, Finding
from aewatch.core.messages import (
    SCHEMA_VERSION,
    OpenAlert,
    alert_message,
    denoised_message,
    encode,
    iso,
    parse_state,
    parse_time,
    state_message,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
PROPERTY = settings(deadline=None, max_examples=100)
VERSION = {"model": "well", "model_version": "3f2a9c1b7d4e"}


def event(
    state: str = "raised",
    *,
    asset: str = "well-7",
    started_at: float = T0 + 600.0,
    peak_score: float = 0.0734,
    threshold: float = 0.0212,
    contributions: tuple[tuple[str, float], ...] = (("flow", 0.75), ("temp", 0.25)),
) -> AlertEvent:
    is_raised = state == "raised"
    return AlertEvent(
        alert_id=f"{asset}@{iso(started_at)}",
        asset=asset,
        state=state,
        started_at=started_at,
        at=started_at if is_raised else started_at + 70.0,
        ended_at=None if is_raised else started_at + 60.0,
        peak_score=peak_score,
        threshold=threshold,
        contributions=contributions,
    )


def firing_state(**changes: Any) -> bytes:
    """A valid firing state message with some keys replaced (a value of ... deletes the key)."""
    message = state_message(event(), **VERSION) | changes
    return encode({k: v for k, v in message.items() if v is not ...})


# --- iso / parse_time -------------------------------------------------------------------


def test_iso_is_utc_with_milliseconds_and_z() -> None:
    assert iso(T0) == "2026-01-01T00:00:00.000Z"
    assert iso(T0 + 0.25) == "2026-01-01T00:00:00.250Z"
    assert iso(0.0) == "1970-01-01T00:00:00.000Z"


@PROPERTY
@given(st.integers(min_value=0, max_value=4_102_444_800_000))  # 1970 .. 2100, in ms
def test_parse_time_inverts_iso_to_the_millisecond(ms: int) -> None:
    assert parse_time(iso(ms / 1000)) == ms / 1000


@pytest.mark.parametrize(
    "text",
    ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+01:00"],
)
def test_parse_time_honours_the_offset(text: str) -> None:
    assert parse_time(text) == T0


@pytest.fixture
def host_far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process runs in UTC+12 (a POSIX zone string, so no tz database is needed)."""
    monkeypatch.setenv("TZ", "NZST-12")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("host_far_from_utc")
def test_parse_time_reads_a_time_without_offset_as_utc() -> None:
    # Not the host's zone: the same retained state means the same moment everywhere.
    assert parse_time("2026-01-01T00:00:00") == T0


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00Z"])
def test_parse_time_refuses_what_is_not_a_time(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


# --- builders ---------------------------------------------------------------------------


def test_alert_message_holds_the_event() -> None:
    resolved = event("resolved")
    message = alert_message(resolved, **VERSION)
    assert message == {
        "schema": SCHEMA_VERSION,
        "alert_id": "well-7@2026-01-01T00:10:00.000Z",
        "asset": "well-7",
        "state": "resolved",
        "started_at": "2026-01-01T00:10:00.000Z",
        "ended_at": "2026-01-01T00:11:00.000Z",
        "at": "2026-01-01T00:11:10.000Z",
        "peak_score": 0.0734,
        "threshold": 0.0212,
        "contributions": [{"channel": "flow", "share": 0.75}, {"channel": "temp", "share": 0.25}],
        "kind": "reconstruction",
        "severity": 0.0,
        "channels": [],
        "model": "well",
        "model_version": "3f2a9c1b7d4e",
    }
    assert json.loads(encode(message)) == message


def test_an_alert_says_which_check_and_channels_in_their_units() -> None:
    finding = Finding("flow", "stuck", 3.2, 3.55, -4.1234567891, 2.0)
    raised = replace(event("raised"), kind="stuck", severity=2.0, findings=(finding,))
    for message in (alert_message(raised, **VERSION), state_message(raised, **VERSION)):
        assert message["kind"] == "stuck"
        assert message["channels"] == [
            {
                "channel": "flow",
                "kind": "stuck",
                "measured": 3.2,
                "expected": 3.55,
                "noise_levels": -4.123457,
                "ratio": 2.0,
            }
        ]
    normal = state_message(replace(raised, state="resolved"), **VERSION)
    assert (normal["kind"], normal["channels"]) == (None, [])


def test_state_of_a_resolved_alert_is_normal_and_empty() -> None:
    message = state_message(event("resolved"), **VERSION)
    assert message["state"] == "normal"
    assert message["updated_at"] == "2026-01-01T00:11:10.000Z"
    nulls = ("alert_id", "started_at", "peak_score", "threshold")
    assert [message[key] for key in nulls] == [None] * 4
    assert message["contributions"] == []
    assert (message["kind"], message["severity"], message["channels"]) == (None, None, [])


def test_numbers_keep_seven_significant_digits() -> None:
    message = alert_message(event(peak_score=1 / 3, threshold=123456789.0), **VERSION)
    assert message["peak_score"] == 0.3333333
    assert message["threshold"] == 123456800.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_become_null(bad: float) -> None:
    nasty = event(peak_score=bad, threshold=bad, contributions=(("flow", bad),))
    for message in (alert_message(nasty, **VERSION), state_message(nasty, **VERSION)):
        assert message["peak_score"] is None
        assert message["threshold"] is None
        assert message["contributions"] == [{"channel": "flow", "share": None}]
        assert b"NaN" not in encode(message)
        assert b"Infinity" not in encode(message)


def test_denoised_message_rows_follow_the_channels() -> None:
    values = np.array([[1.0, np.nan], [1.234567891, np.inf]], dtype=np.float32)
    message = denoised_message(
        "well-7",
        channels=("flow", "temp"),
        timestamps=np.array([T0 + 0.1234567, T0 + 1.0]),
        values=values,
        **VERSION,
    )
    assert message["channels"] == ["flow", "temp"]
    assert message["ts"] == [T0 + 0.123, T0 + 1.0]
    assert message["values"] == [[1.0, None], [1.234568, None]]
    assert json.loads(encode(message)) == message


def test_encode_is_compact_and_refuses_nan() -> None:
    assert encode({"a": [1, None]}) == b'{"a":[1,null]}'
    with pytest.raises(ValueError):
        encode({"a": math.nan})


# --- state round trips ------------------------------------------------------------------

finite = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@PROPERTY
@given(
    asset=st.text(st.characters(exclude_characters="/+#\x00"), min_size=1, max_size=12),
    start_ms=st.integers(min_value=0, max_value=4_102_444_800_000),
    peak=finite,
    threshold=finite,
    shares=st.lists(finite, min_size=1, max_size=4),
)
def test_state_message_round_trips_through_parse_state(
    asset: str, start_ms: int, peak: float, threshold: float, shares: list[float]
) -> None:
    contributions = tuple((f"ch{i}", share) for i, share in enumerate(shares))
    raised = event(
        asset=asset,
        started_at=start_ms / 1000,
        peak_score=peak,
        threshold=threshold,
        contributions=contributions,
    )
    restored = parse_state(encode(state_message(raised, **VERSION)))
    assert isinstance(restored, OpenAlert)
    assert (restored.asset, restored.alert_id) == (asset, raised.alert_id)
    assert restored.started_at == start_ms / 1000
    assert restored.peak_score == pytest.approx(peak, rel=1e-6)
    assert restored.threshold == pytest.approx(threshold, rel=1e-6)
    assert restored.contributions == pytest.approx(dict(contributions), rel=1e-6)


def test_a_real_alert_round_trips_and_its_resolution_parses_as_normal() -> None:
    alerts = AlertState(raise_after=1, resolve_after=1)
    errors = {"flow": 3.0, "temp": 1.0}
    raised = alerts.update(
        "w1", is_anomalous=True, at=T0, score=2.0, threshold=1.0, channel_errors=errors
    )
    resolved = alerts.update("w1", is_anomalous=False, at=T0 + 1, score=0.1, threshold=1.0)
    assert raised is not None
    assert resolved is not None
    assert parse_state(encode(state_message(raised, **VERSION))) == OpenAlert(
        "w1", raised.alert_id, T0, 2.0, 1.0, {"flow": 0.75, "temp": 0.25}, severity=2.0
    )
    assert parse_state(encode(state_message(resolved, **VERSION))) is None


def test_parse_state_takes_the_keys_it_needs_only() -> None:
    assert parse_state(firing_state(model=..., updated_at=..., extra=1)) is not None


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[1, 2]",
        b"null",
        b"[" * 100_000,  # deeper than the interpreter's stack
        encode({"schema": 1}),
        firing_state(schema=2),
        firing_state(schema=...),
        firing_state(state="paused"),
        firing_state(state=...),
        firing_state(state=["firing"]),
        firing_state(alert_id=None),
        firing_state(alert_id=""),
        firing_state(alert_id=...),
        firing_state(started_at="soon"),
        firing_state(started_at=None),
        # null peak_score is valid (a stale alert has no window error); a string is not
        firing_state(peak_score="high"),
        firing_state(threshold=...),
        firing_state(contributions=None),
        firing_state(contributions={"flow": 1.0}),
        firing_state(contributions=[{"channel": "flow"}]),
        firing_state(contributions=[["flow", 1.0]]),
    ],
)
def test_malformed_state_raises_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_state(payload)


def test_a_resumed_alert_keeps_its_kind_severity_and_channels() -> None:
    """Retained state back to an open alert: what raised it survives a restart."""
    finding = Finding("flow", "stale", 3.2, math.nan, math.nan, 2.5)
    raised = replace(
        event("raised", peak_score=math.nan), kind="stale", severity=2.5, findings=(finding,)
    )
    resumed = parse_state(encode(state_message(raised, **VERSION)))
    assert resumed is not None and math.isnan(resumed.peak_score)
    assert (resumed.kind, resumed.severity) == ("stale", 2.5)
    (back,) = resumed.findings
    assert (back.channel, back.kind, back.measured, back.ratio) == ("flow", "stale", 3.2, 2.5)
    assert math.isnan(back.expected)
    alerts = AlertState()
    assert alerts.restore(resumed)
    resolved = alerts.update("well-7", is_anomalous=False, at=T0 + 900, score=0.0, threshold=1.0)
    assert resolved is not None and resolved.alert_id == raised.alert_id
    assert (resolved.kind, resolved.severity, resolved.findings) == ("stale", 2.5, (finding,))


def test_a_state_message_of_an_earlier_version_still_resumes() -> None:
    """Before kinds, a state message had no kind, severity or channels: a plain alert."""
    message = state_message(event("raised"), **VERSION)
    for key in ("kind", "severity", "channels"):
        del message[key]
    resumed = parse_state(encode(message))
    assert resumed is not None
    assert (resumed.kind, resumed.severity, resumed.findings) == ("reconstruction", None, ())
