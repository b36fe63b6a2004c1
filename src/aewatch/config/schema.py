"""What a valid configuration is: one frozen ``Config`` for the whole daemon (core).

The models here only check values; they read no file and no environment. ``load_config()``
(the shell, in ``load.py``) reads the YAML, validates it against ``Config`` and resolves the
secret references. Every field's description ends with its unit, and every model forbids
unknown keys so that a misspelt key is an error instead of a silent default.
"""

from __future__ import annotations

import logging
import re
import string
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aewatch.errors import BundleError, ConfigError

__all__ = [
    "BUNDLE_SUFFIX",
    "DEFAULT_PORTS",
    "BrokerConfig",
    "Config",
    "InputConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ModelConfig",
    "OutputConfig",
    "RuleError",
    "SecretRef",
    "SparkplugConfig",
    "TlsConfig",
]

BUNDLE_SUFFIX = ".aew"  # how a bundle's file name ends (a dir entry's ASSET.aew)

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
SECRET_SOURCES = ("file", "env", "credential")
LITERAL_SECRET_HINT = (
    "a secret is never written in the config; give where it lives instead: "
    "{file: /etc/aewatch/mqtt-password}, {env: AEWATCH_MQTT_PASSWORD} or "
    "{credential: mqtt-password} (systemd LoadCredential=)"
)

_FROZEN = ConfigDict(extra="forbid", frozen=True)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PART = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_OUTPUT_PARTS = {"prefix", "asset"}

PayloadFormat = Literal["number", "json", "json_multi", "json_batch", "float32_le", "sparkplug_b"]
_SINGLE_CHANNEL_PAYLOADS = ("number", "json", "float32_le")
_UNSTAMPED_PAYLOADS = ("number", "float32_le")
SPARKPLUG_NAMESPACE = "spBv1.0"  # the first topic level of every Sparkplug B message
_SPARKPLUG_PARTS = {"group", "node", "device"}
# What a sparkplug_b input does not take, and why.
_NOT_FOR_SPARKPLUG = {
    "topic": "it subscribes to spBv1.0/GROUP/#; remove topic and set sparkplug.group",
    "timestamp_key": "times come from the Sparkplug payload; remove timestamp_key",
    "value_key": "values come from the Sparkplug metrics; remove value_key",
    "values_key": "values come from the Sparkplug metrics; remove values_key",
    "asset_prefix": "put the text in sparkplug.device_asset and sparkplug.node_asset "
    '(e.g. "site-{node}/{device}"); remove asset_prefix',
}


