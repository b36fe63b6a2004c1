"""The pure core: detectors on numpy arrays, with no torch, paho, pydantic or I/O.

``aewatch.core`` is imported by the model and daemon shells, never the other way round;
tests/core/test_checks.py checks that importing it loads none of those libraries.
"""

from aewatch.core.checks import CHECK_KINDS, ChannelChecks, ChannelMonitor, Observation
from aewatch.core.residual import DEFAULT_LAGS, ResidualModel

__all__ = [
    "CHECK_KINDS",
    "DEFAULT_LAGS",
    "ChannelChecks",
    "ChannelMonitor",
    "Observation",
    "ResidualModel",
]
