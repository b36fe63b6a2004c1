"""docs/mqtt.md against the code: every example, field table, count and default it states.

The page marks its examples and tables with hidden comments (``<!-- input ... -->``,
``<!-- output KIND VARIANT -->``, ``<!-- fields KIND -->``, ``<!-- counts STAGE -->``,
``<!-- reasons -->``). These tests parse them and check them against what
:mod:`aewatch.core.decode`, :mod:`aewatch.core.messages`, the intake and pipeline counts
and the metrics endpoint really do, so a change to either side that the other does not follow
fails here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from aewatch.config import Config, InputConfig, OutputConfig
from aewatch.core import messages
from aewatch.core.alerts import AlertEvent, AlertState, Finding
from aewatch.core.decode import DECODE_REASONS, PAYLOAD_FORMATS, decode
from aewatch.core.pipeline import COUNTS, Pipeline
from aewatch.daemon.fleet import Fleet
from aewatch.daemon.intake import Intake, ReadingQueue
from aewatch.daemon.metrics import registry_for
from aewatch.daemon.service import Daemon
from aewatch.daemon.state_key import StateKey

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "mqtt.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
T0 = 1_767_225_600.0
CONFIG: dict[str, Any] = {
    "broker": {"url": "mqtt://127.0.0.1:1"},
    "inputs": [{"topic": "plant/{asset}/{channel}", "payload": "json"}],
    "models": [{"path": "unused.aew"}],
    "metrics": {"port": 0},
}
JSON_TYPES = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@dataclass(frozen=True)
class Marker:
    kind: str  # input, output, fields, counts or reasons
    words: tuple[str, ...]
    start: int
    end: int

    @property
    def options(self) -> dict[str, str]:
        return dict(word.split("=", 1) for word in self.words)

    @property
    def section(self) -> str:
        """The page from this marker to the next one."""
        later = [m.start for m in MARKERS if m.start > self.start]
        return DOC[self.end : min(later, default=len(DOC))]


@dataclass(frozen=True)
class Fence:
    lang: str
    body: str
    start: int


MARKERS = [
    Marker(m[1], tuple(m[2].split()), m.start(), m.end())
    for m in re.finditer(r"<!--\s*(input|output|fields|counts|reasons)\b(.*?)-->", DOC, re.S)
]
FENCES = [
    Fence(m[1], m[2], m.start())
    for m in re.finditer(r"^```(\w*)\n(.*?)^```[ \t]*$", DOC, re.M | re.S)
]


def first_fence(section: str) -> Fence:
    found = re.search(r"^```(\w*)\n(.*?)^```[ \t]*$", section, re.M | re.S)
    assert found, f"no code block after the marker in:\n{section[:300]}"
    return Fence(found[1], found[2], found.start())


def first_table(section: str) -> list[list[str]]:
    """The first markdown table in ``section`` as rows of cells, header first, no rule row."""
    found = re.search(r"(?:^\|.*\|[ \t]*\n?)+", section, re.M)
    assert found, f"no table after the marker in:\n{section[:300]}"
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in found[0].strip().splitlines()
    ]
    return [row for row in rows if not set("".join(row)) <= set("-: ")]


def unquote(cell: str) -> str:
    return cell.strip().strip("`")


def markers(kind: str) -> list[Marker]:
    return [m for m in MARKERS if m.kind == kind]


def marker(kind: str, *words: str) -> Marker:
    (found,) = [m for m in markers(kind) if m.words == words]
    return found


def json_type(value: object) -> str:
    return JSON_TYPES[type(value)]


def shape(value: object) -> object:
    """The JSON layout of ``value``: keys and types, lists by their first element."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return ["array", *(shape(item) for item in value[:1])]
    return json_type(value)


# --- what the code publishes for real events --------------------------------------------