class RuleError(ValueError):
    """A cross-field rule was broken; ``key`` is the path, below the model, of the key to blame."""

    def __init__(self, key: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


def _relative_to_config(path: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if base is None or path.is_absolute():
        return path
    return Path(base) / path


# A path in the config file is relative to the directory holding the file.
ConfigPath = Annotated[Path, AfterValidator(_relative_to_config)]


class SecretRef(BaseModel):
    """Where a secret lives: exactly one of ``file``, ``env`` or ``credential``.

    The secret itself is never written in the YAML. ``load_config()`` reads it and keeps it as
    a ``SecretStr`` (``value``), which shows as ``**********`` in logs, repr and str.
    """

    model_config = _FROZEN

    file: ConfigPath | None = Field(
        None,
        description="File holding the secret (one trailing newline is dropped), relative to "
        "the config file; keep it mode 0600. Unit: path.",
    )
    env: str | None = Field(
        None,
        pattern=rf"^{_NAME.pattern}$",
        description="Environment variable holding the secret. Unit: variable name.",
    )
    credential: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.@-]+$",
        description="systemd credential name, read from $CREDENTIALS_DIRECTORY/NAME "
        "(LoadCredential=NAME:PATH in the unit). Unit: credential name.",
    )
    _value: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _reject_literal(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(LITERAL_SECRET_HINT)
        return data

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        given = [k for k in SECRET_SOURCES if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of file, env or credential (got {', '.join(given) or 'none'})"
            )
        return self

    @property
    def source(self) -> str:
        """Where the secret lives, in words, for error messages (never the secret)."""
        if self.file is not None:
            return f"secret file {self.file}"
        if self.env is not None:
            return f"environment variable {self.env}"
        return f"systemd credential {self.credential}"

    @property
    def value(self) -> SecretStr:
        """The resolved secret.

        Raises:
            ConfigError: the reference was not resolved (the config did not come from
                ``load_config()``).
        """
        if self._value is None:
            raise ConfigError(
                f"{self.source} was not read; load the configuration with load_config()"
            )
        return self._value

    def with_value(self, value: SecretStr) -> SecretRef:
        """A copy of this reference that holds the resolved secret."""
        resolved = self.model_copy()
        resolved._value = value
        return resolved


class TlsConfig(BaseModel):
    """TLS for an ``mqtts://`` broker. Without this section, ``mqtts://`` uses the system CAs."""

    model_config = _FROZEN

    ca_file: ConfigPath | None = Field(
        None,
        description="CA bundle (PEM) that signed the broker's certificate; null uses the "
        "system CAs. Unit: path.",
    )
    cert_file: ConfigPath | None = Field(
        None, description="Client certificate (PEM) for mutual TLS; needs key_file. Unit: path."
    )
    key_file: ConfigPath | None = Field(
        None, description="Private key (PEM) of the client certificate. Unit: path."
    )
    insecure_skip_verify: bool = Field(
        False,
        description="Skip every check of the broker's certificate: neither its CA nor its "
        "host name is verified, and the daemon logs a warning at start; for tests only. "
        "Unit: flag.",
    )

    @model_validator(mode="after")
    def _cert_needs_key(self) -> Self:
        if self.cert_file is not None and self.key_file is None:
            raise RuleError(("key_file",), "a client certificate needs key_file; add it")
        if self.key_file is not None and self.cert_file is None:
            raise RuleError(("cert_file",), "a client key needs cert_file; add it or drop key_file")
        return self


class BrokerConfig(BaseModel):
    """The MQTT broker: address, session, credentials and TLS.

    The default is a persistent session (``clean_start: false``) with a fixed client id and QoS
    1, so the broker keeps the readings that arrive while the daemon restarts.
    """

    model_config = _FROZEN

    url: str = Field(
        description="Broker address, mqtt://HOST[:PORT] (default port 1883) or "
        "mqtts://HOST[:PORT] (TLS, default port 8883); no user or password in it (they go in "
        "username and password; any output shows a URL's password as ***). Unit: URL."
    )
    client_id: str = Field(
        "aewatch",
        min_length=1,
        description="MQTT client id; fixed, so the broker can resume the session. Unit: text.",
    )
    protocol: Literal["5", "3.1.1"] = Field(
        "5", description="MQTT protocol version: 5 or 3.1.1. Unit: version."
    )
    keepalive_s: int = Field(
        30, ge=1, le=65535, description="MQTT keepalive interval. Unit: seconds."
    )
    qos: Literal[0, 1, 2] = Field(1, description="QoS of the input subscriptions. Unit: level.")
    clean_start: bool = Field(
        False,
        description="Start a fresh session on connect; false keeps queued QoS 1 readings "
        "across restarts. Unit: flag.",
    )
    session_expiry_s: int = Field(
        3600,
        ge=0,
        le=4_294_967_295,
        description="How long the broker keeps the session after a disconnect (MQTT 5 only). "
        "Unit: seconds.",
    )
    username: str | None = Field(
        None, min_length=1, description="User name; needs password. Unit: text."
    )
    password: SecretRef | None = Field(
        None,
        description="Where the password lives: {file: PATH}, {env: NAME} or {credential: "
        "NAME}; never the password itself. Unit: secret reference.",
    )
    tls: TlsConfig | None = Field(
        None, description="TLS settings; only with mqtts://. Unit: section."
    )
    reconnect_min_s: float = Field(
        1.0, gt=0, description="First delay before reconnecting. Unit: seconds."
    )
    reconnect_max_s: float = Field(
        60.0, gt=0, description="Longest delay between reconnect attempts. Unit: seconds."
    )

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: Any) -> Any:
        # YAML reads `protocol: 5` as an integer.
        return str(value) if isinstance(value, int) else value

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        _split_url(url)
        return url

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        if self.username is not None and self.password is None:
            raise RuleError(("password",), "a username needs a password; add broker.password")
        if self.password is not None and self.username is None:
            raise RuleError(("username",), "a password needs a username; add broker.username")
        if self.tls is not None and not self.uses_tls:
            raise RuleError(("tls",), "TLS settings need an mqtts:// url; change the url scheme")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise RuleError(
                ("reconnect_max_s",),
                f"must be at least reconnect_min_s ({self.reconnect_min_s})",
            )
        if self.protocol == "3.1.1" and "session_expiry_s" in self.model_fields_set:
            raise RuleError(
                ("session_expiry_s",),
                "session expiry is MQTT 5 only; remove it or set protocol: 5",
            )
        return self

    @property
    def host(self) -> str:
        """The broker's host name or address."""
        return _split_url(self.url)[1]

    @property
    def port(self) -> int:
        """The broker's TCP port (the scheme's default if the url gives none)."""
        return _split_url(self.url)[2]

    @property
    def uses_tls(self) -> bool:
        """Whether the url is ``mqtts://``."""
        return _split_url(self.url)[0] == "mqtts"

    @property
    def display_url(self) -> str:
        """``scheme://host:port``, safe to log."""
        scheme, host, port = _split_url(self.url)
        return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"


