"""Sparkplug B messages into readings (pipeline: MQTT bytes -> Reading, ``payload: sparkplug_b``).

Sparkplug B (Eclipse Tahu, spec 3.0) is what Ignition, Cirrus Link and most edge gateways
speak: protobuf payloads on ``spBv1.0/{group}/{type}/{node}[/{device}]``. An edge node
announces itself and each of its devices with a BIRTH message (``NBIRTH``, ``DBIRTH``)
that lists every metric with its name, data type and, usually, a numeric alias; the DATA
messages that follow (``NDATA``, ``DDATA``) carry only the metrics that changed, by alias.
So unlike :mod:`aewatch.core.decode` this decoder keeps state: per edge node, the
aliases and data types its births declared, its birth/death sequence number ``bdSeq`` and
the message sequence number ``seq`` (0 to 255, one more with every message of the node).

:class:`SparkplugDecoder` is pure: the shell passes the topic, the payload bytes and the
arrival time in, and publishes the commands it hands back. Each message gives a
:class:`SparkplugOutcome`:

* ``readings``: one per numeric metric of a DATA message (and of a BIRTH, which carries
  the current values), for the asset of its node or device (``asset_template``), the
  metric's name as the channel and its own timestamp (else the payload's, else the
  arrival time; milliseconds on the wire). Booleans read as 0 and 1. Metrics of other
  types (strings, dates, data sets, templates, arrays), null values, ``bdSeq`` and the
  ``Node Control/`` and ``Device Control/`` metrics are no reading: they are skipped
  without an error, since births are full of them.
  DATA messages report by exception (only what changed): each metric's last value (from
  the birth, then the DATA since) is held, and a DATA message that gives readings of an
  asset also gives its other metrics at their held values, stamped with the newest of its
  readings' times, so an unchanged metric is neither missing nor stale. A death or a
  ``seq`` gap drops what is held until the next birth (a lost message may have changed it).
* ``errors``: a payload that is no Sparkplug B protobuf, a metric whose alias no birth
  declared, a value that is not finite, a timestamp that is not plausible.
* ``stale``: assets whose data stopped being complete: an ``NDEATH`` (of the current
  ``bdSeq``; a late death of an earlier session changes nothing) stales the node and every
  device it has declared, a ``DDEATH`` its device, a ``seq`` gap (messages lost) the node
  and its devices. ``born``: assets a birth (re)started.
* ``commands``: ``(topic, payload)`` pairs to publish: a rebirth request (``NCMD`` with
  ``Node Control/Rebirth = true``) when a node's ``seq`` jumps or DATA arrives from a node
  with no birth on record (the daemon started after it), at most once per node every
  ``rebirth_interval_s`` seconds, and only when ``ask_rebirth`` is set.

The host-application ``STATE`` messages and the commands (``NCMD``, ``DCMD``) are no
input and give an empty outcome; a topic outside ``spBv1.0`` or in another group than
``group`` (when given) gives ``None`` from :meth:`SparkplugDecoder.decode`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from google.protobuf.message import DecodeError as ProtobufError

from aewatch.core.decode import (
    DEFAULT_MAX_BYTES,
    FLOAT32_MAX,
    MS_THRESHOLD,
    DecodeError,
    Reading,
)
from aewatch.daemon.sparkplug_schema import Payload

__all__ = [
    "NAMESPACE",
    "REBIRTH_METRIC",
    "SPARKPLUG_REASONS",
    "SparkplugDecoder",
    "SparkplugOutcome",
    "SparkplugTopic",
    "parse_topic",
    "rebirth_request",
]

NAMESPACE = "spBv1.0"
REBIRTH_METRIC = "Node Control/Rebirth"
BD_SEQ_METRIC = "bdSeq"
MESSAGE_TYPES = ("NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA", "NCMD", "DCMD")
SPARKPLUG_REASONS = ("not_protobuf", "unknown_alias", "no_birth")
DEFAULT_ASSET_TEMPLATE = "{node}/{device}"
_SEQ_MODULUS = 256
# The session number and the node's and devices' controls (rebirth, next server, scan
# rate ...) are declared as metrics but measure nothing.
_NOT_SENSORS = (BD_SEQ_METRIC, "Node Control/", "Device Control/")

# Sparkplug B data types (the schema's DataType enum) that make a reading, and the value
# field each is sent in. Signed integers of up to 32 bits travel as their two's
# complement in the unsigned int_value, 64-bit ones in long_value (spec 3.0, 6.4.16).
_INT_BITS = {1: 8, 2: 16, 3: 32, 4: 64}  # Int8, Int16, Int32, Int64: signed
_UNSIGNED = {5, 6, 7, 8}  # UInt8, UInt16, UInt32, UInt64
_FLOAT, _DOUBLE, _BOOLEAN = 9, 10, 11
_NUMERIC = frozenset((*_INT_BITS, *_UNSIGNED, _FLOAT, _DOUBLE, _BOOLEAN))


class SparkplugTopic(NamedTuple):
    """The parts of a Sparkplug B topic; ``device`` is None for node messages."""

    group: str
    kind: str  # one of MESSAGE_TYPES
    node: str
    device: str | None


def parse_topic(topic: str) -> SparkplugTopic | None:
    """The parts of ``topic``, or None when it is no Sparkplug B v1.0 edge-node topic.

    >>> parse_topic("spBv1.0/field-north/DDATA/gateway-3/well-7")
    SparkplugTopic(group='field-north', kind='DDATA', node='gateway-3', device='well-7')
    >>> parse_topic("spBv1.0/STATE/scada-host") is None
    True
    """
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[2] not in MESSAGE_TYPES:
        return None
    if not all(parts[1:]):
        return None
    is_device = parts[2][0] == "D"
    if is_device != (len(parts) == 5):
        return None
    return SparkplugTopic(parts[1], parts[2], parts[3], parts[4] if is_device else None)


def rebirth_request(group: str, node: str, *, now_s: float) -> tuple[str, bytes]:
    """The ``NCMD`` asking edge node ``node`` to send its births again: topic and payload."""
    payload = Payload(timestamp=round(now_s * 1000.0))
    metric = payload.metrics.add()
    metric.name = REBIRTH_METRIC
    metric.datatype = _BOOLEAN
    metric.boolean_value = True
    return f"{NAMESPACE}/{group}/NCMD/{node}", payload.SerializeToString()


@dataclass(frozen=True, slots=True)
class SparkplugOutcome:
    """What one Sparkplug B message gave (see the module docstring)."""

    readings: tuple[Reading, ...] = ()
    errors: tuple[DecodeError, ...] = ()
    stale: tuple[str, ...] = ()
    born: tuple[str, ...] = ()
    commands: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class _Node:
    """What an edge node's births declared, and where its sequence numbers stand."""

    bd_seq: int | None = None
    seq: int | None = None  # the last message's; None before a birth
    aliases: dict[int, tuple[str | None, str, int]] = field(default_factory=dict)
    types: dict[tuple[str | None, str], int] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)
    last_rebirth_s: float = -math.inf
    # device (None: the node itself) -> channel -> its last value, for report by exception
    held: dict[str | None, dict[str, float]] = field(default_factory=dict)