def real_events() -> tuple[AlertEvent, AlertEvent]:
    """A raise and its resolve, as AlertState makes them."""
    alerts = AlertState(raise_after=2, resolve_after=2)
    errors = {"pressure_bar": 0.1, "temp_c": 0.2, "flow_kg_s": 0.9}
    for i, is_anomalous in enumerate([True, True, False, False]):
        event = alerts.update(
            "well-7",
            is_anomalous=is_anomalous,
            at=T0 + i,
            score=0.07 if is_anomalous else 0.01,
            threshold=0.02,
            channel_errors=errors,
            severity=3.5 if is_anomalous else 0.5,
            kind="shift",
            findings=(Finding("flow_kg_s", "shift", 3.41, 3.19, 2.6, 3.5),),
        )
        if event is not None and event.state == "raised":
            raised = event
    assert event is not None
    return raised, event


def code_messages() -> dict[tuple[str, ...], dict[str, Any]]:
    raised, resolved = real_events()
    version = {"model": "well", "model_version": "3f2a9c1b7d4e"}
    denoised = messages.denoised_message(
        "well-7",
        channels=("pressure_bar", "temp_c", "flow_kg_s"),
        timestamps=np.array([T0, T0 + 1.0]),
        values=np.array([[41.2, 182.4, 3.19], [41.3, 182.4, 3.2]], dtype=np.float32),
        **version,
    )
    return {
        ("alert", "raised"): messages.alert_message(raised, **version),
        ("alert", "resolved"): messages.alert_message(resolved, **version),
        ("state", "firing"): signed(messages.state_message(raised, **version)),
        ("state", "normal"): signed(messages.state_message(resolved, **version)),
        ("denoised",): denoised,
    }


def signed(state: dict[str, Any]) -> dict[str, Any]:
    """A state message as the daemon publishes it: signed with its state key."""
    key = StateKey(b"a test key of at least 32 characters", source="the test")
    return dict(json.loads(key.sign(messages.encode(state))))


CODE = code_messages()


def doc_examples() -> dict[tuple[str, ...], dict[str, Any]]:
    examples: dict[tuple[str, ...], dict[str, Any]] = {}
    for found in markers("output"):
        fence = first_fence(found.section)
        assert fence.lang == "json", f"output {found.words} needs a ```json block"
        assert found.words not in examples, f"output {found.words} shown twice"
        examples[found.words] = json.loads(fence.body)
    return examples


# --- outputs ----------------------------------------------------------------------------


def test_every_json_block_is_a_marked_example() -> None:
    for fence in FENCES:
        if fence.lang != "json":
            continue
        before = [m for m in MARKERS if m.end <= fence.start]
        assert before, f"```json block at offset {fence.start} has no marker"
        mark = before[-1]
        assert mark.kind in ("input", "output"), f"```json block after {mark} is not marked"
        between = [f for f in FENCES if mark.end < f.start < fence.start]
        assert not between, f"```json block at offset {fence.start} is not the one {mark} marks"


def test_the_page_shows_one_example_of_every_output_message() -> None:
    assert set(doc_examples()) == set(CODE)


@pytest.mark.parametrize("key", list(CODE), ids=" ".join)
def test_an_output_example_has_the_keys_and_types_the_code_publishes(
    key: tuple[str, ...],
) -> None:
    example = doc_examples()[key]
    assert shape(example) == shape(CODE[key])
    assert example["schema"] == messages.SCHEMA_VERSION


@pytest.mark.parametrize("key", [k for k in CODE if k[0] != "denoised"], ids=" ".join)
def test_an_alert_example_is_self_consistent(key: tuple[str, ...]) -> None:
    example = doc_examples()[key]
    for name in ("started_at", "ended_at", "at", "updated_at"):
        if example.get(name) is not None:
            assert ISO_MS.fullmatch(example[name]), f"{name} = {example[name]!r}"
            assert messages.iso(messages.parse_time(example[name])) == example[name]
    if example["alert_id"] is not None:
        assert example["alert_id"] == f"{example['asset']}@{example['started_at']}"
    shares = [c["share"] for c in example["contributions"]]
    assert shares == sorted(shares, reverse=True)
    if shares:
        assert sum(shares) == pytest.approx(1.0, abs=1e-6)
    expected_state = {"alert": ("raised", "resolved"), "state": ("firing", "normal")}[key[0]]
    assert example["state"] in expected_state
    assert example["state"] == key[1]