class SparkplugConfig(BaseModel):
    """How a ``payload: sparkplug_b`` input reads Sparkplug B (Ignition, Cirrus Link, gateways).

    The input subscribes to ``spBv1.0/GROUP/#`` (``spBv1.0/+/#`` for every group). A device's
    metrics go to the asset ``device_asset`` names, an edge node's own metrics to the asset
    ``node_asset`` names; each numeric metric is a channel of that asset, named as the
    metric (Ignition's ``Pump/Flow``) unless ``channels`` renames it. Aliases and data types
    come from the births (NBIRTH, DBIRTH); see docs/mqtt.md, Sparkplug B.
    """

    model_config = _FROZEN

    group: str = Field(
        description="Sparkplug group id whose edge nodes are read (the topic level after "
        'spBv1.0/), or "+" for every group. Unit: group id.'
    )
    device_asset: str = Field(
        "{node}/{device}",
        min_length=1,
        description="Asset of a device's metrics (DBIRTH, DDATA), from {group}, {node} and "
        "{device}; needs {device}. Unit: template.",
    )
    node_asset: str = Field(
        "{node}",
        min_length=1,
        description="Asset of an edge node's own metrics (NBIRTH, NDATA), from {group} and "
        "{node}; needs {node}. Unit: template.",
    )
    rebirth: bool = Field(
        True,
        description="Ask an edge node for its births again (an NCMD with Node Control/Rebirth, "
        "QoS 0, not retained) when its data comes before any birth (as after a start) or "
        "skips a sequence number; at most once per node every rebirth_interval_s. false: "
        "wait for the node's next birth. Unit: flag.",
    )
    rebirth_interval_s: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="Least time between two rebirth requests to one edge node: a node whose "
        "births take longer to arrive (a slow link, many devices) is not asked again before. "
        "Unit: seconds.",
    )
    channels: dict[str, str] = Field(
        {},
        description="Metric name -> channel name, for metrics whose Sparkplug name is not "
        'the model\'s channel (e.g. "Pump/Flow": flow_kg_s); metrics not listed keep their '
        "name. Unit: mapping.",
    )

    @field_validator("group")
    @classmethod
    def _check_group(cls, group: str) -> str:
        if group == "+":
            return group
        if not group or set(group) & {"/", "+", "#"}:
            raise ValueError(
                'a group id is one topic level without / + #, e.g. plant-north; or "+" for '
                "every group"
            )
        return group

    @model_validator(mode="after")
    def _check_templates(self) -> Self:
        for key, needs, allowed in (
            ("device_asset", "device", _SPARKPLUG_PARTS),
            ("node_asset", "node", _SPARKPLUG_PARTS - {"device"}),
        ):
            problem = _sparkplug_template_problem(getattr(self, key), needs=needs, allowed=allowed)
            if problem:
                raise RuleError((key,), problem)
        seen: dict[str, str] = {}
        for metric, channel in self.channels.items():
            if not metric or not channel.strip():
                raise RuleError(
                    ("channels",),
                    "each entry maps a metric name to a channel name, both "
                    'non-empty, e.g. "Pump/Flow": flow_kg_s',
                )
            if channel in seen:
                raise RuleError(
                    ("channels", metric),
                    f"metrics {seen[channel]!r} and {metric!r} both become channel "
                    f"{channel!r}; give each its own channel",
                )
            seen[channel] = metric
        return self

    @property
    def subscription(self) -> str:
        """The MQTT subscription filter of the group's messages.

        >>> SparkplugConfig(group="plant-north").subscription
        'spBv1.0/plant-north/#'
        """
        return f"{SPARKPLUG_NAMESPACE}/{self.group}/#"


