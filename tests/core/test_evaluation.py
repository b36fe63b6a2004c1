"""aewatch.core.evaluation: hand-computed cases, properties and the SKAB reference fact."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aewatch.core import evaluation
from aewatch.core.evaluation import (
    event_metrics,
    nab_score,
    point_metrics,
    pooled_event_metrics,
    pooled_point_metrics,
)

# CI puts the shared folder beside the clone; users' clones usually lack it.
SKAB_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "skab"

labels = st.lists(st.integers(0, 1), min_size=1, max_size=60).map(np.array)


def _reward(a_tp: float, a_fp: float, index: int) -> float:
    """One entry of SKAB's 1000-point tanh reward table, written out by hand."""
    x = -math.pi / 2 + index * math.pi / 999
    return a_fp + (a_tp - a_fp) / 2 * (1 - math.tanh(x) / math.tanh(math.pi / 2))


def _seconds(n: int) -> npt.NDArray[np.float64]:
    return np.arange(n, dtype=np.float64)


def _perfect_alerts(cp: npt.NDArray[np.int_]) -> npt.NDArray[np.int_]:
    """A prediction whose |diff| (first row included) is exactly ``cp``."""
    return np.cumsum(cp) % 2


# --- point metrics ---------------------------------------------------------------------


def test_point_metrics_hand_case() -> None:
    m = point_metrics([1, 1, 0, 0, 1], [1, 0, 1, 0, 1])
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 1, 1, 1)
    assert m.f1 == pytest.approx(2 / 3)
    assert m.far == pytest.approx(1 / 2)
    assert m.mar == pytest.approx(1 / 3)
    assert m.precision == pytest.approx(2 / 3)
    assert m.recall == pytest.approx(2 / 3)
    assert m.to_dict()["tp"] == 2


def test_point_metrics_empty_denominators() -> None:
    nothing = point_metrics([0, 0, 0], [0, 0, 0])
    assert (nothing.f1, nothing.far, nothing.mar, nothing.precision, nothing.recall) == (
        1.0,
        0.0,
        0.0,
        1.0,
        1.0,
    )
    silent = point_metrics([1, 1, 0], [0, 0, 0])
    assert (silent.f1, silent.recall, silent.mar, silent.precision) == (0.0, 0.0, 1.0, 1.0)
    all_positive = point_metrics([1, 1], [1, 0])
    assert all_positive.far == 0.0