def test_the_denoised_example_has_one_row_per_time_and_one_column_per_channel() -> None:
    example = doc_examples()["denoised",]
    assert len(example["values"]) == len(example["ts"]) > 0
    assert {len(row) for row in example["values"]} == {len(example["channels"])}
    assert example["ts"] == sorted(example["ts"])


def test_the_state_examples_parse_as_the_daemon_reads_them_back() -> None:
    examples = doc_examples()
    firing = messages.parse_state(json.dumps(examples["state", "firing"]).encode())
    assert firing is not None
    assert firing.alert_id == examples["alert", "raised"]["alert_id"]
    assert messages.parse_state(json.dumps(examples["state", "normal"]).encode()) is None


@pytest.mark.parametrize("kind", ["alert", "state", "denoised"])
def test_a_field_table_names_exactly_the_keys_with_their_types(kind: str) -> None:
    table = first_table(marker("fields", kind).section)
    assert [cell.lower() for cell in table[0]] == ["field", "type", "meaning"]
    types = {unquote(row[0]): row[1] for row in table[1:]}
    assert len(types) == len(table) - 1, "a field is listed twice"
    published = [message for key, message in CODE.items() if key[0] == kind]
    assert set(types) == set(published[0])
    for message in published:
        for name, value in message.items():
            assert json_type(value) in types[name], f"{kind}.{name} can be {json_type(value)}"


def test_status_payloads_and_default_topics_are_the_codes() -> None:
    for status in (messages.STATUS_ONLINE, messages.STATUS_STOPPED, messages.STATUS_OFFLINE):
        assert f"| `{status}` |" in DOC
    defaults = OutputConfig()
    for template in (
        defaults.alert_topic,
        defaults.state_topic,
        defaults.status_topic,
        defaults.denoised_topic,
    ):
        assert f"`{template}`" in DOC


# --- inputs -----------------------------------------------------------------------------


def test_every_payload_format_has_an_example() -> None:
    assert {m.options["fmt"] for m in markers("input")} == set(PAYLOAD_FORMATS)


@pytest.mark.parametrize("example", markers("input"), ids=lambda m: f"{m.options['fmt']}@{m.start}")
def test_an_input_example_decodes_to_the_readings_shown(example: Marker) -> None:
    options = example.options
    section = re.sub(r"<!--.*?-->", "", example.section, flags=re.S)
    topic, arrival = options["topic"], options["arrival"]
    assert f"`{topic}`" in section, "the example must name its topic"
    assert arrival in section, "the example must name its arrival time"
    source = InputConfig.model_validate(
        {
            "topic": options["template"],
            "payload": options["fmt"],
            "asset_prefix": options.get("prefix", ""),
            **({"timestamp": options["timestamp"]} if "timestamp" in options else {}),
        }
    )
    parts = source.match(topic)
    assert parts is not None, f"{topic} does not match {source.topic}"
    fence = first_fence(section)
    body = fence.body.strip()
    payload = bytes.fromhex(body) if options["fmt"] == "float32_le" else body.encode()
    decoded = decode(
        payload,
        fmt=source.payload,
        asset=parts["asset"],
        channel=parts.get("channel"),
        arrival_s=messages.parse_time(arrival),
        use_payload_time=source.timestamp == "payload",
        timestamp_key=source.timestamp_key,
        value_key=source.value_key,
        values_key=source.values_key,
        period_s=float(options.get("period_s", "1")),
        max_ahead_s=Config.model_validate(CONFIG).limits.max_ahead_s,
    )
    assert decoded.errors == ()
    table = first_table(section[fence.start :])
    assert table[0] == ["asset", "channel", "time", "value"]
    shown = [(row[0], row[1], messages.parse_time(row[2]), float(row[3])) for row in table[1:]]
    got = [(r.asset, r.channel, r.timestamp, r.value) for r in decoded.readings]
    assert [row[:2] for row in got] == [row[:2] for row in shown]
    np.testing.assert_allclose([row[2] for row in got], [row[2] for row in shown], atol=5e-4)
    np.testing.assert_allclose([row[3] for row in got], [row[3] for row in shown], rtol=1e-6)