class InputConfig(BaseModel):
    """One subscription: a topic template, the payload format and where timestamps come from.

    The topic template names whole topic levels in braces, e.g.
    ``plant/{site}/well/{asset}/{channel}``; it is subscribed as ``plant/+/well/+/+``. It needs
    ``{asset}``; without ``{channel}`` the payload carries the channel names. Payloads:

    - ``number``: one value as text (``"3.25"``), channel from the topic.
    - ``json``: ``{"ts": ..., "value": ...}``, channel from the topic.
    - ``json_multi``: several channels of one asset, ``{"ts": ..., "values": {"ch": v, ...}}``;
      with ``values_key: null`` the channels are the top-level keys besides ``ts``.
    - ``json_batch``: a JSON array of samples, each as ``json`` (topic with ``{channel}``) or as
      ``json_multi`` (topic without).
    - ``float32_le``: raw little-endian float32 values of one channel, taken as consecutive
      samples one model period apart, the last one at the arrival time.
    - ``sparkplug_b``: Sparkplug B protobuf on ``spBv1.0/GROUP/...``; no ``topic``: the
      ``sparkplug`` section says which group and how nodes, devices and metrics name assets
      and channels.

    Payload timestamps may be epoch seconds, epoch milliseconds (values above 1e11) or ISO 8601.
    """

    model_config = _FROZEN

    topic: str | None = Field(
        None,
        description="Topic template with named parts in braces, e.g. "
        "plant/{site}/well/{asset}/{channel}; needs {asset}; required for every payload "
        "but sparkplug_b, which subscribes to spBv1.0/GROUP/# instead. Unit: topic template.",
    )
    payload: PayloadFormat = Field(
        description="Payload format: number, json, json_multi, json_batch, float32_le or "
        "sparkplug_b. Unit: format."
    )
    timestamp: Literal["payload", "arrival"] = Field(
        "payload",
        description="Where a reading's time comes from: payload (seconds, ms or ISO 8601, "
        "detected) or arrival; defaults to arrival for number and float32_le. Unit: source.",
    )
    timestamp_key: str = Field(
        "ts", min_length=1, description="JSON key of the timestamp. Unit: JSON key."
    )
    value_key: str = Field(
        "value", min_length=1, description="JSON key of the value (json payloads). Unit: JSON key."
    )
    values_key: str | None = Field(
        "values",
        min_length=1,
        description="JSON key of the channel -> value object (json_multi); null means the "
        "channels are top-level keys. Unit: JSON key.",
    )
    asset_prefix: str = Field(
        "", description="Text put before the asset part to make the asset name. Unit: text."
    )
    sparkplug: SparkplugConfig | None = Field(
        None,
        description="Sparkplug B group, asset names and channel names; needed by, and only "
        "for, payload: sparkplug_b. Unit: section.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_timestamp(cls, data: Any) -> Any:
        unstamped = isinstance(data, dict) and data.get("payload") in _UNSTAMPED_PAYLOADS
        if unstamped and "timestamp" not in data:
            return {**data, "timestamp": "arrival"}
        return data

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, topic: str | None) -> str | None:
        if topic is not None:
            _parse_template(topic)
        return topic

    @model_validator(mode="after")
    def _payload_fits_topic(self) -> Self:
        if self.payload == "sparkplug_b":
            return self._fits_sparkplug()
        if self.topic is None:
            raise RuleError(
                ("topic",),
                f"a {self.payload} input needs a topic template, e.g. "
                "plant/{site}/well/{asset}/{channel}; add topic",
            )
        if self.sparkplug is not None:
            raise RuleError(
                ("sparkplug",),
                "only for payload: sparkplug_b; remove the section or set payload: sparkplug_b",
            )
        if self.payload in _SINGLE_CHANNEL_PAYLOADS and not self.has_channel_part:
            raise RuleError(
                ("topic",),
                f"a {self.payload} payload holds one channel, so the topic needs a {{channel}} "
                "part (e.g. plant/{asset}/{channel}); or use payload: json_multi",
            )
        if self.payload == "json_multi" and self.has_channel_part:
            raise RuleError(
                ("payload",),
                "json_multi carries the channel names, so the topic must not have {channel}; "
                "use payload: json, or remove {channel} from the topic",
            )
        if self.payload in _UNSTAMPED_PAYLOADS and self.timestamp == "payload":
            raise RuleError(
                ("timestamp",),
                f"a {self.payload} payload carries no timestamp; use timestamp: arrival",
            )
        return self

    def _fits_sparkplug(self) -> Self:
        if self.sparkplug is None:
            raise RuleError(
                ("sparkplug",),
                "a sparkplug_b input needs a sparkplug section naming the group, e.g. "
                'sparkplug: {group: plant-north} (or group: "+" for every group); add it',
            )
        for key, why in _NOT_FOR_SPARKPLUG.items():
            if key in self.model_fields_set:
                raise RuleError((key,), f"not for a sparkplug_b input: {why}")
        return self

    @cached_property
    def levels(self) -> tuple[tuple[str, bool], ...]:
        """The template's levels as ``(text, is_part)``: a part's name, or literal text
        (none for a ``sparkplug_b`` input)."""
        return () if self.topic is None else _parse_template(self.topic)

    @property
    def has_channel_part(self) -> bool:
        """Whether the topic template names the channel."""
        return ("channel", True) in self.levels

    @property
    def subscription(self) -> str:
        """The MQTT subscription filter: every named part becomes ``+``; a ``sparkplug_b``
        input's is its group's (:attr:`SparkplugConfig.subscription`).

        >>> InputConfig(topic="plant/{site}/well/{asset}/{channel}", payload="json").subscription
        'plant/+/well/+/+'
        """
        if self.sparkplug is not None:
            return self.sparkplug.subscription
        return "/".join("+" if is_part else text for text, is_part in self.levels)

    def takes_sparkplug(self, topic: str) -> bool:
        """Whether ``topic`` is a Sparkplug B topic of this ``sparkplug_b`` input's group.

        >>> source = InputConfig(payload="sparkplug_b", sparkplug={"group": "north"})
        >>> source.takes_sparkplug("spBv1.0/north/DDATA/gw1/pump"), source.takes_sparkplug("a/b")
        (True, False)
        """
        if self.sparkplug is None:
            return False
        namespace, _, rest = topic.partition("/")
        group = rest.partition("/")[0]
        return namespace == SPARKPLUG_NAMESPACE and self.sparkplug.group in ("+", group)

    def match(self, topic: str) -> dict[str, str] | None:
        """The named parts of ``topic``, or None if it does not fit the template.

        ``asset`` already carries ``asset_prefix``; no part is empty. A ``sparkplug_b``
        input has no template and matches no topic here (see :meth:`takes_sparkplug`).

        >>> InputConfig(topic="plant/{site}/well/{asset}/{channel}", payload="number").match(
        ...     "plant/north/well/w7/pressure")
        {'site': 'north', 'asset': 'w7', 'channel': 'pressure'}
        """
        names = topic.split("/")
        if len(names) != len(self.levels) or not self.levels:
            return None
        parts: dict[str, str] = {}
        for name, (text, is_part) in zip(names, self.levels, strict=True):
            if is_part and name:
                parts[text] = name
            elif is_part or name != text:
                return None
        parts["asset"] = self.asset_prefix + parts["asset"]
        return parts


