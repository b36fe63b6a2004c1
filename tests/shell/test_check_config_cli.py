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
    assert main(["check-config", "--no-models", str(EXAMPLE)]) == 0
    out = capsys.readouterr()
    assert ": ok" in out.out
    assert "s3cret-value" not in out.out + out.err


def test_missing_secret_and_bad_key_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AEWATCH_MQTT_PASSWORD", raising=False)
    assert main(["check-config", "--no-models", str(EXAMPLE)]) == 2
    assert "AEWATCH_MQTT_PASSWORD" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("keepalive_s:", "keepalive_seconds:", 1))
    monkeypatch.setenv("AEWATCH_MQTT_PASSWORD", "x")
    assert main(["check-config", "--no-models", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "keepalive_seconds" in err and "keepalive_s" in err and "bad.yaml:" in err


def test_the_models_it_names_are_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing bundle and a file that is no bundle are each named, with exit 2; a good
    bundle is summed up."""
    data = tmp_path / "normal.csv"
    assert (
        main(
            ["simulate", "--scenario", "well", "--hours", "2", "--period", "10", "--out", str(data)]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "well.aew"),
                "--no-detectability",
                "--quiet",
            ]
        )
        == 0
    )
    (tmp_path / "junk.aew").write_bytes(b"not a bundle")
    head = "broker:\n  url: mqtt://127.0.0.1:1883\ninputs:\n  - topic: p/{asset}/{channel}\n"
    head += "    payload: json\nmodels:\n"
    good = tmp_path / "good.yaml"
    good.write_text(head + "  - path: well.aew\n    assets: well-*\n")
    capsys.readouterr()
    assert main(["check-config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "models[0] (" in out and "serves well-*; 4 channels (flow_kg_s, whp_bar" in out
    assert "period 10 s, window 10 samples" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(head + "  - path: missing.aew\n    assets: a\n  - path: junk.aew\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "2 model problem(s)" in err
    assert "models[0]" in err and "missing.aew" in err
    assert "models[1]" in err and "junk.aew" in err
    assert main(["check-config", "--no-models", str(bad)]) == 0