# --- counts, reasons, metrics, defaults -------------------------------------------------


def intake_counts() -> set[str]:
    config = Config.model_validate(CONFIG)
    counts = Intake(config, Fleet([]), ReadingQueue(1)).counts.as_dict()
    return set(counts) - {"internal_error"}  # a bug caught: aewatch_internal_errors_total


def count_table(stage: str) -> dict[str, str]:
    """Count name -> metric, as the page's table for ``stage`` gives them."""
    table = first_table(marker("counts", stage).section)
    assert [cell.lower() for cell in table[0]] == ["count", "metric", "what"]
    return {unquote(row[0]): unquote(row[1]) for row in table[1:]}


def test_every_decode_reason_is_explained() -> None:
    table = first_table(marker("reasons").section)
    assert [unquote(row[0]) for row in table[1:]] == list(DECODE_REASONS)


def test_every_count_is_listed() -> None:
    intake = {n for n in intake_counts() if not n.startswith("decode_error:")}
    assert set(count_table("intake")) == intake | {"decode_error:REASON"}
    assert set(count_table("pipeline")) == set(COUNTS) == set(Pipeline(Fleet([])).counts.as_dict())
    for name in (*COUNTS, *intake, *DECODE_REASONS):
        assert f"`{name}`" in DOC


def test_each_count_is_exported_as_the_metric_the_page_names() -> None:
    daemon = Daemon(Config.model_validate(CONFIG), fleet=Fleet([]))
    expected: dict[str, float] = {}
    for stage, counts in (("intake", daemon.intake.counts), ("pipeline", daemon.pipeline.counts)):
        for name, metric in count_table(stage).items():
            pairs = (
                [(f"decode_error:{r}", metric.replace("REASON", r)) for r in DECODE_REASONS]
                if name == "decode_error:REASON"
                else [(name, metric)]
            )
            for count, sample in pairs:
                assert sample not in expected, f"{sample} is named for two counts"
                expected[sample] = len(expected) + 1000  # a value no other count has
                if count.startswith("decode_error:"):
                    counts.decode_errors[count.split(":")[1]] = int(expected[sample])
                else:
                    setattr(counts, count, int(expected[sample]))
    exported = generate_latest(registry_for(daemon.metrics_snapshot)).decode()
    samples = dict(line.rsplit(" ", 1) for line in exported.splitlines() if line and line[0] != "#")
    assert {sample: float(samples.get(sample, "nan")) for sample in expected} == expected
    for name in set(re.findall(r"\baewatch_[a-z_]+", DOC)):
        assert any(sample.split("{")[0] == name for sample in samples), name


@pytest.mark.parametrize(
    "setting",
    [
        "broker.client_id",
        "broker.session_expiry_s",
        "limits.max_late_s",
        "limits.max_ahead_s",
        "limits.queue_size",
        "limits.max_payload_bytes",
        "outputs.topic_prefix",
        "outputs.qos",
    ],
)
def test_a_default_the_page_states_is_the_codes(setting: str) -> None:
    config = Config.model_validate(CONFIG)
    section, key = setting.split(".")
    default = getattr(getattr(config, section), key)
    text = f"{default:g}" if isinstance(default, int | float) else str(default)
    mentions = [m.end() for m in re.finditer(re.escape(f"`{setting}`"), DOC)]
    assert mentions, f"{setting} is not mentioned"
    nearby = [re.sub(r"\s+", " ", DOC[end : end + 60]).replace("`", "") for end in mentions]
    assert any(f"default {text}" in near for near in nearby), (setting, text, nearby)
