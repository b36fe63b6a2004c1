"""Tests for aewatch.core.decode: every format, every reason, and no crash on any bytes."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aewatch.core.decode as decode_module
from aewatch.core.decode import (
    DECODE_REASONS,
    PAYLOAD_FORMATS,
    Decoded,
    DecodeError,
    Reading,
    Row,
    decode,
    parse_timestamp,
)

T0 = 1_700_000_000.0
ARRIVAL = T0 + 0.25
PROPERTY = settings(deadline=None, max_examples=150)  # 2 shared cores: keep the suite quick


def run(payload: bytes | str, fmt: str, **options: Any) -> Decoded:
    """Decode with the test defaults: asset ``w1``, channel ``flow``, arrival ``ARRIVAL``."""
    raw = payload.encode() if isinstance(payload, str) else payload
    kwargs: dict[str, Any] = {"asset": "w1", "channel": "flow", "arrival_s": ARRIVAL}
    return decode(raw, fmt=fmt, **(kwargs | options))


def reason(payload: bytes | str, fmt: str, **options: Any) -> str:
    with pytest.raises(DecodeError) as info:
        run(payload, fmt, **options)
    return info.value.reason


# --- number ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"), [("12.5", 12.5), (" -3\n", -3.0), ("1e3", 1000.0), (".5", 0.5)]
)
def test_number_is_read_at_arrival_time(text: str, value: float) -> None:
    assert run(text, "number") == Decoded((Reading("w1", "flow", ARRIVAL, value),))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", "not_number"),
        (b"abc", "not_number"),
        (b"1,5", "not_number"),
        (b"true", "not_number"),
        (b"1_000", "not_number"),
        ("\u0661".encode(), "not_number"),  # an Arabic-Indic digit is not ASCII
        (b"nan", "non_finite"),
        (b"-Infinity", "non_finite"),
        (b"1e999", "non_finite"),
        (b"1e39", "out_of_range"),
        (b"\xff\xfe", "not_utf8"),
    ],
)
def test_number_rejects(payload: bytes, expected: str) -> None:
    assert reason(payload, "number") == expected


def test_number_needs_a_topic_channel() -> None:
    assert reason("1", "number", channel=None) == "no_channel"


# --- json -----------------------------------------------------------------------------


def test_json_reads_seconds_milliseconds_and_iso() -> None:
    assert run('{"ts": 1700000000, "value": 1}', "json").readings[0].timestamp == T0
    assert run('{"ts": 1700000000250, "value": 1}', "json").readings[0].timestamp == ARRIVAL
    iso = '{"ts": "2023-11-14T22:13:20Z", "value": 1}'
    assert run(iso, "json").readings[0].timestamp == T0


def test_json_channel_from_payload_when_topic_has_none() -> None:
    decoded = run('{"ts": 1700000000, "value": 4, "channel": "temp"}', "json", channel=None)
    assert decoded.readings == (Reading("w1", "temp", T0, 4.0),)
    topic_wins = run('{"ts": 1700000000, "value": 4, "channel": "temp"}', "json")
    assert topic_wins.readings[0].channel == "flow"


def test_json_custom_keys_and_arrival_time() -> None:
    decoded = run('{"time": 5, "v": "7.5"}', "json", timestamp_key="time", value_key="v")
    assert decoded.readings == (Reading("w1", "flow", 5.0, 7.5),)
    at_arrival = run('{"ts": 5, "value": 1}', "json", use_payload_time=False)
    assert at_arrival.readings[0].timestamp == ARRIVAL
    no_ts = run('{"value": 1}', "json", use_payload_time=False)
    assert no_ts.readings[0].timestamp == ARRIVAL


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("[1]", "bad_shape"),
        ("null", "bad_shape"),
        ("{", "not_json"),
        ('{"value": 1}', "missing_key"),
        ('{"ts": 1}', "missing_key"),
        ('{"ts": 1, "value": null}', "not_number"),
        ('{"ts": 1, "value": true}', "not_number"),
        ('{"ts": 1, "value": {"a": 1}}', "not_number"),
        ('{"ts": 1, "value": NaN}', "non_finite"),
        ('{"ts": 1, "value": -Infinity}', "non_finite"),
        ('{"ts": 1, "value": 1e400}', "non_finite"),
        ('{"ts": 1, "value": ' + "9" * 400 + "}", "non_finite"),
        ('{"ts": 1, "value": "nan"}', "non_finite"),
        ('{"ts": -1, "value": 1}', "bad_timestamp"),
        ('{"ts": 1e15, "value": 1}', "bad_timestamp"),
        ('{"ts": true, "value": 1}', "bad_timestamp"),
        ('{"ts": "yesterday", "value": 1}', "bad_timestamp"),
        ('{"ts": NaN, "value": 1}', "bad_timestamp"),
    ],
)
def test_json_rejects(payload: str, expected: str) -> None:
    assert reason(payload, "json") == expected


def test_json_channel_rules() -> None:
    assert reason('{"ts": 1, "value": 1}', "json", channel=None) == "no_channel"
    assert reason('{"ts": 1, "value": 1, "channel": 3}', "json", channel=None) == "bad_channel"


def test_json_allows_a_byte_order_mark() -> None:
    assert run(b'\xef\xbb\xbf{"ts": 1, "value": 2}', "json").readings[0].value == 2.0


def test_future_timestamps_are_rejected_when_asked() -> None:
    payload = '{"ts": 1700000100, "value": 1}'
    assert run(payload, "json").readings[0].timestamp == T0 + 100
    assert reason(payload, "json", max_ahead_s=60) == "future_timestamp"


def test_deep_nesting_is_not_json() -> None:
    assert reason("[" * 60_000, "json_batch") == "not_json"
    assert reason('{"a":' * 12_000, "json") == "not_json"


def test_too_large_is_checked_before_parsing() -> None:
    assert reason(b"\xff" * 101, "number", max_bytes=100) == "too_large"
    assert run(b"0" * 100, "number", max_bytes=100).readings[0].value == 0.0


def test_unknown_format_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="unknown payload format 'xml'") as info:
        run("1", "xml")
    assert not isinstance(info.value, DecodeError)


# --- json_multi -----------------------------------------------------------------------


def test_multi_nested_and_flat_forms_agree() -> None:
    nested = run('{"ts": 1700000000, "values": {"flow": 1, "temp": 2.5}}', "json_multi")
    flat = run('{"ts": 1700000000, "flow": 1, "temp": 2.5}', "json_multi", channel=None)
    expected = (Reading("w1", "flow", T0, 1.0), Reading("w1", "temp", T0, 2.5))
    assert nested == flat == Decoded((Row("w1", ("flow", "temp"), T0, (1.0, 2.5)),))
    assert nested.readings == expected and nested.count == 2


def test_multi_keeps_good_channels_and_reports_bad_ones() -> None:
    payload = '{"ts": 1, "flow": 1, "temp": NaN, "state": "open", "": 3, "rpm": 1e39}'
    decoded = run(payload, "json_multi")
    assert [r.channel for r in decoded.readings] == ["flow"]
    assert [(e.reason, e.channel) for e in decoded.errors] == [
        ("non_finite", "temp"),
        ("not_number", "state"),
        ("bad_channel", None),
        ("out_of_range", "rpm"),
    ]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"ts": 1}', "missing_key"),
        ('{"ts": 1, "values": {}}', "missing_key"),
        ('{"ts": 1, "values": [1, 2]}', "bad_shape"),
        ('{"flow": 1}', "missing_key"),
        ('{"ts": "x", "flow": 1}', "bad_timestamp"),
        ("[]", "bad_shape"),
    ],
)
def test_multi_rejects(payload: str, expected: str) -> None:
    assert reason(payload, "json_multi") == expected


# --- json_batch -----------------------------------------------------------------------


def test_batch_mixes_single_and_multi_items_and_skips_bad_ones() -> None:
    payload = json.dumps(
        [
            {"ts": 1, "value": 1.0},
            {"ts": 2, "values": {"flow": 2.0, "temp": 3.0}},
            "junk",
            {"ts": "never", "value": 4.0},
            {"ts": 3, "value": None},
            {"ts": 4, "temp": 5.0},
        ]
    )
    decoded = run(payload, "json_batch")
    assert decoded.readings == (
        Reading("w1", "flow", 1.0, 1.0),
        Reading("w1", "flow", 2.0, 2.0),
        Reading("w1", "temp", 2.0, 3.0),
        Reading("w1", "temp", 4.0, 5.0),
    )
    assert [e.reason for e in decoded.errors] == ["bad_shape", "bad_timestamp", "not_number"]


def test_batch_without_payload_time_is_consecutive_samples() -> None:
    payload = '[{"value": 1}, {"value": 2}, {"value": 3}]'
    decoded = run(payload, "json_batch", use_payload_time=False, period_s=0.5)
    assert [r.timestamp for r in decoded.readings] == [ARRIVAL - 1.0, ARRIVAL - 0.5, ARRIVAL]
    assert reason(payload, "json_batch", use_payload_time=False) == "no_period"


def test_empty_batch_is_empty_and_non_array_is_bad_shape() -> None:
    assert run("[]", "json_batch") == Decoded(())
    assert reason('{"ts": 1, "value": 1}', "json_batch") == "bad_shape"


# --- float32_le -----------------------------------------------------------------------


def test_float32_samples_end_at_arrival() -> None:
    samples = np.array([1.5, -2.0, 3.25], dtype="<f4")
    decoded = run(samples.tobytes(), "float32_le", period_s=0.1)
    assert [r.value for r in decoded.readings] == [1.5, -2.0, 3.25]
    assert np.allclose([r.timestamp for r in decoded.readings], ARRIVAL - np.array([0.2, 0.1, 0]))
    assert decoded.readings[-1].timestamp == ARRIVAL
    assert decoded.errors == ()


def test_float32_is_little_endian_and_drops_non_finite_samples() -> None:
    payload = struct.pack("<4f", 1.0, math.nan, math.inf, 4.0)
    decoded = run(payload, "float32_le", period_s=1.0)
    assert [(r.timestamp, r.value) for r in decoded.readings] == [
        (ARRIVAL - 3, 1.0),
        (ARRIVAL, 4.0),
    ]
    assert [(e.reason, e.channel) for e in decoded.errors] == [("non_finite", "flow")] * 2


def test_a_signalling_nan_sample_is_dropped_like_any_nan() -> None:
    """0x7f810000 is a signalling NaN: its cast to float64 raised numpy's invalid flag
    (an error where warnings are errors; found by the random-bytes property below)."""
    decoded = run(b"\x00\x00\x81\x7f\x00\x00\x00\x00", "float32_le", period_s=1.0)
    assert [(r.timestamp, r.value) for r in decoded.readings] == [(ARRIVAL, 0.0)]
    assert [e.reason for e in decoded.errors] == ["non_finite"]


@pytest.mark.parametrize(
    ("payload", "options", "expected"),
    [
        (b"\x00" * 4, {}, "no_period"),
        (b"\x00" * 4, {"period_s": 0.0}, "no_period"),
        (b"\x00" * 4, {"period_s": math.nan}, "no_period"),
        (b"\x00" * 5, {"period_s": 1.0}, "bad_shape"),
        (b"", {"period_s": 1.0}, "bad_shape"),
        (b"\x00" * 4, {"period_s": 1.0, "channel": None}, "no_channel"),
    ],
)
def test_float32_rejects(payload: bytes, options: dict[str, Any], expected: str) -> None:
    assert reason(payload, "float32_le", **options) == expected


# --- parse_timestamp ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (0, 0.0),
        (1_700_000_000, T0),
        (1_700_000_000.5, T0 + 0.5),
        (1_700_000_000_000, T0),
        ("1700000000", T0),
        (" 1700000000250 ", ARRIVAL),
        ("2023-11-14T22:13:20", T0),  # naive is UTC
        ("2023-11-14T23:13:20+01:00", T0),
        ("2023-11-14T22:13:20.250Z", ARRIVAL),
        ("2023-11-14", T0 - 80_000),
    ],
)
def test_parse_timestamp_accepts(raw: object, seconds: float) -> None:
    assert parse_timestamp(raw) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize(
    "raw",
    [None, True, [], {}, -5, 1e15, math.inf, math.nan, "", "nan", "0001-01-01", "1e400", 10**400],
)
def test_parse_timestamp_rejects(raw: object) -> None:
    with pytest.raises(DecodeError) as info:
        parse_timestamp(raw)
    assert info.value.reason == "bad_timestamp"


# --- nothing crashes ------------------------------------------------------------------


def json_documents(integers: st.SearchStrategy[int]) -> st.SearchStrategy[object]:
    """JSON values, nested, with the keys and strings the decoders look for."""
    return st.recursive(
        st.none()
        | st.booleans()
        | integers
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=30)
        | st.sampled_from(["ts", "value", "values", "2023-11-14T22:13:20Z", "1e3", "nan", "0"]),
        lambda children: (
            st.lists(children, max_size=5)
            | st.dictionaries(
                st.sampled_from(["ts", "value", "values", "channel", "flow", ""])
                | st.text(max_size=8),
                children,
                max_size=5,
            )
        ),
        max_leaves=20,
    )


json_values = json_documents(st.integers(min_value=-(10**30), max_value=10**30))

decode_options = st.fixed_dictionaries(
    {
        "fmt": st.sampled_from(PAYLOAD_FORMATS),
        "channel": st.sampled_from(["flow", None, ""]),
        "arrival_s": st.floats(min_value=0, max_value=2e9),
        "use_payload_time": st.booleans(),
        "period_s": st.sampled_from([None, 0.0, -1.0, 1e-3, 1.0, math.nan, math.inf]),
        "max_bytes": st.sampled_from([16, 65536]),
        "max_ahead_s": st.sampled_from([None, 0.0, 60.0]),
    }
)


def assert_decodes_or_raises_decode_error(payload: bytes, options: dict[str, Any]) -> None:
    try:
        decoded = decode(payload, asset="w1", **options)
    except DecodeError as err:
        assert err.reason in DECODE_REASONS
        return
    assert all(e.reason in DECODE_REASONS for e in decoded.errors)
    for r in decoded.readings:
        assert isinstance(r.channel, str) and r.channel
        assert math.isfinite(r.timestamp)
        assert math.isfinite(r.value)
        assert np.isfinite(np.float32(r.value))


@PROPERTY
@given(payload=st.binary(max_size=64), options=decode_options)
def test_random_bytes_never_raise_anything_but_decode_error(
    payload: bytes, options: dict[str, Any]
) -> None:
    assert_decodes_or_raises_decode_error(payload, options)


@PROPERTY
@given(document=json_values, options=decode_options)
def test_random_json_never_raises_anything_but_decode_error(
    document: object, options: dict[str, Any]
) -> None:
    payload = json.dumps(document).encode()
    assert_decodes_or_raises_decode_error(payload, options | {"max_bytes": 65536})


@settings(deadline=None, max_examples=60)
@given(
    values=st.dictionaries(st.text(min_size=1, max_size=5), json_values, max_size=6),
    ts=json_values,
    options=decode_options,
)
def test_random_json_objects_never_raise_anything_but_decode_error(
    values: dict[str, Any], ts: object, options: dict[str, Any]
) -> None:
    documents: list[object] = [{"ts": ts, **values}, {"ts": ts, "values": values}]
    documents.append([*documents, {"ts": ts, "value": ts}])
    for document in documents:
        payload = json.dumps(document).encode()
        assert_decodes_or_raises_decode_error(payload, options | {"max_bytes": 65536})


# --- orjson first, json's rules --------------------------------------------------------


def outcome(payload: bytes, options: dict[str, Any]) -> object:
    """What decoding gives: the readings and each error's reason, channel and message."""
    try:
        decoded = decode(payload, asset="w1", **options)
    except DecodeError as err:
        return ("raised", err.reason, err.channel, str(err))
    errors = [(e.reason, e.channel, str(e)) for e in decoded.errors]
    return (decoded.readings, errors)


