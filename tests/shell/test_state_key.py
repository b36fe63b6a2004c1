"""The key that signs retained states, on real files: made once with mode 0600 in a folder of
mode 0700, read back the same, or taken from ``outputs.state_key``; never echoed. And what a
signature proves: another key, a changed byte or none at all is refused."""

from __future__ import annotations

import json
import logging
import os
import stat
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from aewatch.config import load_config
from aewatch.daemon.state_key import MIN_KEY_CHARS, StateKey, open_state_key
from aewatch.errors import ConfigError

KEY = "0123456789abcdef" * 4  # 64 characters
CONFIG = """\
broker:
  url: mqtt://localhost:1883
inputs:
  - topic: plant/{asset}/{channel}
    payload: json
models:
  - path: well.aew
outputs:
  state_key: STATE_KEY
"""
UNSIGNED = json.dumps({"schema": 1, "state": "firing", "signature": None}, separators=(",", ":"))


def _config(tmp_path: Path, state_key: str) -> Path:
    path = tmp_path / "aewatch.yaml"
    path.write_text(textwrap.dedent(CONFIG).replace("STATE_KEY", state_key))
    return path


def test_the_first_start_makes_a_private_key_and_the_next_reads_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir = tmp_path / "state"
    with caplog.at_level(logging.INFO, logger="aewatch"):
        first = open_state_key(None, state_dir)
    assert first is not None
    path = state_dir / "state-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    secret = path.read_text().strip()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert sorted(p.name for p in state_dir.iterdir()) == ["state-key"]  # no partial left
    assert f"made a new state key in {path}" in caplog.text
    assert secret not in caplog.text and secret not in repr(first)
    second = open_state_key(None, state_dir)
    assert second is not None
    assert second.refusal(first.sign(UNSIGNED.encode())) is None


def test_a_key_others_can_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir = tmp_path / "state"
    open_state_key(None, state_dir)
    os.chmod(state_dir / "state-key", 0o644)
    with caplog.at_level(logging.WARNING, logger="aewatch"):
        open_state_key(None, state_dir)
    assert "can be read by others (mode 0644)" in caplog.text


def test_no_state_dir_and_no_configured_key_is_no_key() -> None:
    assert open_state_key(None, None) is None


def test_a_configured_key_wins_over_the_state_dir(tmp_path: Path) -> None:
    config = load_config(
        _config(tmp_path, "{env: AEWATCH_STATE_KEY}"), environ={"AEWATCH_STATE_KEY": KEY}
    )
    key = open_state_key(config.outputs.state_key, tmp_path / "state")
    assert key is not None and key.source == "environment variable AEWATCH_STATE_KEY"
    assert not (tmp_path / "state").exists()
    same = StateKey(KEY.encode(), source="the test")
    assert same.refusal(key.sign(UNSIGNED.encode())) is None


def test_a_short_configured_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    short = "x" * (MIN_KEY_CHARS - 1)
    config = load_config(
        _config(tmp_path, "{env: AEWATCH_STATE_KEY}"), environ={"AEWATCH_STATE_KEY": short}
    )
    with pytest.raises(ConfigError) as err:
        open_state_key(config.outputs.state_key, None)
    assert "environment variable AEWATCH_STATE_KEY" in str(err.value)
    assert "openssl rand -hex 32" in str(err.value)
    assert short not in str(err.value)


def test_a_key_written_into_the_config_is_refused_and_never_echoed(tmp_path: Path) -> None:
    path = _config(tmp_path, KEY)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "outputs.state_key = <hidden>" in str(err.value)
    assert KEY not in str(err.value)


@pytest.mark.parametrize(
    ("forge", "refusal"),
    [
        (lambda signed: signed.replace(b'"firing"', b'"normal"'), "bad_signature"),
        (
            lambda signed: StateKey(b"y" * 32, source="another").sign(UNSIGNED.encode()),
            "bad_signature",
        ),
        (lambda signed: UNSIGNED.encode(), "unsigned"),
        (lambda signed: signed[: signed.rindex(b',"signature"')] + b"}", "unsigned"),
        (
            lambda signed: signed[:-3] + (b"1" if signed[-3:-2] == b"0" else b"0") + b'"}',
            "bad_signature",
        ),
    ],
    ids=["a changed field", "another key", "null signature", "no signature", "a changed digit"],
)
def test_only_the_key_s_own_signature_verifies(
    forge: Callable[[bytes], bytes], refusal: str
) -> None:
    key = StateKey(KEY.encode(), source="the test")
    signed = key.sign(UNSIGNED.encode())
    assert key.refusal(signed) is None
    assert json.loads(signed)["signature"].startswith("hmac-sha256:")
    assert key.refusal(forge(signed)) == refusal
