"""ScoringLiveness: /healthz fails only when readings arrive and nothing gets scored."""

from __future__ import annotations

import pytest

from aewatch.daemon.liveness import ScoringLiveness

STALL_S = 60.0


def _fed(live: ScoringLiveness, start: float, stop: float, *, windows: bool) -> None:
    """Readings every second from ``start`` to ``stop``; windows cut from each if asked."""
    t = start
    while t <= stop:
        live.took(t)
        if windows:
            live.waiting(t)
        t += 1.0


def test_windows_waiting_unscored_while_readings_arrive_fail_after_the_stated_time() -> None:
    live = ScoringLiveness(STALL_S)
    _fed(live, 0.0, 60.0, windows=True)
    assert live.check(60.0) == (True, "ok")  # at the limit, not past it
    _fed(live, 61.0, 61.0, windows=True)
    alive, why = live.check(61.0)
    assert not alive
    assert why == "readings arrive but no window has been scored for 61 s (limit 60 s)"
    live.scored(62.0)
    assert live.check(62.0) == (True, "ok")


def test_failed_rounds_count_like_unscored_windows() -> None:
    live = ScoringLiveness(STALL_S)
    for t in range(0, 100, 5):
        live.took(float(t))
        live.failed(float(t))
    assert not live.check(95.0)[0]


def test_readings_that_make_no_window_never_fail_it() -> None:
    """An asset still warming up, or a channel that never comes: no window, nothing stalls."""
    live = ScoringLiveness(STALL_S)
    _fed(live, 0.0, 3600.0, windows=False)
    assert live.check(3600.0) == (True, "ok")


def test_a_quiet_daemon_is_alive() -> None:
    """Windows that waited and then no readings at all: nothing arrives, nothing to judge."""
    live = ScoringLiveness(STALL_S)
    _fed(live, 0.0, 10.0, windows=True)
    assert live.check(10.0 + STALL_S + 1) == (True, "ok")
    assert ScoringLiveness(STALL_S).check(1e9) == (True, "ok")


def test_scoring_now_and_then_keeps_it_alive() -> None:
    live = ScoringLiveness(STALL_S)
    for t in range(0, 3600):
        live.took(float(t))
        live.waiting(float(t))
        if t % 50 == 0:
            live.scored(float(t))
        assert live.check(float(t))[0], t


def test_the_stall_time_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stall_s must be positive"):
        ScoringLiveness(0.0)
