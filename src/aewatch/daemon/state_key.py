"""The key that signs the daemon's retained alert states, so a start resumes only its own (shell).

Any client allowed to publish on the state topics could plant a retained ``firing`` state
that the daemon would resume at its next start: a phantom open alert. So every state the
daemon publishes ends with ``"signature": "hmac-sha256:HEX"``, an HMAC-SHA256 under this key
of the message's JSON bytes as they would read with ``"signature": null`` in its place, and
at start a retained state is believed only when its signature verifies.

The key comes from ``outputs.state_key`` (a file, an environment variable or a systemd
credential; the daemons that take over each other's states share it), else from
``STATE_DIR/state-key``, made on the first start (32 random bytes in hex, mode 0600, in a
folder of mode 0700). With neither there is no key: states go out unsigned and none is
resumed. The key is never logged or shown.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from pathlib import Path

from aewatch.config import SecretRef
from aewatch.errors import ConfigError

__all__ = ["IGNORED_REASONS", "MIN_KEY_CHARS", "StateKey", "open_state_key"]

MIN_KEY_CHARS = 32
# Why a start ignores a retained state: no signature, one that does not verify, or a signed
# state this version cannot read. StateKey.refusal gives the first two.
IGNORED_REASONS = ("unsigned", "bad_signature", "unreadable")
_KEY_FILE = "state-key"
_UNSIGNED_TAIL = b',"signature":null}'
_SIGNED_TAIL = re.compile(rb',"signature":"hmac-sha256:([0-9a-f]{64})"\}\Z')

log = logging.getLogger("aewatch.daemon")


class StateKey:
    """Signs state messages and checks their signatures, under one secret.

    >>> key = StateKey(b"k" * 32, source="a test")
    >>> signed = key.sign(b'{"state":"firing","signature":null}')
    >>> signed[:40]
    b'{"state":"firing","signature":"hmac-sha2'
    >>> key.refusal(signed), StateKey(b"x" * 32, source="another").refusal(signed)
    (None, 'bad_signature')
    >>> key.refusal(b'{"state":"firing"}')
    'unsigned'
    """

    def __init__(self, secret: bytes, *, source: str) -> None:
        self._secret = secret
        self.source = source  # where it came from, in words (never the key)

    def __repr__(self) -> str:
        return f"StateKey(from {self.source})"

    def sign(self, unsigned: bytes) -> bytes:
        """``unsigned`` (JSON ending in ``"signature":null}``) with its signature in place.

        Raises:
            ValueError: ``unsigned`` does not end with a null signature.
        """
        if not unsigned.endswith(_UNSIGNED_TAIL):
            raise ValueError("a state message to sign ends with a null signature")
        head = unsigned[: -len(_UNSIGNED_TAIL)]
        return head + b',"signature":"hmac-sha256:' + self._digest(unsigned) + b'"}'

    def refusal(self, payload: bytes) -> str | None:
        """Why ``payload`` is not provably signed with this key (``unsigned`` or
        ``bad_signature``), or None when its signature verifies."""
        found = _SIGNED_TAIL.search(payload)
        if found is None:
            return "unsigned"
        unsigned = payload[: found.start()] + _UNSIGNED_TAIL
        if not hmac.compare_digest(self._digest(unsigned), found.group(1)):
            return "bad_signature"
        return None

    def _digest(self, data: bytes) -> bytes:
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest().encode()


def open_state_key(ref: SecretRef | None, state_dir: Path | None) -> StateKey | None:
    """The key of ``outputs.state_key``, else the one in ``state_dir`` (made when missing),
    else None.

    Raises:
        ConfigError: the configured key is shorter than :data:`MIN_KEY_CHARS`, or the
            key file in ``state_dir`` cannot be made or read, or is too short.
    """
    if ref is not None:
        secret = ref.value.get_secret_value()
        _check_length(secret, f"outputs.state_key ({ref.source})", "put a longer one there")
        return StateKey(secret.encode(), source=ref.source)
    if state_dir is None:
        return None
    path = state_dir / _KEY_FILE
    try:
        secret = _read_or_make(path)
    except OSError as err:
        raise ConfigError(
            f"state_dir = {state_dir}: cannot make or read the state key {path} "
            f"({err.strerror or err}); make the folder writable by the daemon's user only"
        ) from err
    _check_length(secret, f"state key {path}", "delete it, and a new one is made at start")
    return StateKey(secret.encode(), source=f"file {path}")


def _read_or_make(path: Path) -> str:
    """The key in ``path``; made first (whole, or not at all) when there is none."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{secrets.token_hex(32)}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(partial, path)  # never replaces a key another start made meanwhile
            log.info("made a new state key in %s (mode 0600)", path)
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "state key %s can be read by others (mode %04o): whoever reads it can sign a "
            "retained state the daemon resumes; chmod 600 it",
            path,
            mode,
        )
    return path.read_text(encoding="ascii", errors="replace").strip()


def _check_length(secret: str, where: str, fix: str) -> None:
    if len(secret) < MIN_KEY_CHARS:
        raise ConfigError(
            f"{where} holds {len(secret)} characters; a state key needs at least "
            f"{MIN_KEY_CHARS} (e.g. `openssl rand -hex 32`); {fix}"
        )