class SparkplugDecoder:
    """Turns one group's (or every group's) Sparkplug B messages into readings.

    ``asset_template`` names a device's asset from ``{group}``, ``{node}`` and
    ``{device}``; a node's own metrics go to the asset ``node_template`` names (by default
    the node id). ``channels`` renames metrics: a metric named there gives readings of the
    channel it maps to, any other one of a channel named as the metric.
    ``use_payload_time=False`` stamps every reading with its arrival time. Not for several
    threads at once.

    >>> decoder = SparkplugDecoder()
    >>> birth = Payload(seq=0, timestamp=1_700_000_000_000)
    >>> m = birth.metrics.add(name="flow", alias=1, datatype=10, double_value=12.5)
    >>> out = decoder.decode("spBv1.0/north/NBIRTH/gw1", birth.SerializeToString(),
    ...                      arrival_s=1_700_000_000.5)
    >>> out.readings, out.born
    ((Reading(asset='gw1', channel='flow', timestamp=1700000000.0, value=12.5),), ('gw1',))
    """

    def __init__(
        self,
        *,
        group: str | None = None,
        asset_template: str = DEFAULT_ASSET_TEMPLATE,
        node_template: str = "{node}",
        channels: Mapping[str, str] | None = None,
        use_payload_time: bool = True,
        ask_rebirth: bool = True,
        rebirth_interval_s: float = 30.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_ahead_s: float | None = None,
    ) -> None:
        for name, template in (
            ("asset_template", asset_template),
            ("node_template", node_template),
        ):
            try:
                template.format(group="g", node="n", device="d")
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(
                    f"{name} {template!r} may use only {{group}}, {{node}} and {{device}}: {err}"
                ) from None
        if "{node}" not in node_template:
            raise ValueError(f"node_template {node_template!r} needs {{node}}")
        if "{device}" not in asset_template:
            raise ValueError(f"asset_template {asset_template!r} needs {{device}}")
        self.group = group
        self.asset_template = asset_template
        self.node_template = node_template
        self.channels = dict(channels or {})
        self.use_payload_time = use_payload_time
        self.ask_rebirth = ask_rebirth
        self.rebirth_interval_s = rebirth_interval_s
        self.max_bytes = max_bytes
        self.max_ahead_s = max_ahead_s
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._handlers: dict[str, Callable[..., SparkplugOutcome]] = {
            "NBIRTH": self._node_birth,
            "DBIRTH": self._device_birth,
            "NDATA": self._data,
            "DDATA": self._data,
            "NDEATH": self._node_death,
            "DDEATH": self._device_death,
        }

    def asset(self, topic: SparkplugTopic) -> str:
        """The asset a message of ``topic`` is about."""
        if topic.device is None:
            return self.node_template.format(group=topic.group, node=topic.node, device="")
        return self.asset_template.format(group=topic.group, node=topic.node, device=topic.device)

    def decode(self, topic: str, payload: bytes, *, arrival_s: float) -> SparkplugOutcome | None:
        """What the message on ``topic`` gives; None when the topic is not this decoder's.

        Raises:
            DecodeError: the whole payload is unusable (too large, not Sparkplug B).
        """
        parts = parse_topic(topic)
        if parts is None:
            return None
        return self.decode_parsed(parts, topic, payload, arrival_s=arrival_s)

    def decode_parsed(
        self, parts: SparkplugTopic, topic: str, payload: bytes, *, arrival_s: float
    ) -> SparkplugOutcome | None:
        """:meth:`decode` for a caller that has parsed ``topic`` already (``parts``).

        Raises:
            DecodeError: as :meth:`decode`.
        """
        if self.group is not None and parts.group != self.group:
            return None
        handler = self._handlers.get(parts.kind)
        if handler is None:
            return SparkplugOutcome()  # NCMD, DCMD: commands to the node, not data
        if len(payload) > self.max_bytes:
            raise DecodeError(
                "too_large", f"payload of {len(payload)} bytes is over max_bytes={self.max_bytes}"
            )
        try:
            message = Payload.FromString(payload)
        except (ProtobufError, RuntimeError, ValueError) as err:
            raise DecodeError(
                "not_protobuf", f"{parts.kind} on {topic} is no Sparkplug B payload ({err})"
            ) from None
        return handler(parts, message, arrival_s)

    # -- births and deaths ------------------------------------------------------------------

    def _node_birth(
        self, topic: SparkplugTopic, message: Any, arrival_s: float
    ) -> SparkplugOutcome:
        node = _Node(seq=_seq_of(message))
        old = self._nodes.get((topic.group, topic.node))
        if old is not None:
            node.last_rebirth_s = old.last_rebirth_s
        for metric in message.metrics:
            if metric.name == BD_SEQ_METRIC:
                node.bd_seq = _integer(metric)
            self._declare(node, None, metric)
        self._nodes[(topic.group, topic.node)] = node
        readings, errors = self._readings(topic, node, message, arrival_s)
        node.held[None] = {reading.channel: reading.value for reading in readings}
        return SparkplugOutcome(readings, errors, born=(self.asset(topic),))

    def _device_birth(
        self, topic: SparkplugTopic, message: Any, arrival_s: float
    ) -> SparkplugOutcome:
        node = self._nodes.get((topic.group, topic.node))
        if node is None or node.seq is None:
            return self._unborn(topic, arrival_s)
        gap = self._sequence(topic, node, message, arrival_s)
        node.devices.add(str(topic.device))
        for metric in message.metrics:
            self._declare(node, topic.device, metric)
        readings, errors = self._readings(topic, node, message, arrival_s)
        node.held[topic.device] = {reading.channel: reading.value for reading in readings}
        born = (self.asset(topic),)
        return _merged(SparkplugOutcome(readings, errors, born=born), gap)

    def _node_death(
        self, topic: SparkplugTopic, message: Any, arrival_s: float
    ) -> SparkplugOutcome:
        del arrival_s
        node = self._nodes.get((topic.group, topic.node))
        if node is None:
            return SparkplugOutcome()
        bd_seq = next((_integer(m) for m in message.metrics if m.name == BD_SEQ_METRIC), None)
        if bd_seq is not None and node.bd_seq is not None and bd_seq != node.bd_seq:
            return SparkplugOutcome()  # the will of an earlier session, sent late
        node.seq = None  # no data is trusted until the next birth
        node.held.clear()
        return SparkplugOutcome(stale=self._node_assets(topic, node))

    def _device_death(
        self, topic: SparkplugTopic, message: Any, arrival_s: float
    ) -> SparkplugOutcome:
        node = self._nodes.get((topic.group, topic.node))
        if node is None or node.seq is None:
            return SparkplugOutcome()
        gap = self._sequence(topic, node, message, arrival_s)
        node.devices.discard(str(topic.device))
        node.held.pop(topic.device, None)
        return _merged(SparkplugOutcome(stale=(self.asset(topic),)), gap)

    # -- data -------------------------------------------------------------------------------

    def _data(self, topic: SparkplugTopic, message: Any, arrival_s: float) -> SparkplugOutcome:
        node = self._nodes.get((topic.group, topic.node))
        if node is None or node.seq is None:
            return self._unborn(topic, arrival_s)
        gap = self._sequence(topic, node, message, arrival_s)
        readings, errors = self._readings(topic, node, message, arrival_s)
        carried = self._carried(topic, node, readings, errors)
        return _merged(SparkplugOutcome(readings + carried, errors), gap)

    def _readings(
        self, topic: SparkplugTopic, node: _Node, message: Any, arrival_s: float
    ) -> tuple[tuple[Reading, ...], tuple[DecodeError, ...]]:
        asset = self.asset(topic)
        payload_ms = message.timestamp if message.HasField("timestamp") else None
        readings: list[Reading] = []
        errors: list[DecodeError] = []
        for metric in message.metrics:
            try:
                found = self._reading(
                    topic, node, metric, asset=asset, payload_ms=payload_ms, arrival_s=arrival_s
                )
            except DecodeError as err:
                errors.append(err)
                continue
            if found is not None:
                readings.append(found)
        return tuple(readings), tuple(errors)

    def _carried(
        self,
        topic: SparkplugTopic,
        node: _Node,
        readings: tuple[Reading, ...],
        errors: tuple[DecodeError, ...],
    ) -> tuple[Reading, ...]:
        """The asset's held metrics that ``readings`` (a DATA message's) do not give, at their
        held values and the newest of ``readings``' times; ``readings`` are held from now,
        and a metric of ``errors`` (a bad value) is no longer held."""
        held = node.held.setdefault(topic.device, {})
        for error in errors:
            if error.channel is not None:
                held.pop(self.channels.get(error.channel, error.channel), None)
        for reading in readings:
            held[reading.channel] = reading.value
        if not readings or len(held) == len(readings):
            return ()
        given = {reading.channel for reading in readings}
        at = max(reading.timestamp for reading in readings)
        asset = readings[0].asset
        return tuple(Reading(asset, c, at, v) for c, v in held.items() if c not in given)

    def _reading(
        self,
        topic: SparkplugTopic,
        node: _Node,
        metric: Any,
        *,
        asset: str,
        payload_ms: int | None,
        arrival_s: float,
    ) -> Reading | None:
        name, datatype = self._name_and_type(topic, node, metric)
        if datatype not in _NUMERIC or metric.is_null or name.startswith(_NOT_SENSORS):
            return None
        value = _number(metric, datatype)
        if value is None:
            return None  # a declared numeric metric sent without a value
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
            raise DecodeError(
                "non_finite", f"{name}: {value!r} is not a finite float32", channel=name
            )
        stamp_ms = metric.timestamp if metric.HasField("timestamp") else payload_ms
        timestamp = arrival_s
        if self.use_payload_time and stamp_ms is not None:
            timestamp = self._timestamp(stamp_ms, name, arrival_s)
        return Reading(asset, self.channels.get(name, name), timestamp, value)

    def _name_and_type(self, topic: SparkplugTopic, node: _Node, metric: Any) -> tuple[str, int]:
        if metric.HasField("name") and metric.name:
            name = metric.name
            declared = node.types.get((topic.device, name))
        elif metric.HasField("alias"):
            known = node.aliases.get(metric.alias)
            if known is None or known[0] != topic.device:
                raise DecodeError(
                    "unknown_alias",
                    f"alias {metric.alias} was declared by no birth of "
                    f"{topic.node}{'' if topic.device is None else '/' + topic.device}",
                )
            _, name, declared = known
        else:
            raise DecodeError("bad_shape", "a metric with neither name nor alias")
        datatype = metric.datatype if metric.HasField("datatype") else declared
        return name, 0 if datatype is None else datatype

    def _timestamp(self, stamp_ms: int, name: str, arrival_s: float) -> float:
        seconds = stamp_ms / 1000.0
        if not 0.0 < stamp_ms < MS_THRESHOLD * 1000.0:
            raise DecodeError("bad_timestamp", f"{name}: timestamp {stamp_ms} ms", channel=name)
        if self.max_ahead_s is not None and seconds - arrival_s > self.max_ahead_s:
            raise DecodeError(
                "future_timestamp",
                f"{name}: timestamp {seconds - arrival_s:.0f} s after its arrival",
                channel=name,
            )
        return seconds

    # -- sequence numbers and rebirths ------------------------------------------------------

    def _sequence(
        self, topic: SparkplugTopic, node: _Node, message: Any, arrival_s: float
    ) -> SparkplugOutcome:
        """Check ``message``'s ``seq`` against the node's last; a gap stales the node and asks
        for a rebirth."""
        seq = _seq_of(message)
        expected = None if node.seq is None else (node.seq + 1) % _SEQ_MODULUS
        node.seq = seq
        if expected is None or seq is None or seq == expected:
            return SparkplugOutcome()
        node.held.clear()  # a lost message may have changed any of them
        return SparkplugOutcome(
            stale=self._node_assets(topic, node), commands=self._rebirth(topic, node, arrival_s)
        )

    def _unborn(self, topic: SparkplugTopic, arrival_s: float) -> SparkplugOutcome:
        """Data from a node with no birth on record: nothing can be read; ask for a birth."""
        node = self._nodes.setdefault((topic.group, topic.node), _Node())
        error = DecodeError(
            "no_birth",
            f"{topic.kind} from {topic.node} before its birth: its metrics' aliases and types "
            "are unknown"
            + ("; a rebirth is requested" if self.ask_rebirth else "; waiting for its NBIRTH"),
        )
        return SparkplugOutcome(errors=(error,), commands=self._rebirth(topic, node, arrival_s))

    def _rebirth(
        self, topic: SparkplugTopic, node: _Node, now_s: float
    ) -> tuple[tuple[str, bytes], ...]:
        if not self.ask_rebirth or now_s - node.last_rebirth_s < self.rebirth_interval_s:
            return ()
        node.last_rebirth_s = now_s
        return (rebirth_request(topic.group, topic.node, now_s=now_s),)

    def _declare(self, node: _Node, device: str | None, metric: Any) -> None:
        if not metric.name:
            return
        datatype = metric.datatype if metric.HasField("datatype") else 0
        node.types[(device, metric.name)] = datatype
        if metric.HasField("alias"):
            node.aliases[metric.alias] = (device, metric.name, datatype)

    def _node_assets(self, topic: SparkplugTopic, node: _Node) -> tuple[str, ...]:
        node_topic = topic._replace(device=None)
        devices = (self.asset(topic._replace(device=d)) for d in sorted(node.devices))
        return (self.asset(node_topic), *devices)


