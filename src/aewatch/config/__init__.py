"""The daemon's configuration: the ``Config`` schema and ``load_config()`` that reads it.

``load_config(path)`` is the only place that reads the configuration file and the secrets;
every other part of aewatch gets the ``Config`` slice it needs.
"""

from __future__ import annotations

from aewatch.config.load import config_json_schema, load_config, render_reference
from aewatch.config.schema import (
    BUNDLE_SUFFIX,
    BrokerConfig,
    Config,
    InputConfig,
    LimitsConfig,
    LoggingConfig,
    MetricsConfig,
    ModelConfig,
    OutputConfig,
    SecretRef,
    TlsConfig,
)

__all__ = [
    "BUNDLE_SUFFIX",
    "BrokerConfig",
    "Config",
    "InputConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ModelConfig",
    "OutputConfig",
    "SecretRef",
    "TlsConfig",
    "config_json_schema",
    "load_config",
    "render_reference",
]
