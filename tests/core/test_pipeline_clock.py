"""Tests for the pipeline's clock rule (``clock_tolerance_s``): steps, outliers and counts.

The Aligner's own rules are in test_align_clock.py; here the pipeline must hand each asset's
Aligner the tolerance, report the steps it followed, and keep its counts whole: every
reading ends aligned or dropped for one reason, a reading held off its asset's time is
counted once it is placed or outrun, and no count ever goes down (Prometheus would read a
drop in a counter as a restart).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest

from aewatch.core.decode import Item, Reading, Row, Series
from aewatch.core.pipeline import ClockStep, Pipeline
from aewatch.model.bundle import ModelBundle

from .test_pipeline import CHANNELS, pipeline, readings, table, train

TOLERANCE_S = 600.0
HOUR_S = 3600.0
WINDOW_LEN = 10
FATES = ("aligned", "late", "outlier", "unknown_channel", "invalid")


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    """A pca model: window 10, hop 1, period 1 s."""
    return train()


def feed_one_by_one(pipe: Pipeline, items: Sequence[Item]) -> list[Counter[str]]:
    """Ingest ``items`` one per call, flushing as the daemon would; the counts after each."""
    seen = []
    for item in items:
        pipe.ingest([item])
        pipe.flush()
        seen.append(Counter(pipe.counts.as_dict()))
    return seen


def assert_never_down(seen: list[Counter[str]]) -> None:
    for before, after in pairwise(seen):
        assert all(after[name] >= before[name] for name in before), (before, after)


def test_a_clock_set_back_an_hour_is_followed_and_reported(bundle: ModelBundle) -> None:
    rows = table(400, 1)
    stepped = rows.timestamps.copy()
    stepped[200:] -= HOUR_S
    feed = readings(replace(rows, timestamps=stepped))
    pipe = pipeline(bundle, clock_tolerance_s=TOLERANCE_S)
    seen = feed_one_by_one(pipe, feed)
    assert_never_down(seen)
    counts = pipe.counts
    assert counts.aligned == len(feed)
    assert counts.late == counts.outlier == 0
    assert counts.windows == 2 * (200 - WINDOW_LEN + 1)  # a new window after the step
    assert counts.gaps == 1
    # Confirmed by the first reading of the third row at the new time.
    assert pipe.clock_steps == [ClockStep("w", float(stepped[202]), -HOUR_S)]


def test_without_a_tolerance_the_hour_after_a_step_back_is_late(bundle: ModelBundle) -> None:
    rows = table(400, 1)
    stepped = rows.timestamps.copy()
    stepped[200:] -= HOUR_S
    pipe = pipeline(bundle)
    feed_one_by_one(pipe, readings(replace(rows, timestamps=stepped)))
    assert pipe.counts.late == 200 * len(CHANNELS)
    assert pipe.clock_steps == []


@pytest.mark.parametrize("as_rows", [False, True], ids=["readings", "rows"])
def test_a_row_stamped_far_ahead_is_outliers_and_moves_nothing(
    bundle: ModelBundle, as_rows: bool
) -> None:
    rows = table(300, 2)
    stray = Row("w", CHANNELS, float(rows.timestamps[0] + 86_400.0), (1.0, 2.0, 3.0))
    items: list[Item] = []
    for t, values in zip(rows.timestamps, rows.values, strict=True):
        row = Row("w", CHANNELS, float(t), tuple(float(v) for v in values))
        items += [row] if as_rows else list(row.readings())
        if t == rows.timestamps[150]:
            items += [stray] if as_rows else list(stray.readings())
    pipe = pipeline(bundle, clock_tolerance_s=TOLERANCE_S)
    seen = feed_one_by_one(pipe, items)
    assert_never_down(seen)
    assert pipe.counts.outlier == len(CHANNELS)
    assert pipe.counts.aligned == 300 * len(CHANNELS)
    assert pipe.counts.late == pipe.counts.gaps == 0
    assert pipe.counts.windows == 300 - WINDOW_LEN + 1
    assert pipe.clock_steps == []


def test_a_block_far_ahead_then_the_stream_goes_on(bundle: ModelBundle) -> None:
    """``float32_le`` blocks: two samples of a block stamped far ahead are held, then outrun."""
    rows = table(120, 3)
    items: list[Item] = []
    for start in range(0, 120, 20):
        for c, channel in enumerate(CHANNELS):
            t = rows.timestamps[start : start + 20].copy()
            if start == 60 and c == 0:
                t[-2:] += 86_400.0  # the block's last two samples jump a day ahead
            items.append(Series("w", channel, t, rows.values[start : start + 20, c].copy()))
    pipe = pipeline(bundle, clock_tolerance_s=TOLERANCE_S)
    seen = feed_one_by_one(pipe, items)
    assert_never_down(seen)
    counts = pipe.counts
    assert counts.outlier == 2
    assert counts.aligned + counts.outlier + counts.late == 120 * len(CHANNELS)


def test_every_reading_is_counted_once_whatever_the_times(bundle: ModelBundle) -> None:
    """Wild times from a seeded generator: each reading aligned or dropped once, never down.

    The last rows are in order, so nothing is still held at the end.
    """
    rng = np.random.default_rng(7)
    base = table(400, 4)
    t = base.timestamps.copy()
    t[rng.choice(350, 12, replace=False)] += rng.choice([-7200.0, -900.0, 900.0, 86_400.0], 12)
    t[250:] -= HOUR_S
    feed = readings(replace(base, timestamps=t))
    feed.insert(30, Reading("w", "nope", float(t[30]), 1.0))
    pipe = pipeline(bundle, clock_tolerance_s=TOLERANCE_S)
    seen = feed_one_by_one(pipe, feed)
    assert_never_down(seen)
    assert sum(getattr(pipe.counts, name) for name in FATES) == len(feed)
    assert pipe.counts.unknown_channel == 1
