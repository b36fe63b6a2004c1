"""The pure core: the pipeline's stages on bytes and numpy arrays, with no torch, paho,
pydantic or I/O.

From MQTT bytes to readings (``packets``: PUBLISH parsing; ``decode``: payload formats),
readings to rows on a time grid (``align``, ``grid``), rows to windows (``window``,
``scaler``), and the decision stages: residual model and channel checks, the threshold,
the alert state machine and the detector that walks window errors through them
(``WindowScores`` names what it reads of a scorer's output); ``pipeline`` ties them per
asset, from readings to alert events, with Protocols for what it needs of a served model
(``ServesWindows``, ``ModelsFor``); then the output messages (``messages``) and the
evaluation metrics (``evaluation``).

``aewatch.core`` is imported by the model and daemon shells, never the other way round:
tests/core/test_checks.py checks that importing it loads none of those libraries, and
tests/core/test_layout.py that it imports nothing from the rest of ``aewatch`` but its
errors.
"""

from aewatch.core.alerts import (
    RECONSTRUCTION,
    AlertEvent,
    AlertState,
    Finding,
    alert_id,
    iso_ms,
)
from aewatch.core.checks import CHECK_KINDS, ChannelChecks, ChannelMonitor, Observation
from aewatch.core.detector import (
    Adaptation,
    DecisionSettings,
    Detector,
    Verdicts,
    WindowScores,
    decision_statistic,
    smooth,
)
from aewatch.core.residual import DEFAULT_LAGS, ResidualModel
from aewatch.core.threshold import MIN_TAIL_COUNT, Threshold, chi2_quantile, pot_quantile

__all__ = [
    "CHECK_KINDS",
    "DEFAULT_LAGS",
    "MIN_TAIL_COUNT",
    "RECONSTRUCTION",
    "Adaptation",
    "AlertEvent",
    "AlertState",
    "ChannelChecks",
    "ChannelMonitor",
    "DecisionSettings",
    "Detector",
    "Finding",
    "Observation",
    "ResidualModel",
    "Threshold",
    "Verdicts",
    "WindowScores",
    "alert_id",
    "chi2_quantile",
    "decision_statistic",
    "iso_ms",
    "pot_quantile",
    "smooth",
]
