"""Whether scoring goes on while readings arrive: what ``/healthz`` says (shell, no I/O).

A worker that comes round its loop is not enough: a worker whose every batch fails, or whose
windows never get scored, comes round just as often. :class:`ScoringLiveness` is told by
the scoring worker when readings came, when windows were cut and waited, when a round
failed and when windows were scored, and says the daemon is not alive once readings keep
arriving and windows have waited (or rounds failed) for longer than ``stall_s`` without a
single window scored. Readings that make no window (an asset still warming up, a channel
that never reports) do not count against it: they are data problems, counted in their
own metrics, that a restart would not cure. Times are the caller's monotonic seconds.
"""

from __future__ import annotations

__all__ = ["SCORING_STALL_S", "ScoringLiveness"]

SCORING_STALL_S = 60.0


class ScoringLiveness:
    """The scoring worker's progress, as ``/healthz`` judges it (one writer, any readers).

    >>> live = ScoringLiveness(stall_s=60.0)
    >>> live.took(0.0); live.waiting(0.0)
    >>> live.took(61.0); live.waiting(61.0)
    >>> live.check(61.0)
    (False, 'readings arrive but no window has been scored for 61 s (limit 60 s)')
    >>> live.scored(62.0)
    >>> live.check(62.0)
    (True, 'ok')
    """

    def __init__(self, stall_s: float = SCORING_STALL_S) -> None:
        if stall_s <= 0:
            raise ValueError(f"stall_s must be positive, got {stall_s}")
        self.stall_s = stall_s
        self._last_reading: float | None = None
        self._unscored_since: float | None = None  # windows waiting or rounds failing since

    def took(self, now: float) -> None:
        """Readings came at ``now``."""
        self._last_reading = now

    def waiting(self, now: float) -> None:
        """Windows were cut and wait to be scored."""
        if self._unscored_since is None:
            self._unscored_since = now

    def failed(self, now: float) -> None:
        """A round of the worker raised: what it held was not scored."""
        if self._unscored_since is None:
            self._unscored_since = now

    def scored(self, now: float) -> None:
        """At least one window was scored at ``now``."""
        self._unscored_since = None

    def check(self, now: float) -> tuple[bool, str]:
        """``(True, "ok")``, or False and why: readings arrive, nothing is scored."""
        since, last = self._unscored_since, self._last_reading
        if since is None or last is None or now - last > self.stall_s:
            return True, "ok"
        waited_s = now - since
        if waited_s <= self.stall_s:
            return True, "ok"
        return False, (
            f"readings arrive but no window has been scored for {waited_s:.0f} s "
            f"(limit {self.stall_s:.0f} s)"
        )