class ModelConfig(BaseModel):
    """A model bundle and the assets it serves, or a folder of one bundle per asset.

    The list order is the priority: an asset is served by the first entry whose pattern matches
    it, so a per-asset override is an entry with that asset's name placed before the catch-all.
    A ``dir`` entry serves each asset that has a bundle ``ASSET.aew`` in the folder (and
    matches ``assets``), under the model name ``ASSET``; the folder is listed again at each
    reload, so a new bundle is served after a SIGHUP. Window length, hop, channels and
    sample period come from the bundle.
    """

    model_config = _FROZEN

    path: ConfigPath | None = Field(
        None,
        description="Model bundle written by aewatch train, relative to the config file; "
        "give path or dir. Unit: path.",
    )
    dir: ConfigPath | None = Field(
        None,
        description="A folder of bundles named after the asset each serves (well-7.aew serves "
        "well-7), relative to the config file; give path or dir. Unit: path.",
    )
    assets: str = Field(
        "*",
        min_length=1,
        description="Shell-style pattern (fnmatch, case-sensitive) of the asset names this "
        "model serves, e.g. well-* . Unit: pattern.",
    )
    name: str | None = Field(
        None,
        min_length=1,
        description="Name in alerts and metrics; null uses the name stored in the bundle. "
        "Unit: text.",
    )

    @model_validator(mode="after")
    def _path_or_dir(self) -> Self:
        if (self.path is None) == (self.dir is None):
            raise RuleError(
                ("path",),
                "give either path (one bundle) or dir (a folder of ASSET.aew bundles)",
            )
        if self.dir is not None and self.name is not None:
            raise RuleError(("name",), "a dir entry names each model after its file; remove name")
        return self

    def bundles(self) -> tuple[tuple[str | None, str, Path], ...]:
        """``(name, asset pattern, bundle file)`` of each model this entry serves: the entry
        itself, or, for a ``dir`` entry, each ``ASSET.aew`` in the folder whose asset
        matches ``assets``, by name, with the asset's name as its model name and its
        exact pattern.

        Raises:
            BundleError: the ``dir`` folder cannot be listed.
        """
        if self.dir is None:
            assert self.path is not None  # one of the two, by the validator
            return ((self.name, self.assets, self.path),)
        if not self.dir.is_dir():
            raise BundleError(
                f"models dir {self.dir} is not a folder; create it, or fix dir in the config"
            )
        try:
            files = sorted(self.dir.glob(f"*{BUNDLE_SUFFIX}"))
        except OSError as err:
            raise BundleError(f"models dir {self.dir}: cannot be listed ({err})") from err
        served = []
        for file in files:
            asset = file.name.removesuffix(BUNDLE_SUFFIX)
            if file.is_file() and fnmatchcase(asset, self.assets):
                served.append((asset, _literal_pattern(asset), file))
        return tuple(served)

    def serves(self, asset: str) -> bool:
        """Whether ``asset`` matches this entry's pattern (and, for a ``dir`` entry, has a
        bundle in the folder)."""
        if not fnmatchcase(asset, self.assets):
            return False
        return self.dir is None or (self.dir / f"{asset}{BUNDLE_SUFFIX}").is_file()


