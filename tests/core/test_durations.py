"""``--window`` / ``--hop`` values: whole samples as they are, durations over the sample period."""

from __future__ import annotations

import pytest

from aewatch.commands.durations import (
    duration_text,
    parse_samples,
    samples_text,
    window_and_hop,
)
from aewatch.errors import AewatchError


@pytest.mark.parametrize(
    ("text", "period_s", "samples"),
    [
        ("10", 10.0, 10),
        (" 60 ", 10.0, 60),
        ("60 samples", 10.0, 60),
        ("100s", 10.0, 10),
        ("90 s", 10.0, 9),
        ("10min", 10.0, 60),
        ("10 min", 10.0, 60),
        ("1.5min", 10.0, 9),
        ("10.5min", 10.0, 63),
        ("10MIN", 10.0, 60),
        ("2h", 10.0, 720),
        ("2 hours", 60.0, 120),
        ("500ms", 0.1, 5),
        (".5min", 10.0, 3),
        ("19.9s", 10.0, 2),  # 1.99 samples: within 1 % of 2
        ("10min", 7.0, 86),  # 85.7 samples: within 1 % of 86
    ],
)
def test_good_values_become_samples(text: str, period_s: float, samples: int) -> None:
    assert parse_samples(text, period_s) == samples


@pytest.mark.parametrize(
    ("text", "period_s", "words"),
    [
        ("10parsecs", 10.0, ["'10parsecs'", "not understood", "10min", "whole number"]),
        ("", 10.0, ["not understood"]),
        ("-3", 10.0, ["'-3'", "not understood"]),
        ("1e3", 10.0, ["'1e3'", "not understood"]),
        ("10.0", 10.0, ["--window 10.0", "whole number", "--window 10", "10.0s"]),
        ("1", 10.0, ["--window 1", "at least 2 samples", "--window 2"]),
        ("0", 10.0, ["--window 0", "at least 2 samples"]),
        ("15s", 10.0, ["--window 15s", "1.5 samples", "10 s", "at least 2", "20s or more"]),
        ("500ms", 0.5, ["--window 500ms", "1 sample ", "0.5 s", "1000ms or more"]),
        ("95s", 10.0, ["9.5 samples", "10 s", "90s (9 samples)", "100s (10 samples)"]),
        ("10min", 16.0, ["37.5 samples", "16 s", "592s (37 samples) or 608s (38 samples)"]),
        ("10s", 0.0, ["--window 10s", "positive sample period", "--period"]),
    ],
)
def test_bad_values_name_the_option_value_period_and_fix(
    text: str, period_s: float, words: list[str]
) -> None:
    with pytest.raises(AewatchError) as caught:
        parse_samples(text, period_s)
    for word in words:
        assert word in str(caught.value)


def test_not_whole_suggests_values_in_the_unit_given_else_in_seconds() -> None:
    with pytest.raises(AewatchError, match=r"use 1\.5min \(9 samples\) or 100s \(10 samples\)$"):
        parse_samples("1.6min", 10.0)


def test_a_hop_may_be_one_sample_but_not_less() -> None:
    assert parse_samples("10s", 10.0, option="--hop", at_least=1) == 1
    with pytest.raises(AewatchError, match=r"--hop 5s is 0.5 samples .* 10s or more"):
        parse_samples("5s", 10.0, option="--hop", at_least=1)
    with pytest.raises(AewatchError, match="--hop 0: it needs at least 1 sample"):
        parse_samples("0", 10.0, option="--hop", at_least=1)


def test_window_and_hop_mix_forms() -> None:
    assert window_and_hop("10min", "1min", 10.0) == (60, 6)
    assert window_and_hop("60", "30s", 10.0) == (60, 3)
    assert window_and_hop("10", "10", 10.0) == (10, 10)


def test_a_hop_longer_than_the_window_is_refused() -> None:
    with pytest.raises(AewatchError) as caught:
        window_and_hop("10min", "20min", 10.0)
    message = str(caught.value)
    for word in ("--hop 20min (120 samples)", "--window 10min (60 samples)", "60 samples = 10 min"):
        assert word in message
    with pytest.raises(AewatchError, match="--hop 11"):
        window_and_hop("10", "11", 10.0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (7200.0, "2 h"),
        (5400.0, "90 min"),
        (600.0, "10 min"),
        (100.0, "100 s"),
        (1.5, "1.5 s"),
        (0.5, "500 ms"),
        (602.0, "602 s"),
    ],
)
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_samples_text() -> None:
    assert samples_text(60, 10.0) == "60 samples = 10 min"
    assert samples_text(1, 10.0) == "1 sample = 10 s"