def _merged(first: SparkplugOutcome, second: SparkplugOutcome) -> SparkplugOutcome:
    return SparkplugOutcome(
        first.readings + second.readings,
        first.errors + second.errors,
        tuple(dict.fromkeys(second.stale + first.stale)),
        first.born + second.born,
        first.commands + second.commands,
    )


def _seq_of(message: Any) -> int | None:
    return int(message.seq) % _SEQ_MODULUS if message.HasField("seq") else None


def _integer(metric: Any) -> int | None:
    kind = metric.WhichOneof("value")
    if kind in ("int_value", "long_value"):
        return int(getattr(metric, kind))
    return None


def _number(metric: Any, datatype: int) -> float | None:
    """The metric's value as a float, by its Sparkplug data type; None when it has none."""
    kind = metric.WhichOneof("value")
    if kind is None:
        return None
    raw = getattr(metric, kind)
    if kind == "boolean_value":
        return 1.0 if raw else 0.0
    if kind in ("float_value", "double_value"):
        return float(raw)
    if kind not in ("int_value", "long_value"):
        return None
    bits = _INT_BITS.get(datatype)
    if bits is not None:  # signed: two's complement in an unsigned field
        raw &= (1 << bits) - 1
        if raw >= 1 << (bits - 1):
            raw -= 1 << bits
    return float(raw)