class OutputConfig(BaseModel):
    """Topics the daemon publishes. Templates may use ``{prefix}`` and ``{asset}``.

    Alerts go to the alert topic (QoS ``qos``); each asset's alert state is published retained
    on the state topic; the status topic holds ``online``, ``offline`` (Last Will) or
    ``stopped``, retained.
    """

    model_config = _FROZEN

    topic_prefix: str = Field(
        "aewatch", min_length=1, description="Value of {prefix} in the templates. Unit: topic."
    )
    alert_topic: str = Field(
        "{prefix}/alerts/{asset}", description="Alert events. Unit: topic template."
    )
    state_topic: str = Field(
        "{prefix}/state/{asset}",
        description="Each asset's alert state, retained. Unit: topic template.",
    )
    status_topic: str = Field(
        "{prefix}/status",
        description="Daemon status online/offline/stopped, retained. Unit: topic template.",
    )
    denoised: bool = Field(
        False, description="Publish each window's reconstructed signal. Unit: flag."
    )
    denoised_topic: str = Field(
        "{prefix}/denoised/{asset}",
        description="Reconstructed signals, when denoised is true. Unit: topic template.",
    )
    qos: Literal[0, 1, 2] = Field(1, description="QoS of everything published. Unit: level.")
    state_key: SecretRef | None = Field(
        None,
        description="Where the key that signs the retained states lives: {file: PATH}, {env: "
        "NAME} or {credential: NAME}, at least 32 characters (e.g. openssl rand -hex 32); "
        "never the key itself. A start resumes only the firing states signed with it. null: "
        "the key in state_dir (made on the first start, mode 0600); without state_dir "
        "either, states go out unsigned and none is resumed. Unit: secret reference.",
    )

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, prefix: str) -> str:
        if set(prefix) & {"+", "#", "{", "}"} or prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError("a prefix is plain topic levels, without + # { } or an outer /")
        return prefix

    @model_validator(mode="after")
    def _check_templates(self) -> Self:
        per_asset = ("alert_topic", "state_topic", "denoised_topic")
        for key in (*per_asset, "status_topic"):
            template = getattr(self, key)
            problem = _output_template_problem(template, needs_asset=key in per_asset)
            if problem:
                raise RuleError((key,), problem)
        templates = [getattr(self, k) for k in (*per_asset, "status_topic")]
        if len(set(templates)) != len(templates):
            raise RuleError(("state_topic",), "each output needs its own topic template")
        return self

    def alert_topic_for(self, asset: str) -> str:
        """The topic of ``asset``'s alert events."""
        return self._fill(self.alert_topic, asset)

    def state_topic_for(self, asset: str) -> str:
        """The retained topic of ``asset``'s alert state."""
        return self._fill(self.state_topic, asset)

    def denoised_topic_for(self, asset: str) -> str:
        """The topic of ``asset``'s reconstructed signal."""
        return self._fill(self.denoised_topic, asset)

    @property
    def status_topic_name(self) -> str:
        """The retained status topic, prefix filled in."""
        return self._fill(self.status_topic, "")

    def _fill(self, template: str, asset: str) -> str:
        return template.replace("{prefix}", self.topic_prefix).replace("{asset}", asset)


class LimitsConfig(BaseModel):
    """Bounds against floods and mistakes, and the scoring batch."""

    model_config = _FROZEN

    max_payload_bytes: int = Field(
        65536,
        ge=1,
        le=268_435_455,
        description="Larger payloads are counted and dropped. Unit: bytes.",
    )
    max_assets: int = Field(
        10000,
        ge=1,
        description="Readings for further new assets are counted and dropped. Each tracked "
        "asset has three metric series (score, threshold in force, severity), so this also "
        "bounds them. Unit: assets.",
    )
    queue_size: int = Field(
        100_000,
        ge=1,
        description="Readings waiting for the scoring worker; beyond it they "
        "are counted and dropped. Unit: readings.",
    )
    max_late_s: float = Field(
        30.0,
        ge=0,
        description="A reading older than its asset's newest by more than this is "
        "counted as late and dropped. Unit: seconds.",
    )
    clock_tolerance_s: float | None = Field(
        600.0,
        gt=0,
        description="A reading further than this from its asset's time (ahead of its "
        "newest reading, or behind the last row out) is held as a possible clock step: "
        "the asset follows the new time, and the step is logged with its size, once "
        "readings of 3 grid slots agree on it; if the asset's readings go on without it "
        "first, it is counted as an outlier and dropped. Readings behind by less are late "
        "(max_late_s). Never taken below how long a slot waits. null turns the rule off: "
        "a reading far ahead then moves the asset's time, and after a clock set back every "
        "reading is late until it catches up. A reload applies it to assets first seen "
        "after it. Unit: seconds.",
    )
    max_gap_periods: float | None = Field(
        None,
        ge=1,
        description="A gap longer than this many sample periods restarts the asset's "
        "window; null uses the bundle's (the value training used, so live and offline "
        "scoring cut the same windows). Unit: sample periods.",
    )
    max_ahead_s: float = Field(
        60.0,
        gt=0,
        description="A payload timestamp further than this after its arrival time is "
        "counted and dropped (a clock far ahead would make later readings late). "
        "Unit: seconds.",
    )
    batch_size: int = Field(
        256, ge=1, description="Most windows scored in one forward pass. Unit: windows."
    )
    max_wait_ms: int = Field(
        5,
        ge=0,
        description="Longest a due window waits for its batch to fill. Unit: milliseconds.",
    )
    inference_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="Threads one forward pass may use (torch's intra-op threads). The "
        "daemon's batches are small: more threads mostly wait on each other and take a "
        "core from the network thread. Unit: threads.",
    )