def json_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every payload take the ``json`` path, as before orjson parsed first."""

    def refuse(_: bytes) -> object:
        raise orjson.JSONDecodeError("refused", "", 0)

    monkeypatch.setattr(decode_module.orjson, "loads", refuse)


def assert_same_outcome_when(
    change: Callable[[pytest.MonkeyPatch], None], payload: bytes, options: dict[str, Any]
) -> None:
    """Decoding ``payload`` gives the same outcome with ``change`` made as without it."""
    expected = outcome(payload, options)
    with pytest.MonkeyPatch.context() as patch:
        change(patch)
        assert outcome(payload, options) == expected


# orjson reads an integer past 64 bits as a float (see decode._load_json): within 64 bits
# both parsers must agree on everything.
json_64_bit = json_documents(st.integers(min_value=-(2**63), max_value=2**64 - 1))


@PROPERTY
@given(document=json_64_bit, bom=st.booleans(), options=decode_options)
def test_orjson_decodes_every_json_document_as_json_alone_does(
    document: object, bom: bool, options: dict[str, Any]
) -> None:
    payload = (b"\xef\xbb\xbf" if bom else b"") + json.dumps(document).encode()
    assert_same_outcome_when(json_alone, payload, options | {"max_bytes": 65536})


@PROPERTY
@given(payload=st.binary(max_size=64), options=decode_options)
def test_orjson_decodes_random_bytes_as_json_alone_does(
    payload: bytes, options: dict[str, Any]
) -> None:
    assert_same_outcome_when(json_alone, payload, options)


def test_what_orjson_refuses_is_read_by_json(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    loads = orjson.loads

    def counted(payload: bytes) -> object:
        calls.append(payload)
        return loads(payload)

    monkeypatch.setattr(decode_module.orjson, "loads", counted)
    payload = '{"ts": 1, "flow": 1.5, "temp": NaN, "rpm": "\\ud800", "head": 1e400}'
    decoded = run(payload, "json_multi")
    assert decoded.readings == (Reading("w1", "flow", 1.0, 1.5),)
    assert [(e.reason, e.channel) for e in decoded.errors] == [
        ("non_finite", "temp"),
        ("not_number", "rpm"),
        ("non_finite", "head"),
    ]
    assert calls == [payload.encode()]  # orjson was asked first and refused it
    assert run('{"ts": 1, "flow": 2.5}', "json_multi").readings[0].value == 2.5
    assert len(calls) == 2


def test_an_integer_past_64_bits_reads_as_its_float() -> None:
    big = 2**70 + 1
    decoded = run(f'{{"ts": 1, "flow": {big}}}', "json_multi")
    assert decoded.readings[0].value == float(big)


channel_values = st.dictionaries(
    st.sampled_from(["flow", "temp", " ", "", "ts", "rpm"]) | st.text(max_size=4),
    st.floats() | st.integers(-(10**40), 10**40) | st.sampled_from([3.5e38, -3.5e38, 1e308]),
    max_size=6,
)


@PROPERTY
@given(values=channel_values, is_nested=st.booleans(), ts=st.sampled_from([1, 1.5, "x"]))
def test_a_row_of_plain_floats_reads_as_the_channel_by_channel_path_reads_it(
    values: dict[str, Any], is_nested: bool, ts: object
) -> None:
    document = {"ts": ts, "values": values} if is_nested else {"ts": ts, **values}
    payload = json.dumps(document).encode()
    options = {"fmt": "json_multi", "channel": None, "arrival_s": ARRIVAL}
    options |= {"use_payload_time": True, "period_s": None, "max_bytes": 65536}

    def channel_by_channel(patch: pytest.MonkeyPatch) -> None:
        patch.setattr(decode_module, "_plain_row", lambda *_: None)

    assert_same_outcome_when(channel_by_channel, payload, options)
