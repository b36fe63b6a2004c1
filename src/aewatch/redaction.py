"""Secrets taken out of text before it is printed or logged: the user-info of every URL.

One function, ``redact``, used wherever a URL or a configuration value may reach a person:
the config loader's error lines, the command line's error output, ``check-config``'s output
and every log line (``daemon.logs``). A URL's password becomes ``***`` and its user name
stays, so the line still says which account was meant; user-info without a ``:`` (a bare
token) is hidden whole. Password fields themselves never reach text: they are ``SecretStr``
values and the loader shows them as ``<hidden>``.

>>> redact("connecting to mqtts://sensor:hunter2@broker:8883 now")
'connecting to mqtts://sensor:***@broker:8883 now'
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact"]

REDACTED = "***"

# scheme://USER[:PASSWORD]@ -- the password may itself hold '@' or '/', so the user-info runs
# to the last '@' before whitespace or a quote; hiding a little too much is the safe side.
_USER_INFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s:/@\"'<>]*)(?P<rest>[^\s\"'<>]*)@"
)


def redact(text: str) -> str:
    """``text`` with the password (or bare token) of every ``scheme://user:pass@`` as ``***``.

    >>> redact('url = "mqtt://tok3n@h:1883"')
    'url = "mqtt://***@h:1883"'
    >>> redact("mqtt://broker:1883")
    'mqtt://broker:1883'
    """
    return _USER_INFO.sub(_hide, text)


def _hide(match: re.Match[str]) -> str:
    scheme, user, rest = match.group("scheme", "user", "rest")
    if rest.startswith(":"):
        return f"{scheme}{user}:{REDACTED}@"
    return f"{scheme}{REDACTED}@"