_RETIRED_METRICS_KEYS = frozenset({"per_asset_scores", "per_asset_cap"})


class MetricsConfig(BaseModel):
    """The Prometheus metrics endpoint."""

    model_config = _FROZEN

    listen: str = Field("127.0.0.1", min_length=1, description="Address to listen on. Unit: host.")
    port: int = Field(9108, ge=0, le=65535, description="TCP port; 0 picks a free one. Unit: port.")

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        """Accept the per-asset keys of earlier versions, with a warning: the per-asset
        gauges are always on now, bounded by ``limits.max_assets``."""
        if isinstance(data, dict):
            for key in _RETIRED_METRICS_KEYS.intersection(data):
                data = {k: v for k, v in data.items() if k != key}
                logging.getLogger("aewatch.config").warning(
                    "metrics.%s is no longer used and is ignored: each asset's score, "
                    "threshold in force and severity are always exported, one series each "
                    "per tracked asset (bounded by limits.max_assets); remove the key",
                    key,
                )
        return data


class LoggingConfig(BaseModel):
    """Log level and format (logs go to stderr; the journal or the container runtime keeps them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Least severe level logged. Unit: level."
    )
    as_json: bool = Field(
        False, alias="json", description="One JSON object per log line. Unit: flag."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Config(BaseModel):
    """The whole configuration of ``aewatch run``, validated once at start."""

    model_config = _FROZEN

    broker: BrokerConfig = Field(description="The MQTT broker. Unit: section.")
    inputs: tuple[InputConfig, ...] = Field(
        min_length=1, description="Subscriptions, at least one. Unit: list of sections."
    )
    models: tuple[ModelConfig, ...] = Field(
        min_length=1,
        description="Model bundles, first match wins; at least one. Unit: list of sections.",
    )
    outputs: OutputConfig = Field(
        default_factory=OutputConfig, description="Published topics. Unit: section."
    )
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig, description="Bounds and batching. Unit: section."
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="Metrics endpoint. Unit: section."
    )
    logging: LoggingConfig = Field(
        default_factory=LoggingConfig, description="Logging. Unit: section."
    )
    state_dir: ConfigPath | None = Field(
        None,
        description="A folder only this daemon writes (made mode 0700): the journal of QoS 1 "
        "readings taken but not yet done with, replayed at start, so a crash loses none; and "
        "the key that signs the retained states, unless outputs.state_key is given. null: "
        "readings are acknowledged on receipt, a crash loses those not yet scored, and no "
        "retained state is resumed without outputs.state_key. Unit: path.",
    )

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for i, model in enumerate(self.models[:-1]):
            if model.assets == "*" and model.dir is None:
                raise RuleError(
                    ("models", i + 1, "assets"),
                    f"never used: models[{i}] already serves every asset ('*'); "
                    "move the catch-all entry last",
                )
        names = [m.name for m in self.models]
        for i, name in enumerate(names):
            if name is not None and name in names[:i]:
                raise RuleError(("models", i, "name"), "another model has this name; rename one")
        self._check_sparkplug_groups()
        own = [self.outputs.alert_topic_for("x"), self.outputs.state_topic_for("x")]
        for i, source in enumerate(self.inputs):
            if any(source.match(topic) is not None for topic in own):
                raise RuleError(
                    ("inputs", i, "topic"),
                    "also matches the daemon's own output topics; change it or "
                    "outputs.topic_prefix",
                )
        return self

    def _check_sparkplug_groups(self) -> None:
        """Each Sparkplug group is read by one input (the first that takes it would win)."""
        taken: dict[str, int] = {}
        for i, source in enumerate(self.inputs):
            if source.sparkplug is None:
                continue
            group = source.sparkplug.group
            clash = taken.get(group, taken.get("+"))
            if clash is None and group == "+" and taken:
                clash = next(iter(taken.values()))
            if clash is not None:
                raise RuleError(
                    ("inputs", i, "sparkplug", "group"),
                    f"inputs[{clash}] already reads this Sparkplug group; give each "
                    'sparkplug_b input its own group, or one input with group: "+"',
                )
            taken[group] = i

    def model_for(self, asset: str) -> ModelConfig | None:
        """The first model entry serving ``asset``, or None (the asset is unknown)."""
        return next((m for m in self.models if m.serves(asset)), None)


def _literal_pattern(name: str) -> str:
    """An fnmatch pattern matching ``name`` alone (``*``, ``?`` and ``[`` taken literally).

    >>> from fnmatch import fnmatchcase
    >>> fnmatchcase("well[2]*", _literal_pattern("well[2]*")), _literal_pattern("a*b")
    (True, 'a[*]b')
    """
    return re.sub(r"([*?\[])", r"[\1]", name)


def _split_url(url: str) -> tuple[str, str, int]:
    # Before anything parses it: a password holding '/' or ':' would otherwise end up in
    # urllib's own message ("Port could not be cast to integer value as 'pa'").
    if "@" in url:
        raise ValueError(
            "credentials do not belong in the url; put the user in broker.username and the "
            "password in broker.password ({env: NAME}, {file: PATH} or {credential: NAME})"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise ValueError(f"not a valid URL ({err}); write mqtt://HOST:PORT") from err
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"scheme {parts.scheme or 'missing'!r} is not supported; use mqtt://HOST:PORT, "
            "or mqtts://HOST:PORT for TLS"
        )
    if not parts.hostname:
        raise ValueError("no host; write mqtt://HOST:PORT, e.g. mqtt://localhost:1883")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a broker url has only scheme, host and port; remove the rest")
    return parts.scheme, parts.hostname, port if port is not None else DEFAULT_PORTS[parts.scheme]


def _parse_template(topic: str) -> tuple[tuple[str, bool], ...]:
    levels: list[tuple[str, bool]] = []
    for level in topic.split("/"):
        named = _PART.fullmatch(level)
        if named:
            levels.append((named.group(1), True))
        elif "+" in level or "#" in level:
            raise ValueError(
                f"wildcard in level {level!r}; name the level instead, e.g. {{site}} for +"
            )
        elif "{" in level or "}" in level:
            raise ValueError(
                f"level {level!r}: a named part is a whole level, {{name}} with a "
                "Python-style name, e.g. plant/{site}/{asset}"
            )
        else:
            levels.append((level, False))
    names = [text for text, is_part in levels if is_part]
    if len(set(names)) != len(names):
        raise ValueError("a part name appears twice; give each level its own name")
    if "asset" not in names:
        raise ValueError("needs an {asset} part, e.g. plant/{site}/well/{asset}/{channel}")
    return tuple(levels)


def _sparkplug_template_problem(template: str, *, needs: str, allowed: set[str]) -> str | None:
    """What is wrong with a Sparkplug asset template, or None.

    >>> _sparkplug_template_problem("{node}-{dev}", needs="device", allowed=_SPARKPLUG_PARTS)
    "unknown part 'dev'; use {group}, {node} or {device}, e.g. {node}/{device}"
    """
    parts = [f"{{{name}}}" for name in ("group", "node", "device") if name in allowed]
    shown = f"{', '.join(parts[:-1])} or {parts[-1]}"
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:
        return f"a lone {{ or }}; name the parts {shown}"
    unknown = sorted(names - allowed)
    if unknown:
        example = "{node}/{device}" if needs == "device" else "{node}"
        return f"unknown part {unknown[0]!r}; use {shown}, e.g. {example}"
    if needs not in names:
        return f"needs {{{needs}}}, so that each {needs} is its own asset"
    if "+" in template or "#" in template:
        return "an asset name cannot hold + or #, MQTT's wildcards; remove them"
    return None


def _output_template_problem(template: str, *, needs_asset: bool) -> str | None:
    names = set(re.findall(r"\{([^{}]*)\}", template))
    if names - _OUTPUT_PARTS:
        return f"unknown part {sorted(names - _OUTPUT_PARTS)[0]!r}; use {{prefix}} and {{asset}}"
    if "+" in template or "#" in template:
        return "a published topic cannot contain + or #"
    if needs_asset and "asset" not in names:
        return "needs an {asset} part, one topic per asset, e.g. {prefix}/alerts/{asset}"
    if not needs_asset and "asset" in names:
        return "the status topic is one for the daemon; remove {asset}"
    return None
