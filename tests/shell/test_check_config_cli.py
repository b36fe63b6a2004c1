"""``aewatch check-config`` through the real command line: exit 0 or 2, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from aewatch.cli import main

EXAMPLE = Path(__file__).parents[2] / "config" / "aewatch.example.yaml"


def test_example_config_is_valid(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AEWATCH_MQTT_PASSWORD", "s3cret-value")
    assert main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr()
    assert ": ok" in out.out
    assert "s3cret-value" not in out.out + out.err


def test_missing_secret_and_bad_key_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AEWATCH_MQTT_PASSWORD", raising=False)
    assert main(["check-config", str(EXAMPLE)]) == 2
    assert "AEWATCH_MQTT_PASSWORD" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("keepalive_s:", "keepalive_seconds:", 1))
    monkeypatch.setenv("AEWATCH_MQTT_PASSWORD", "x")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "keepalive_seconds" in err and "keepalive_s" in err and "bad.yaml:" in err
