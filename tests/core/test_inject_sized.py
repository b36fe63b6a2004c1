"""Faults of a given size (``aewatch.sim.inject.inject_sized``): the simulator's shapes, the
size exact, only the fault's channel changed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aewatch.sim.inject import SIZED_KINDS, FaultSite, inject, inject_sized

M, COLUMN, SCALE = 180, 1, 0.05


def _site(seed: int = 0) -> FaultSite:
    rng = np.random.default_rng(seed)
    values = np.column_stack([rng.normal(level, 0.1, M) for level in (40.0, 20.0, 90.0)])
    return FaultSite(
        values=values,
        clean=values,
        noise=np.zeros_like(values),
        before=values[0] + 0.01,
        scale=np.array([0.4, SCALE, 0.05]),
        column=COLUMN,
        period_s=10.0,
    )


@given(
    kind=st.sampled_from([k for k in SIZED_KINDS if k != "stuck"]),
    size=st.floats(0.0, 20.0),
    seed=st.integers(0, 2**16),
)
def test_the_change_is_size_times_a_unit_fault_on_the_own_channel(
    kind: str, size: float, seed: int
) -> None:
    site = _site()
    unit = inject_sized(kind, np.random.default_rng(seed), site, size=1.0) - site.values
    out = inject_sized(kind, np.random.default_rng(seed), site, size=size)
    np.testing.assert_allclose(out - site.values, size * unit, atol=1e-9)
    others = [c for c in range(site.values.shape[1]) if c != COLUMN]
    np.testing.assert_array_equal(out[:, others], site.values[:, others])


@pytest.mark.parametrize(
    ("kind", "rel"),
    # A gain error is the size at the span's first level, and the level moves a little
    # after it; a sampled sine need not land on its crest.
    [("step", 1e-9), ("drift", 1e-9), ("spikes", 1e-9), ("gain", 0.02), ("oscillation", 0.15)],
)
def test_the_largest_move_is_the_size(kind: str, rel: float) -> None:
    site = _site()
    change = inject_sized(kind, np.random.default_rng(3), site, size=3.0) - site.values
    largest = float(np.max(np.abs(change[:, COLUMN])))
    assert largest == pytest.approx(3.0 * SCALE, rel=rel)
    if kind == "oscillation":
        assert largest <= 3.0 * SCALE


def test_shapes_agree_with_the_simulator() -> None:
    site, rng = _site(), np.random.default_rng(7)
    drawn = inject("step", rng, site)[:, COLUMN] - site.values[:, COLUMN]
    sized = inject_sized("step", rng, site, size=5.0)[:, COLUMN] - site.values[:, COLUMN]
    assert np.ptp(drawn) == pytest.approx(0.0, abs=1e-12)  # both constant offsets
    assert np.ptp(sized) == pytest.approx(0.0, abs=1e-12)
    assert 4.0 <= abs(drawn[0]) / SCALE <= 7.0
    assert abs(sized[0]) / SCALE == pytest.approx(5.0)
    ramp = inject_sized("drift", rng, site, size=5.0)[:, COLUMN] - site.values[:, COLUMN]
    assert np.all(np.diff(np.abs(ramp)) > 0) and abs(ramp[-1]) == pytest.approx(5.0 * SCALE)
    stuck = inject_sized("stuck", rng, site, size=5.0)[:, COLUMN]
    np.testing.assert_array_equal(stuck, np.full(M, site.before[COLUMN]))


def test_unknown_kinds_and_negative_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="leak"):
        inject_sized("leak", np.random.default_rng(0), _site(), size=1.0)
    with pytest.raises(ValueError, match="size"):
        inject_sized("step", np.random.default_rng(0), _site(), size=-1.0)
