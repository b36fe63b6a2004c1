"""The configuration schema: values, cross-field rules, secret references, topic templates."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr, ValidationError

from aewatch.config import (
    BrokerConfig,
    Config,
    InputConfig,
    LoggingConfig,
    OutputConfig,
    SecretRef,
    TlsConfig,
)
from aewatch.config.schema import RuleError, SparkplugConfig
from aewatch.errors import ConfigError

MINIMAL: dict[str, Any] = {
    "broker": {"url": "mqtt://localhost"},
    "inputs": [{"topic": "plant/{asset}/{channel}", "payload": "json"}],
    "models": [{"path": "well.aew"}],
}


def _rule(exc: pytest.ExceptionInfo[ValidationError]) -> RuleError:
    cause = exc.value.errors()[0]["ctx"]["error"]
    assert isinstance(cause, RuleError)
    return cause


def _all_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    found = [model]
    for field in model.model_fields.values():
        subs = (BrokerConfig, TlsConfig, SecretRef, InputConfig, OutputConfig, LoggingConfig)
        for sub in (*subs, SparkplugConfig):
            if sub.__name__ in str(field.annotation) and sub not in found:
                found.extend(_all_models(sub))
    return found


def test_minimal_config_gets_the_documented_defaults() -> None:
    config = Config.model_validate(MINIMAL)
    assert config.broker.port == 1883
    assert (config.broker.client_id, config.broker.protocol, config.broker.qos) == (
        "aewatch",
        "5",
        1,
    )
    assert config.broker.clean_start is False
    assert config.outputs.alert_topic_for("w1") == "aewatch/alerts/w1"
    assert config.outputs.status_topic_name == "aewatch/status"
    assert config.limits.batch_size == 256
    assert config.metrics.port == 9108


def test_every_model_forbids_unknown_keys_is_frozen_and_documents_units() -> None:
    for model in {*_all_models(Config)} | {type(Config.model_validate(MINIMAL).limits)}:
        assert model.model_config.get("extra") == "forbid", model
        assert model.model_config.get("frozen") is True, model
        for name, field in model.model_fields.items():
            assert field.description and "Unit: " in field.description, (model, name)


@pytest.mark.parametrize(
    ("url", "port", "tls"),
    [
        ("mqtt://broker", 1883, False),
        ("mqtts://broker", 8883, True),
        ("mqtt://10.0.0.5:1884", 1884, False),
        ("mqtts://[::1]:9000", 9000, True),
    ],
)
def test_broker_url_gives_host_port_and_tls(url: str, port: int, tls: bool) -> None:
    broker = BrokerConfig(url=url)
    assert (broker.port, broker.uses_tls) == (port, tls)


@pytest.mark.parametrize(
    "url", ["http://broker", "broker:1883", "mqtt://", "mqtt://u:p@broker", "mqtt://h:99999"]
)
def test_bad_broker_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValidationError):
        BrokerConfig(url=url)


def test_url_credentials_never_echo_in_the_error() -> None:
    with pytest.raises(ValidationError) as exc:
        BrokerConfig(url="mqtt://u:hunter2@broker")
    assert "hunter2" not in exc.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    ("fields", "blamed"),
    [
        ({"username": "u"}, "password"),
        ({"password": {"env": "P"}}, "username"),
        ({"tls": {}}, "tls"),
        ({"reconnect_min_s": 10, "reconnect_max_s": 5}, "reconnect_max_s"),
        ({"protocol": "3.1.1", "session_expiry_s": 60}, "session_expiry_s"),
    ],
)
def test_broker_cross_field_rules_blame_one_key(fields: dict[str, Any], blamed: str) -> None:
    with pytest.raises(ValidationError) as exc:
        BrokerConfig.model_validate({"url": "mqtt://h", **fields})
    assert _rule(exc).key == (blamed,)


def test_mqtts_without_tls_section_uses_system_cas_and_yaml_integer_protocol_is_read() -> None:
    broker = BrokerConfig.model_validate({"url": "mqtts://h", "protocol": 5})
    assert broker.tls is None and broker.protocol == "5"


def test_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValidationError) as exc:
        TlsConfig.model_validate({"cert_file": "c.pem"})
    assert _rule(exc).key == ("key_file",)


@pytest.mark.parametrize("literal", ["hunter2", 1234])
def test_a_literal_password_is_rejected_with_the_three_forms(literal: object) -> None:
    with pytest.raises(ValidationError) as exc:
        BrokerConfig.model_validate({"url": "mqtt://h", "username": "u", "password": literal})
    message = str(exc.value.errors()[0]["ctx"]["error"])
    assert "{file:" in message and "{env:" in message and "{credential:" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("ref", [{}, {"env": "A", "file": "b"}, {"env": "not a name"}])
def test_a_secret_reference_names_exactly_one_valid_source(ref: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        SecretRef.model_validate(ref)


def test_a_resolved_secret_never_shows_in_repr_or_str() -> None:
    ref = SecretRef(env="PW").with_value(SecretStr("hunter2"))
    config = Config.model_validate(MINIMAL)
    broker = config.broker.model_copy(update={"username": "u", "password": ref})
    whole = config.model_copy(update={"broker": broker})
    for text in (repr(whole), str(whole), repr(ref), str(ref.value), whole.model_dump_json()):
        assert "hunter2" not in text
    assert ref.value.get_secret_value() == "hunter2"


def test_an_unresolved_secret_says_how_to_resolve_it() -> None:
    with pytest.raises(ConfigError, match="load_config"):
        _ = SecretRef(env="PW").value


def test_topic_template_subscription_and_match() -> None:
    source = InputConfig(topic="plant/{site}/well/{asset}/{channel}", payload="json")
    assert source.subscription == "plant/+/well/+/+"
    assert source.match("plant/n/well/w7/p") == {"site": "n", "asset": "w7", "channel": "p"}
    assert source.match("plant/n/pump/w7/p") is None
    assert source.match("plant/n/well/w7") is None
    assert source.match("plant/n/well//p") is None


def test_asset_prefix_is_put_before_the_asset_part() -> None:
    source = InputConfig(topic="m/{asset}", payload="json_multi", asset_prefix="mine-")
    assert source.match("m/fan2") == {"asset": "mine-fan2"}


@pytest.mark.parametrize(
    "topic",
    ["plant/{site}/{channel}", "plant/+/{asset}", "plant/#", "plant/x{asset}", "{asset}/{asset}"],
)
def test_bad_topic_templates_are_rejected(topic: str) -> None:
    with pytest.raises(ValidationError):
        InputConfig(topic=topic, payload="json_multi")


@pytest.mark.parametrize(
    ("fields", "blamed"),
    [
        ({"topic": "p/{asset}", "payload": "number"}, "topic"),
        ({"topic": "p/{asset}/{channel}", "payload": "json_multi"}, "payload"),
        (
            {"topic": "p/{asset}/{channel}", "payload": "float32_le", "timestamp": "payload"},
            "timestamp",
        ),
    ],
)
def test_payload_must_fit_the_topic(fields: dict[str, str], blamed: str) -> None:
    with pytest.raises(ValidationError) as exc:
        InputConfig.model_validate(fields)
    assert _rule(exc).key == (blamed,)


def test_unstamped_payloads_default_to_arrival_time() -> None:
    assert InputConfig(topic="p/{asset}/{channel}", payload="number").timestamp == "arrival"
    assert InputConfig(topic="p/{asset}/{channel}", payload="json").timestamp == "payload"


_LEVEL = st.text(alphabet="abcxyz019-_.", min_size=1, max_size=6)
_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True).filter(lambda n: n != "asset")


@st.composite
def _templates(draw: st.DrawFn) -> tuple[str, dict[str, str], str]:
    """A template, values for its parts, and the topic they make."""
    names = ["asset", *draw(st.lists(_NAME, max_size=3, unique=True))]
    levels: list[str] = [f"{{{n}}}" for n in names] + draw(st.lists(_LEVEL, max_size=3))
    levels = draw(st.permutations(levels))
    values = {n: draw(_LEVEL) for n in names}
    topic = "/".join(values[lv[1:-1]] if lv.startswith("{") else lv for lv in levels)
    return "/".join(levels), values, topic


def _filter_matches(subscription: str, topic: str) -> bool:
    pattern = "/".join("[^/]+" if lv == "+" else re.escape(lv) for lv in subscription.split("/"))
    return re.fullmatch(pattern, topic) is not None


@given(_templates())
def test_a_topic_built_from_a_template_matches_it_and_its_filter(
    case: tuple[str, dict[str, str], str],
) -> None:
    template, values, topic = case
    source = InputConfig(topic=template, payload="json_multi")
    assert source.match(topic) == values
    assert _filter_matches(source.subscription, topic)
    assert source.subscription.count("+") == len(values)


@given(_templates(), st.text(alphabet="abc/+", max_size=12))
def test_match_agrees_with_the_subscription_filter(
    case: tuple[str, dict[str, str], str], topic: str
) -> None:
    source = InputConfig(topic=case[0], payload="json_multi")
    assert (source.match(topic) is not None) == _filter_matches(source.subscription, topic)


def test_models_first_match_wins_and_unknown_assets_get_none() -> None:
    config = Config.model_validate(
        {
            **MINIMAL,
            "models": [
                {"path": "a.aew", "assets": "well-7"},
                {"path": "b.aew", "assets": "well-*"},
            ],
        }
    )
    assert config.model_for("well-7") is config.models[0]
    assert config.model_for("well-3") is config.models[1]
    assert config.model_for("fan-1") is None


def test_a_catch_all_model_before_others_is_an_error() -> None:
    with pytest.raises(ValidationError) as exc:
        Config.model_validate({**MINIMAL, "models": [{"path": "a.aew"}, {"path": "b.aew"}]})
    assert _rule(exc).key == ("models", 1, "assets")


def test_inputs_may_not_subscribe_to_the_daemons_own_outputs() -> None:
    loop = {**MINIMAL, "inputs": [{"topic": "{a}/{b}/{asset}", "payload": "json_multi"}]}
    with pytest.raises(ValidationError) as exc:
        Config.model_validate(loop)
    assert _rule(exc).key == ("inputs", 0, "topic")


@pytest.mark.parametrize(
    "outputs",
    [
        {"alert_topic": "{prefix}/alerts"},
        {"status_topic": "{prefix}/{asset}"},
        {"alert_topic": "{prefix}/{site}/{asset}"},
        {"topic_prefix": "a/+"},
        {"state_topic": "{prefix}/alerts/{asset}"},
    ],
)
def test_bad_output_topics_are_rejected(outputs: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        OutputConfig.model_validate(outputs)


def test_logging_json_key_and_lowercase_level() -> None:
    logging = LoggingConfig.model_validate({"json": True, "level": "debug"})
    assert (logging.as_json, logging.level) == (True, "DEBUG")


# --- sparkplug_b inputs -------------------------------------------------------------------


def _sparkplug(**settings: Any) -> dict[str, Any]:
    return {"payload": "sparkplug_b", "sparkplug": {"group": "north", **settings}}


def test_a_sparkplug_input_subscribes_to_its_group_with_the_documented_defaults() -> None:
    source = InputConfig.model_validate(_sparkplug())
    assert source.subscription == "spBv1.0/north/#"
    assert source.sparkplug is not None
    assert (source.sparkplug.device_asset, source.sparkplug.node_asset) == (
        "{node}/{device}",
        "{node}",
    )
    assert (source.sparkplug.rebirth, source.sparkplug.channels) == (True, {})
    assert source.timestamp == "payload"
    every = InputConfig.model_validate({"payload": "sparkplug_b", "sparkplug": {"group": "+"}})
    assert every.subscription == "spBv1.0/+/#"
    assert every.takes_sparkplug("spBv1.0/south/NDATA/gw1")
    assert not source.takes_sparkplug("spBv1.0/south/NDATA/gw1")
    assert source.match("spBv1.0/north/NDATA/gw1") is None  # no template to match


@pytest.mark.parametrize(
    ("given", "key", "says"),
    [
        ({"payload": "sparkplug_b"}, ("sparkplug",), "sparkplug: {group: plant-north}"),
        ({**_sparkplug(), "topic": "a/{asset}"}, ("topic",), "remove topic"),
        ({**_sparkplug(), "value_key": "v"}, ("value_key",), "remove value_key"),
        ({**_sparkplug(), "asset_prefix": "x-"}, ("asset_prefix",), "sparkplug.device_asset"),
        ({"payload": "json"}, ("topic",), "needs a topic template"),
        (
            {"topic": "a/{asset}", "payload": "json_multi", "sparkplug": {"group": "g"}},
            ("sparkplug",),
            "only for payload: sparkplug_b",
        ),
        (_sparkplug(device_asset="{node}"), ("sparkplug", "device_asset"), "needs {device}"),
        (
            _sparkplug(node_asset="{node}/{device}"),
            ("sparkplug", "node_asset"),
            "unknown part 'device'",
        ),
        (_sparkplug(device_asset="{node}/{dev}"), ("sparkplug", "device_asset"), "'dev'"),
        (_sparkplug(device_asset="{device}/+"), ("sparkplug", "device_asset"), "wildcards"),
        (
            _sparkplug(channels={"Pump/Flow": "flow", "Pump/Flow 2": "flow"}),
            ("sparkplug", "channels", "Pump/Flow 2"),
            "both become channel 'flow'",
        ),
    ],
)
def test_a_sparkplug_mistake_names_the_key_and_the_fix(
    given: dict[str, Any], key: tuple[str, ...], says: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        InputConfig.model_validate(given)
    error = exc.value.errors()[0]
    cause = error["ctx"]["error"]
    where = tuple(str(part) for part in error["loc"])
    assert (*where, *cause.key) == key if isinstance(cause, RuleError) else where == key
    assert says in str(cause)


@pytest.mark.parametrize("group", ["a/b", "a+", "#", ""])
def test_a_group_is_one_topic_level(group: str) -> None:
    with pytest.raises(ValidationError, match='or "\\+" for every group'):
        InputConfig.model_validate(_sparkplug(group=group))


@pytest.mark.parametrize("groups", [["north", "north"], ["+", "north"], ["north", "+"]])
def test_one_sparkplug_input_per_group(groups: list[str]) -> None:
    inputs = [{"payload": "sparkplug_b", "sparkplug": {"group": g}} for g in groups]
    with pytest.raises(ValidationError) as exc:
        Config.model_validate({**MINIMAL, "inputs": inputs})
    rule = _rule(exc)
    assert rule.key == ("inputs", 1, "sparkplug", "group")
    assert "inputs[0] already reads this Sparkplug group" in str(rule)
    two = [{"payload": "sparkplug_b", "sparkplug": {"group": g}} for g in ("north", "south")]
    assert len(Config.model_validate({**MINIMAL, "inputs": two}).inputs) == 2
