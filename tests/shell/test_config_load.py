"""load_config on real files: line-numbered errors, secrets from env/file/systemd credentials,
the example config, the generated reference and ``aewatch check-config``."""

from __future__ import annotations

import argparse
import itertools
import re
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from aewatch.commands import check_config
from aewatch.config import Config, load_config, render_reference
from aewatch.config.load import config_json_schema
from aewatch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "aewatch.example.yaml"
SECRET = "s3cr3t-Pa55"

GOOD = """\
broker:
  url: mqtt://localhost:1883
  username: aewatch
  password: {env: AEWATCH_TEST_PW}
inputs:
  - topic: plant/{site}/well/{asset}/{channel}
    payload: json
models:
  - path: models/well.aew
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aewatch.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _errors(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ=environ or {})
    return str(exc.value)


def test_a_good_file_loads_with_paths_relative_to_it(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GOOD), environ={"AEWATCH_TEST_PW": SECRET})
    assert config.models[0].path == tmp_path / "models" / "well.aew"
    assert config.broker.password is not None
    assert config.broker.password.value.get_secret_value() == SECRET


def test_unknown_key_names_its_line_and_suggests_the_right_one(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("  url:", "  keepalive: 30\n  url:"))
    message = _errors(path, {"AEWATCH_TEST_PW": SECRET})
    assert message.startswith(f"{path}:2  broker.keepalive\n")
    assert "unknown key; did you mean 'keepalive_s'?" in message


def test_a_retired_metrics_key_still_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path, GOOD + "metrics:\n  per_asset_scores: true\n  per_asset_cap: 5\n")
    config = load_config(path, environ={"AEWATCH_TEST_PW": SECRET})
    assert config.metrics.port == 9108
    warned = [r.getMessage() for r in caplog.records if r.name == "aewatch.config"]
    assert len(warned) == 2 and all("no longer used" in w for w in warned)


def test_bad_value_names_file_line_key_path_value_and_fix(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("payload: json", "payload: jsn"))
    message = _errors(path, {"AEWATCH_TEST_PW": SECRET})
    first, fix = message.splitlines()[:2]
    assert first == f'{path}:7  inputs[0].payload = "jsn"'
    assert fix.startswith("  ") and "json_multi" in fix


def test_all_errors_are_reported_in_line_order(tmp_path: Path) -> None:
    text = GOOD.replace("localhost:1883", "localhost:1883\n  qos: 3").replace(
        "payload: json", "payload: json\n    timestmp: arrival"
    )
    message = _errors(_write(tmp_path, text), {"AEWATCH_TEST_PW": SECRET})
    lines = [int(m) for m in re.findall(r"^\S+:(\d+)  ", message, flags=re.M)]
    assert lines == [3, 9]
    assert "did you mean 'timestamp'?" in message


def test_a_cross_field_rule_blames_the_key_it_needs(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("  password: {env: AEWATCH_TEST_PW}\n", ""))
    assert "broker.password\n  a username needs a password" in _errors(path)


def test_a_plain_password_is_rejected_and_never_echoed(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("{env: AEWATCH_TEST_PW}", SECRET))
    message = _errors(path)
    assert f"{path}:4  broker.password = <hidden>" in message
    assert "{file:" in message and "{env:" in message and "{credential:" in message
    assert SECRET not in message


def test_secret_from_a_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n")
    path = _write(tmp_path, GOOD.replace("{env: AEWATCH_TEST_PW}", "{file: pw}"))
    config = load_config(path, environ={})
    assert config.broker.password is not None
    assert config.broker.password.value.get_secret_value() == SECRET
    assert SECRET not in repr(config) and SECRET not in str(config)


def test_secret_from_a_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-pw").write_text(SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = _write(tmp_path, GOOD.replace("{env: AEWATCH_TEST_PW}", "{credential: mqtt-pw}"))
    config = load_config(path)
    assert config.broker.password is not None
    assert config.broker.password.value.get_secret_value() == SECRET


def test_secret_from_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEWATCH_TEST_PW", SECRET)
    config = load_config(_write(tmp_path, GOOD))
    assert config.broker.password is not None
    assert config.broker.password.value.get_secret_value() == SECRET
    assert SECRET not in repr(config)


@pytest.mark.parametrize(
    ("ref", "environ", "says"),
    [
        ("{env: AEWATCH_TEST_PW}", {}, "environment variable AEWATCH_TEST_PW is not set"),
        ("{file: missing-pw}", {}, "cannot read"),
        ("{credential: mqtt-pw}", {}, "LoadCredential=mqtt-pw:PATH"),
        ("{credential: mqtt-pw}", {"CREDENTIALS_DIRECTORY": "/nonexistent"}, "LoadCredential="),
        ("{env: AEWATCH_TEST_PW}", {"AEWATCH_TEST_PW": ""}, "is empty"),
    ],
)
def test_a_missing_secret_names_the_reference_and_the_fix(
    tmp_path: Path, ref: str, environ: dict[str, str], says: str
) -> None:
    path = _write(tmp_path, GOOD.replace("{env: AEWATCH_TEST_PW}", ref))
    message = _errors(path, environ)
    assert message.startswith(f"{path}:4  broker.password = {{")
    assert says in message


def test_yaml_problems_name_the_line(tmp_path: Path) -> None:
    assert f"{tmp_path / 'aewatch.yaml'}:3" in _errors(_write(tmp_path, "broker:\n  url: [x\n"))
    dup = _write(tmp_path, GOOD.replace("  username:", "  url: mqtt://other\n  username:"))
    assert f"{dup}:3  broker.url\n  key given twice" in _errors(dup)
    assert "empty" in _errors(_write(tmp_path, "# nothing\n"))
    assert "top level must be a mapping" in _errors(_write(tmp_path, "- a\n"))


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    assert "cannot read config" in _errors(tmp_path / "absent.yaml")


def test_the_example_config_is_valid_and_shows_every_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AEWATCH_MQTT_PASSWORD", "example")
    load_config(EXAMPLE)
    text = EXAMPLE.read_text()
    for key in _all_keys(Config):
        assert re.search(rf"(^[\s#-]*|{{){key}:", text, flags=re.M), f"example lacks {key}"
    lines = text.splitlines()
    for before, line in itertools.pairwise(lines):
        if re.match(r"\s*(- )?\w+:", line):
            assert before.lstrip().startswith("#"), f"no comment above {line!r}"


def _all_keys(model: type[BaseModel]) -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(field.alias or name)
        for sub in _submodels(field.annotation):
            keys |= _all_keys(sub)
    return keys


def _submodels(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _submodels(arg)]


def test_the_committed_reference_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render_reference(), "regenerate docs/configuration.md (see its header)"


def test_the_json_schema_uses_the_yaml_key_names() -> None:
    schema = config_json_schema()
    assert "json" in schema["$defs"]["LoggingConfig"]["properties"]
    assert schema["$defs"]["BrokerConfig"]["additionalProperties"] is False


def _check(path: Path) -> int:
    return check_config.run(argparse.Namespace(file=path, no_models=True))  # the file alone


def test_check_config_exits_0_with_a_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AEWATCH_TEST_PW", SECRET)
    path = _write(tmp_path, GOOD)
    assert _check(path) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: ok\n")
    assert "inputs: 1, models: 1, broker: mqtt://localhost:1883" in out
    assert SECRET not in out


def test_check_config_exits_2_with_the_errors_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, GOOD.replace("mqtt://", "http://"))
    assert _check(path) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{path}:2  broker.url = " in captured.err


def test_check_config_registers_its_verb(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    check_config.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["check-config", str(tmp_path / "x.yaml")])
    assert args.func is check_config.run