def test_point_metrics_accepts_float_and_bool_labels() -> None:
    a = point_metrics(np.array([1.0, 0.0, 1.0]), np.array([True, False, False]))
    assert (a.tp, a.fp, a.fn, a.tn) == (1, 0, 1, 1)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "match"),
    [
        ([0, 1], [0, 1, 1], "rows"),
        ([0, 2], [0, 1], "only 0 and 1"),
        ([0.0, math.nan], [0, 1], "only 0 and 1"),
        ([[0, 1]], [[0, 1]], "1-D"),
    ],
)
def test_point_metrics_rejects_malformed_labels(
    y_true: list[float], y_pred: list[float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        point_metrics(y_true, y_pred)


@given(labels)
def test_perfect_prediction_is_perfect(y: npt.NDArray[np.int_]) -> None:
    m = point_metrics(y, y)
    assert (m.f1, m.far, m.mar, m.precision, m.recall) == (1.0, 0.0, 0.0, 1.0, 1.0)


@given(labels)
def test_silent_prediction_has_zero_recall(y: npt.NDArray[np.int_]) -> None:
    assume(y.any())
    m = point_metrics(y, np.zeros_like(y))
    assert (m.recall, m.f1, m.mar, m.far) == (0.0, 0.0, 1.0, 0.0)


@settings(max_examples=50)
@given(st.lists(labels, min_size=1, max_size=5), st.integers(0, 2**32 - 1))
def test_pooled_point_metrics_equal_concatenation(
    files: list[npt.NDArray[np.int_]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    pairs = [(y, rng.integers(0, 2, size=len(y))) for y in files]
    pooled = pooled_point_metrics(pairs)
    whole = point_metrics(
        np.concatenate([t for t, _ in pairs]), np.concatenate([p for _, p in pairs])
    )
    assert pooled == whole


# --- event metrics ---------------------------------------------------------------------


def test_event_metrics_hand_case() -> None:
    y_true = [0, 1, 1, 1, 0, 0, 1, 1, 0, 0]
    y_pred = [1, 1, 0, 0, 0, 0, 0, 1, 0, 1]
    t = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 12.0, 13.0, 14.0]
    m = event_metrics(y_true, y_pred, t)
    # alert [0, 2) is on when event [1, 4) starts: delay 0; event [6, 8) is caught at
    # row 7, 2 s after its start; alert [9, 10) overlaps nothing.
    assert (m.n_true, m.n_detected, m.n_predicted, m.n_false) == (2, 2, 3, 1)
    assert m.precision == pytest.approx(2 / 3)
    assert m.recall == 1.0
    assert m.delays_s == (0.0, 2.0)
    assert m.mean_delay_s == pytest.approx(1.0)
    assert m.to_dict()["delays_s"] == [0.0, 2.0]


def test_event_metrics_missed_event_and_empty_cases() -> None:
    missed = event_metrics([0, 1, 1, 0], [1, 0, 0, 1], _seconds(4))
    assert (missed.recall, missed.precision, missed.mean_delay_s) == (0.0, 0.0, None)
    quiet = event_metrics([0, 0], [0, 0], _seconds(2))
    assert (quiet.precision, quiet.recall, quiet.n_predicted, quiet.n_true) == (1.0, 1.0, 0, 0)
    empty = event_metrics([], [], [])
    assert (empty.n_true, empty.n_predicted, empty.delays_s) == (0, 0, ())


def test_event_metrics_rejects_unsorted_timestamps() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        event_metrics([0, 1], [0, 1], [1.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        event_metrics([0, 1], [0, 1], [1.0])


@given(labels)
def test_event_metrics_perfect_and_silent(y: npt.NDArray[np.int_]) -> None:
    t = _seconds(len(y))
    perfect = event_metrics(y, y, t)
    assert (perfect.precision, perfect.recall, perfect.n_false) == (1.0, 1.0, 0)
    assert all(d == 0.0 for d in perfect.delays_s)
    assume(y.any())
    assert event_metrics(y, np.zeros_like(y), t).recall == 0.0


@settings(max_examples=50)
@given(st.lists(st.tuples(labels, st.integers(0, 2**32 - 1)), min_size=1, max_size=5))
def test_pooled_event_metrics_equal_separated_concatenation(
    files: list[tuple[npt.NDArray[np.int_], int]],
) -> None:
    items = []
    for y, seed in files:
        rng = np.random.default_rng(seed)
        t = np.cumsum(rng.integers(1, 5, size=len(y))).astype(np.float64)
        items.append((y, rng.integers(0, 2, size=len(y)), t))
    pooled = pooled_event_metrics(items)
    # One 0/0 row between files keeps events from merging across the seam.
    trues, preds, times, offset = [], [], [], 0.0
    for y, p, t in items:
        trues += [y, [0]]
        preds += [p, [0]]
        times += [t + offset, [t[-1] + offset + 1.0]]
        offset += t[-1] + 2.0
    whole = event_metrics(np.concatenate(trues), np.concatenate(preds), np.concatenate(times))
    assert pooled == whole


# --- NAB -------------------------------------------------------------------------------


def test_nab_hand_case_half_window_and_false_alarm() -> None:
    cp = np.zeros(300, dtype=int)
    cp[100] = 1
    y = np.zeros(300, dtype=int)
    y[130:200] = 1  # alarms at 130 s (inside [100, 160], half-way) and 200 s (outside)
    s = nab_score([(cp, y, _seconds(300))])
    for value, (a_tp, a_fp, a_fn) in [
        (s.standard, (1.0, -0.11, -1.0)),
        (s.low_fp, (1.0, -0.22, -1.0)),
        (s.low_fn, (1.0, -0.11, -2.0)),
    ]:
        raw = _reward(a_tp, a_fp, 500) + a_fp
        assert value == pytest.approx(100 * (raw - a_fn) / (a_tp - a_fn))
    assert (s.missed, s.false_positives, s.n_changepoints) == (0, 1, 1)
    assert s.to_dict()["false_positives"] == 1


def test_nab_window_edges_earn_a_tp_and_a_fp() -> None:
    cp = np.zeros(200, dtype=int)
    cp[[20, 120]] = 1
    y = np.zeros(200, dtype=int)
    y[20] = 1  # alarm on 20 s (window start), off-alarm at 21 s is ignored
    y[180:] = 1  # alarm exactly on 180 s, the end of the window [120, 180]
    s = nab_score([(cp, y, _seconds(200))])
    # S = 1 + (-0.11); null -2, perfect 2
    assert s.standard == pytest.approx(100 * (0.89 + 2) / 4)
    assert (s.missed, s.false_positives) == (0, 0)


def test_nab_first_row_on_is_an_alarm() -> None:
    cp = np.zeros(200, dtype=int)
    cp[100] = 1
    s = nab_score([(cp, np.ones(200, dtype=int), _seconds(200))])
    # the only alarm is row 0: a false positive, and the window is missed
    assert s.standard == pytest.approx(100 * (-0.11 - 1 + 1) / 2)
    assert (s.missed, s.false_positives) == (1, 1)
    cp_at_start = np.zeros(10, dtype=int)
    cp_at_start[0] = 1
    assert nab_score([(cp_at_start, np.ones(10, dtype=int), _seconds(10))]).standard == 100.0


def test_nab_close_changepoints_cut_the_right_window() -> None:
    # Windows [100, 160] and, cut, [160, 190]: the alarm on 130 s is the second one in
    # the first window, so the second window is missed (upstream behaviour).
    cp = np.zeros(300, dtype=int)
    cp[[100, 130]] = 1
    s = nab_score([(cp, _perfect_alerts(cp), _seconds(300))])
    assert s.standard == pytest.approx(100 * (1 - 1 + 2) / 4)
    assert (s.missed, s.false_positives) == (1, 0)
    # An alarm on the shared edge 160 s is the first alarm of both windows.
    y = np.zeros(300, dtype=int)
    y[160:] = 1
    s = nab_score([(cp, y, _seconds(300))])
    assert s.standard == pytest.approx(100 * (-0.11 + 1 + 2) / 4)
    assert (s.missed, s.false_positives) == (0, 0)


def test_nab_file_without_changepoints_still_pays_for_alarms() -> None:
    cp = np.zeros(100, dtype=int)
    cp[10] = 1
    quiet = (cp, _perfect_alerts(cp), _seconds(100))
    noisy = (np.zeros(5, dtype=int), np.array([0, 1, 0, 1, 0]), _seconds(5))
    s = nab_score([quiet, noisy])
    assert s.standard == pytest.approx(100 * (1 - 4 * 0.11 + 1) / 2)
    assert (s.false_positives, s.n_changepoints) == (4, 1)


def test_nab_window_width_is_a_parameter() -> None:
    cp = np.zeros(100, dtype=int)
    cp[10] = 1
    y = np.zeros(100, dtype=int)
    y[40:] = 1  # 30 s late: half-way through a 60 s window, past a 20 s one
    assert nab_score([(cp, y, _seconds(100))], window_s=20.0).missed == 1
    assert nab_score([(cp, y, _seconds(100))]).missed == 0


@pytest.mark.parametrize(
    ("files", "window_s", "match"),
    [
        ([([0, 0], [0, 1], [0.0, 1.0])], 60.0, "at least one true changepoint"),
        ([], 60.0, "at least one true changepoint"),
        ([([0, 1], [0, 1], [0.0, 1.0])], 0.0, "window_s"),
        ([([0, 1], [0, 1], [1.0, 0.0])], 60.0, "strictly increasing"),
    ],
)
def test_nab_rejects_bad_input(
    files: list[tuple[list[int], list[int], list[float]]], window_s: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        nab_score(files, window_s=window_s)


@st.composite
def changepoint_files(draw: st.DrawFn, *, spaced: bool) -> tuple[npt.NDArray[np.int_], ...]:
    """(cp, timestamps) with 1-120 s steps; ``spaced`` keeps changepoints > 60 s apart."""
    steps = draw(st.lists(st.integers(1, 120), min_size=1, max_size=40))
    t = np.cumsum(steps).astype(np.float64)
    picks = draw(st.lists(st.booleans(), min_size=len(t), max_size=len(t)))
    cp = np.array(picks, dtype=int)
    if spaced:
        last = -math.inf
        for i in np.flatnonzero(cp):
            cp[i] = t[i] - last > 60.0
            last = t[i] if cp[i] else last
    return cp, t


@settings(max_examples=60)
@given(st.lists(changepoint_files(spaced=True), min_size=1, max_size=4))
def test_nab_perfect_and_null_detectors(files: list[tuple[npt.NDArray[np.int_], ...]]) -> None:
    assume(any(cp.any() for cp, _ in files))
    perfect = nab_score([(cp, _perfect_alerts(cp), t) for cp, t in files])
    for value in (perfect.standard, perfect.low_fp, perfect.low_fn):
        assert value == pytest.approx(100.0)
    assert (perfect.missed, perfect.false_positives) == (0, 0)
    null = nab_score([(cp, np.zeros_like(cp), t) for cp, t in files])
    assert (null.standard, null.low_fp, null.low_fn) == (0.0, 0.0, 0.0)
    assert null.missed == null.n_changepoints == sum(int(cp.sum()) for cp, _ in files)


@settings(max_examples=60)
@given(
    st.lists(changepoint_files(spaced=False), min_size=1, max_size=4),
    st.integers(0, 2**32 - 1),
)
def test_nab_files_equal_their_separated_concatenation(
    files: list[tuple[npt.NDArray[np.int_], ...]], seed: int
) -> None:
    assume(any(cp.any() for cp, _ in files))
    rng = np.random.default_rng(seed)
    items = []
    for cp, t in files:
        y = rng.integers(0, 2, size=len(cp))
        y[0] = y[-1] = 0  # so no alarm appears or vanishes at a seam
        items.append((cp, y, t))
    offsets = np.cumsum([0.0] + [t[-1] + 1000.0 for _, _, t in items[:-1]])
    whole = nab_score(
        [
            (
                np.concatenate([cp for cp, _, _ in items]),
                np.concatenate([y for _, y, _ in items]),
                np.concatenate([t + o for (_, _, t), o in zip(items, offsets, strict=True)]),
            )
        ]
    )
    parts = nab_score(items)
    assert (parts.missed, parts.false_positives) == (whole.missed, whole.false_positives)
    assert parts.standard == pytest.approx(whole.standard)
    assert parts.low_fn == pytest.approx(whole.low_fn)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(evaluation, extraglobs={"np": np})
    assert result.attempted > 0
    assert result.failed == 0


# --- SKAB reference --------------------------------------------------------------------


@pytest.mark.skipif(
    not SKAB_DIR.is_dir(),
    reason=f"SKAB data copy not found at {SKAB_DIR} (only CI's shared folder has it)",
)
def test_skab_always_alarm_detector() -> None:
    paths = sorted(p for p in SKAB_DIR.glob("*/*.csv") if p.parent.name != "anomaly-free")
    assert len(paths) == 34
    tests = [pd.read_csv(p, sep=";").iloc[400:] for p in paths]
    pairs = [(df["anomaly"].to_numpy(), np.ones(len(df), dtype=int)) for df in tests]
    m = pooled_point_metrics(pairs)
    assert (m.tp, m.fp, m.fn, m.tn) == (12_771, 23_801 - 12_771, 0, 0)
    assert m.f1 == pytest.approx(0.698, abs=5e-4)
    assert (m.far, m.mar) == (1.0, 0.0)
    seconds = [pd.to_datetime(df["datetime"]).astype("int64").to_numpy() / 1e9 for df in tests]
    nab = nab_score(
        (df["changepoint"].to_numpy(), y, t)
        for (_, y), df, t in zip(pairs, tests, seconds, strict=True)
    )
    # one alarm per file, on its first test row, before every changepoint
    assert (nab.n_changepoints, nab.missed, nab.false_positives) == (127, 127, 34)
