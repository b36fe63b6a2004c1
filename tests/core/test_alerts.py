"""AlertState hysteresis and event contents."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from aewatch.core.alerts import AlertState, OpenAlert


@settings(max_examples=200, deadline=None)
@given(
    flags=st.lists(st.booleans(), max_size=200),
    k=st.integers(1, 5),
    m=st.integers(1, 5),
)
def test_never_raises_twice_without_resolving(flags, k, m):
    state = AlertState(raise_after=k, resolve_after=m)
    events = []
    for i, flag in enumerate(flags):
        e = state.update("a", is_anomalous=flag, at=float(i), score=float(flag), threshold=0.5)
        if e is not None:
            events.append(e)
    kinds = [e.state for e in events]
    assert all(a != b for a, b in itertools.pairwise(kinds))
    assert not kinds or kinds[0] == "raised"
    # A raise needs k anomalous windows in a row right before it.
    for e in events:
        i = int(e.at)
        window = flags[i - (k if e.state == "raised" else m) + 1 : i + 1]
        assert all(window) if e.state == "raised" else not any(window)
    # Resolved events carry the id of the alert they close.
    raised = [e.alert_id for e in events if e.state == "raised"]
    resolved = [e.alert_id for e in events if e.state == "resolved"]
    assert resolved == raised[: len(resolved)]


def test_event_has_start_peak_and_sorted_contributions():
    state = AlertState(raise_after=2, resolve_after=1)
    assert (
        state.update(
            "w",
            is_anomalous=True,
            at=10.0,
            score=3.0,
            threshold=1.0,
            channel_errors={"p": 1.0, "t": 3.0},
        )
        is None
    )
    raised = state.update(
        "w",
        is_anomalous=True,
        at=11.0,
        score=5.0,
        threshold=1.0,
        channel_errors={"p": 4.0, "t": 1.0},
    )
    assert raised is not None and raised.state == "raised"
    assert raised.started_at == 10.0 and raised.peak_score == 5.0
    assert [c for c, _ in raised.contributions] == ["p", "t"]
    assert abs(sum(s for _, s in raised.contributions) - 1.0) < 1e-9
    assert state.is_firing("w") and state.firing() == {"w": raised.alert_id}
    resolved = state.update("w", is_anomalous=False, at=12.0, score=0.1, threshold=1.0)
    assert resolved is not None and resolved.alert_id == raised.alert_id
    assert resolved.ended_at == 12.0 and not state.is_firing("w")


def test_assets_are_independent():
    state = AlertState(raise_after=1, resolve_after=1)
    assert state.update("a", is_anomalous=True, at=1.0, score=2.0, threshold=1.0) is not None
    assert state.update("b", is_anomalous=False, at=1.0, score=0.0, threshold=1.0) is None
    assert state.firing().keys() == {"a"}


@settings(deadline=None, max_examples=60)
@given(
    st.lists(st.booleans(), max_size=60),
    st.integers(1, 3),
    st.integers(1, 3),
)
def test_note_normal_leaves_the_state_update_would(
    decisions: list[bool], raise_after: int, resolve_after: int
) -> None:
    """The short path for normal windows changes nothing a caller or a later window sees."""
    slow, fast = AlertState(raise_after, resolve_after), AlertState(raise_after, resolve_after)
    for i, is_anomalous in enumerate(decisions):
        at, score = float(i), float(i % 7)
        window = {"score": score, "threshold": 1.0, "channel_errors": {"flow": score}}
        expected = slow.update("w1", is_anomalous=is_anomalous, at=at, **window)
        if is_anomalous or fast.is_firing("w1"):
            got = fast.update("w1", is_anomalous=is_anomalous, at=at, **window)
        else:
            fast.note_normal("w1", at)
            got = None
        assert got == expected
        assert fast._tracks == slow._tracks


def test_a_resumed_alert_ignores_windows_from_before_it_began() -> None:
    """After a restart the journal replays readings the earlier process had decided on,
    some from before the alert it left open began: those windows neither resolve it nor
    raise it again; the first normal run after its start resolves it under its id."""
    alerts = AlertState(raise_after=1, resolve_after=3)
    opened = OpenAlert(
        "w1", "w1@x", started_at=100.0, peak_score=5.0, threshold=1.0, contributions={"flow": 1.0}
    )
    assert alerts.restore(opened)
    replayed = [
        alerts.update("w1", is_anomalous=anomalous, at=at, score=s, threshold=1.0)
        for at, anomalous, s in [
            (95.0, False, 0.1),
            (96.0, False, 0.1),
            (97.0, False, 0.1),
            (98.0, False, 0.1),
            (99.0, True, 2.0),
        ]
    ]
    assert replayed == [None] * 5
    later = [
        alerts.update("w1", is_anomalous=False, at=at, score=0.1, threshold=1.0)
        for at in (100.0, 101.0, 102.0)
    ]
    assert later[:2] == [None, None]
    assert later[2] is not None and later[2].state == "resolved"
    assert later[2].alert_id == "w1@x" and later[2].ended_at == 100.0
