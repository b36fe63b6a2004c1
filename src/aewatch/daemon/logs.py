"""Log lines for a service: plain text for a terminal, one JSON object per line for a collector.

Both formats pass every line (message and traceback) through ``redact``, so a URL's password
never reaches the log whoever wrote the line.

>>> import logging
>>> record = logging.LogRecord("aewatch", logging.INFO, "x.py", 1, "scored %d", (3,), None)
>>> record.created = 0.0
>>> JsonFormatter().format(record)
'{"ts": "1970-01-01T00:00:00.000Z", "level": "INFO", "logger": "aewatch", "message": "scored 3"}'
"""

from __future__ import annotations

import json
import logging
import sys

from aewatch.core.alerts import iso_ms
from aewatch.redaction import redact

__all__ = ["JsonFormatter", "TextFormatter", "setup_logging"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message"}`` plus ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": iso_ms(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE`` (and the traceback, if any), redacted."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str = "INFO", *, as_json: bool = False) -> None:
    """Send aewatch's logs to stderr at ``level``, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger("aewatch")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("paho").setLevel(logging.WARNING)
