"""The exceptions aewatch raises on purpose, one small tree under ``AewatchError``.

::

    AewatchError
    ├── DataError          input file unreadable or malformed (names file, row, column)
    ├── BundleError        model bundle missing, corrupt, wrong version or wrong channels
    ├── ConfigError        configuration invalid
    └── NotCalibratedError scoring asked of a model without a threshold

Every message names the thing, the value it had and the fix, so the command line prints
it as it is and exits non-zero without a traceback.
"""

from __future__ import annotations

__all__ = [
    "AewatchError",
    "BundleError",
    "ConfigError",
    "DataError",
    "NotCalibratedError",
]


class AewatchError(Exception):
    """Base of every error aewatch raises deliberately."""


class DataError(AewatchError):
    """An input data file cannot be used as it is."""


class BundleError(AewatchError):
    """A model bundle cannot be read or does not fit the data."""


class ConfigError(AewatchError):
    """A configuration file or value is invalid."""


class NotCalibratedError(AewatchError):
    """A model was asked for decisions before a threshold was calibrated."""
