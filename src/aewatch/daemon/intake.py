"""MQTT message to queued readings: what the network thread does, and nothing more (shell).

:meth:`Intake.take` runs inside paho's ``on_message``: it maps the topic to an input and
asset (:meth:`aewatch.config.InputConfig.match`), decodes the payload
(:func:`~aewatch.core.decode.decode`) and puts the readings on a bounded
:class:`ReadingQueue` for the scoring worker. It never scores and never blocks: a full
queue drops the message's readings and counts them (with a journal, the daemon instead
decodes with :meth:`Intake.decode_many` and :meth:`Intake.offer` s the readings, holding
back what does not fit). Everything it refuses is counted in
:attr:`Intake.counts` and logged at a limited rate, so a publisher in a loop cannot flood
the log.

Counts: ``messages``, ``readings`` (queued), ``unknown_topic``, ``no_model``,
``bad_asset_name``, ``decode_error:REASON`` (one per dropped message or part),
``queue_full`` (readings).

A ``sparkplug_b`` input's messages go to its Sparkplug decoder
(:class:`~aewatch.daemon.sparkplug_input.SparkplugInputs`), which names the asset and the
channels; its readings then meet the same checks (a model for the asset, a valid name)
and the same queue. Its births, deaths and sequence gaps are counted and logged there,
and the rebirth requests it asks for wait in :attr:`Intake.sparkplug` for the daemon to
publish. Host-application ``STATE`` messages on a ``spBv1.0/+/#`` subscription are taken
and ignored.

An asset whose name cannot make a valid output topic is refused here, before anything is
kept for it (``bad_asset_name``, logged once per name and reason): a name holding MQTT's
wildcards ``+`` or ``#`` or a NUL, or one that makes an output topic (alert, state or, when
published, denoised) longer than MQTT's 65 535 bytes in UTF-8. Left in, such an asset
would fail every publish, or get the daemon disconnected by the broker, and so silence the
others. Decode errors also count per asset in :class:`AssetErrors`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from aewatch.config import Config, InputConfig, OutputConfig
from aewatch.core.counts import Counts
from aewatch.core.decode import DECODE_REASONS, DecodeError, Decoder, Reading, Row
from aewatch.daemon.asset_errors import AssetErrors, shown_asset
from aewatch.daemon.fleet import Fleet
from aewatch.daemon.reading_queue import Items, ReadingQueue
from aewatch.daemon.sparkplug import SparkplugDecoder, parse_topic
from aewatch.daemon.sparkplug_input import SparkplugInputs

__all__ = [
    "MAX_TOPIC_BYTES",
    "Decoded",
    "Intake",
    "IntakeCounts",
    "Items",
    "RateLimitedLog",
    "ReadingQueue",
    "name_refusal",
]

_ROUTE_CACHE = 100_000  # topics remembered; the cache is cleared beyond it
_LOG_EVERY_S = 10.0
MAX_TOPIC_BYTES = 65_535  # MQTT's limit on a topic name, in UTF-8
_REFUSED_LOGGED = 1_000  # refused names remembered to log each once; rate-limited beyond

log = logging.getLogger("aewatch.intake")

# asset, channel, and the decoder of its input and model (None: no model serves the asset);
# for an asset whose name cannot make an output topic, why (a str); or the Sparkplug
# decoder of a sparkplug_b input, which finds the asset and channels in the message
_Route = tuple[str, str | None, Decoder | None] | str | SparkplugDecoder
_STATE_TOPIC = "spBv1.0/STATE/"  # a Sparkplug host application's state: no data


class Decoded(NamedTuple):
    """One message's readings, decoded and not yet queued: its ``position`` in its lot,
    ``topic``, ``items`` and how many readings they hold (``readings``)."""

    position: int
    topic: str
    items: Items
    readings: int


class RateLimitedLog:
    """Logs the first event of each kind, then at most one per ``every_s`` with a count."""

    def __init__(
        self,
        logger: logging.Logger,
        every_s: float = _LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every_s = every_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._skipped: Counter[str] = Counter()

    def warning(self, kind: str, message: str, *args: object) -> None:
        """Log ``message`` unless ``kind`` was logged less than ``every_s`` ago."""
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.every_s:
            self._skipped[kind] += 1
            return
        self._last[kind] = now
        skipped = self._skipped.pop(kind, 0)
        suffix = f" ({skipped} more like it since the last report)" if skipped else ""
        self.logger.warning(message + suffix, *args)


@dataclass(slots=True)
class IntakeCounts(Counts):
    """What the network thread took and refused, since the start (the module's docstring
    says what each counts). One writer, paho's network thread."""

    messages: int = 0
    readings: int = 0
    unknown_topic: int = 0
    no_model: int = 0
    bad_asset_name: int = 0
    queue_full: int = 0
    internal_error: int = 0
    decode_errors: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(DECODE_REASONS, 0),
        metadata={"flat": "decode_error"},
    )


class Intake:
    """Topic routing and payload decoding for the network thread; feeds a ReadingQueue."""

    def __init__(
        self,
        config: Config,
        fleet: Fleet,
        queue: ReadingQueue,
        clock: Callable[[], float] = time.time,
        *,
        errors: AssetErrors | None = None,
    ) -> None:
        self.config = config
        self.fleet = fleet  # replaced whole on reload; read once per message
        self.queue = queue
        self.clock = clock
        self.errors = errors or AssetErrors(log)
        self.counts = IntakeCounts()
        self._routes: dict[str, _Route | None] = {}
        self._routes_from: tuple[Config, Fleet] | None = None  # what the cached routes used
        self._decoders: dict[tuple[int, int], Decoder] = {}  # by input and model
        self.sparkplug = SparkplugInputs()  # kept across reloads, as are its decoders
        # Why a Sparkplug asset's readings are refused (no_model, bad_asset_name; "": they
        # are not), found once per asset; cleared with the routes.
        self._sparkplug_assets: dict[str, str] = {}
        self._log = RateLimitedLog(log)
        self._refused_logged: set[tuple[str, str]] = set()

    def take(self, topic: str, payload: bytes) -> None:
        """Decode one message and queue its readings; count whatever is refused."""
        self.take_many(((topic, payload),))

    def take_many(
        self, messages: Iterable[tuple[str, bytes]], *, arrival_s: float | None = None
    ) -> None:
        """Decode ``(topic, payload)`` messages and queue all their readings in one step.

        What :meth:`take` does for each, with one queue operation for the lot (the network
        thread's fast path hands over every message of a socket read at once). When the
        lot does not fit, the messages are queued one by one, so those that fit get in;
        the others' readings are dropped and counted (``queue_full``).
        """
        self.put(self.decode_many(messages, arrival_s=arrival_s))

    def decode_many(
        self, messages: Iterable[tuple[str, bytes]], *, arrival_s: float | None = None
    ) -> list[Decoded]:
        """Decode ``(topic, payload)`` messages; those with readings to queue, in order.

        Everything refused is counted and logged here. ``arrival_s`` None is now (they came
        in one socket read: one arrival time; a replayed message gives the time it came).
        """
        if arrival_s is None:
            arrival_s = self.clock()
        decoded: list[Decoded] = []
        for index, (topic, payload) in enumerate(messages):
            try:
                found = self._decode(topic, payload, arrival_s)
            except Exception:  # a bug must not lose the other messages of the read
                self.counts.internal_error += 1
                log.exception("internal error on a message of %s", topic)
                continue
            if found is not None:
                decoded.append(Decoded(index, topic, *found))
        return decoded

    def offer(self, decoded: Sequence[Decoded]) -> int:
        """Queue ``decoded`` in order while they fit; how many were queued (a prefix).

        Those that do not fit are neither queued nor counted: the caller keeps them
        (the daemon holds unacknowledged QoS 1 messages until there is room).
        """
        if len(decoded) > 1:
            lot = tuple(itertools.chain.from_iterable(message.items for message in decoded))
            count = sum(message.readings for message in decoded)
            if self.queue.put(lot, count):
                self.counts.readings += count
                return len(decoded)
        queued = 0
        for message in decoded:
            if not self.queue.put(message.items, message.readings):
                break
            self.counts.readings += message.readings
            queued += 1
        return queued

    def _decode(self, topic: str, payload: bytes, arrival_s: float) -> tuple[Items, int] | None:
        """The message's good items and their readings (None when none); counts refusals."""
        counts = self.counts
        counts.messages += 1
        route = self._route(topic)
        if route is None:
            counts.unknown_topic += 1
            self._log.warning("unknown_topic", "message on %s matches no input; ignored", topic)
            return None
        if isinstance(route, str):
            counts.bad_asset_name += 1
            return None
        if isinstance(route, SparkplugDecoder):
            return self._decode_sparkplug(route, topic, payload, arrival_s)
        asset, channel, decoder = route
        if decoder is None:
            counts.no_model += 1
            self._log.warning(
                "no_model",
                "asset %s (topic %s) matches no model; add one under models",
                asset,
                topic,
            )
            return None
        try:
            decoded = decoder.decode(payload, asset=asset, channel=channel, arrival_s=arrival_s)
        except DecodeError as err:
            self._refused(asset, topic, err)
            return None
        except Exception as err:  # a bug in decoding one asset's payload: the others go on
            counts.internal_error += 1
            self.errors.note(asset, "decode", type(err).__name__, f"{err} (topic {topic})")
            return None
        for part_error in decoded.errors:
            self._refused(asset, topic, part_error)
        if not decoded.items:
            return None
        return decoded.items, decoded.count

    def _decode_sparkplug(
        self, decoder: SparkplugDecoder, topic: str, payload: bytes, arrival_s: float
    ) -> tuple[Items, int] | None:
        """A Sparkplug B message's readings, as :meth:`_decode` gives them; its events and
        commands go to :attr:`sparkplug`."""
        parts = parse_topic(topic)
        if parts is None:
            if not topic.startswith(_STATE_TOPIC):
                self.counts.unknown_topic += 1
                self._log.warning(
                    "unknown_topic",
                    "message on %s is no Sparkplug B edge-node topic; ignored",
                    topic,
                )
            return None
        asset = decoder.asset(parts)
        try:
            outcome = decoder.decode_parsed(parts, topic, payload, arrival_s=arrival_s)
        except DecodeError as err:
            self._refused(asset, topic, err)
            return None
        except Exception as err:  # a bug in one node's message: the others go on
            self.counts.internal_error += 1
            self.errors.note(asset, "decode", type(err).__name__, f"{err} (topic {topic})")
            return None
        if outcome is None:
            return None  # another group's: the route took it, the decoder did not
        for error in outcome.errors:
            self._refused(asset, topic, error)
        if outcome.born or outcome.stale or outcome.commands:
            self.sparkplug.note(parts, outcome, asset=asset)
        readings = outcome.readings
        if not readings or self._refuses_sparkplug_asset(asset, topic):
            return None
        return _items(readings), len(readings)

    def _refuses_sparkplug_asset(self, asset: str, topic: str) -> bool:
        """Whether a Sparkplug message's readings of ``asset`` are refused (counted,
        logged) because no model serves it or its name cannot make an output topic."""
        reason = self._sparkplug_assets.get(asset)
        if reason is None:
            refusal = name_refusal(asset, self.config.outputs)
            if refusal is not None:
                self._refuse_name(asset, topic, refusal)
                reason = "bad_asset_name"
            else:
                reason = "no_model" if self.fleet.model_for(asset) is None else ""
            if len(self._sparkplug_assets) >= _ROUTE_CACHE:
                self._sparkplug_assets.clear()
            self._sparkplug_assets[asset] = reason
        if not reason:
            return False
        if reason == "bad_asset_name":
            self.counts.bad_asset_name += 1
            return True
        self.counts.no_model += 1
        self._log.warning(
            "no_model",
            "asset %s (topic %s) matches no model; add one under models",
            asset,
            topic,
        )
        return True

    def put(self, decoded: Sequence[Decoded]) -> None:
        """Queue the readings of ``decoded``: as one lot when it fits, else one message at a
        time, dropping and counting (``queue_full``) those that do not fit."""
        queued = self.offer(decoded) if len(decoded) > 1 else 0
        for message in decoded[queued:]:
            self._put(message)

    def _put(self, message: Decoded) -> None:
        """Queue one message's readings, or count them dropped when the queue is full."""
        topic, count = message.topic, message.readings
        if self.queue.put(message.items, count):
            self.counts.readings += count
            return
        self.counts.queue_full += count
        self._log.warning(
            "queue_full",
            "reading queue full (%d readings); dropped %d readings of %s: the scoring "
            "worker is behind, raise limits.queue_size or add CPU",
            self.queue.max_readings,
            count,
            topic,
        )

    def _refused(self, asset: str, topic: str, err: DecodeError) -> None:
        self.counts.decode_errors[err.reason] += 1
        self.errors.count(asset, "decode")
        self._log.warning(f"decode:{err.reason}", "bad payload on %s: %s", topic, err)

    def _route(self, topic: str) -> _Route | None:
        config, fleet = self.config, self.fleet
        cached_from = self._routes_from
        if cached_from is None or cached_from[0] is not config or cached_from[1] is not fleet:
            # A reload swapped the config or the models whole: routes cached from the old
            # ones would keep their old format, prefix, timestamp source or period. Only
            # this (the network) thread touches the cache, so checking here needs no lock.
            self._routes = {}
            self._decoders = {}
            self._sparkplug_assets = {}
            self.sparkplug.serve(config)
            self._routes_from = (config, fleet)
        try:
            return self._routes[topic]
        except KeyError:
            pass
        route: _Route | None = None
        for source in config.inputs:
            if source.takes_sparkplug(topic):
                route = self.sparkplug.decoder(source)
                break
            parts = source.match(topic)
            if parts is not None:
                asset = parts["asset"]
                refusal = name_refusal(asset, config.outputs)
                if refusal is not None:
                    self._refuse_name(asset, topic, refusal)
                    return refusal[0]  # not cached: such topics are long and may be many
                route = (asset, parts.get("channel"), self._decoder(source, asset))
                break
        if len(self._routes) >= _ROUTE_CACHE:
            self._routes.clear()
        self._routes[topic] = route
        return route

    def _refuse_name(self, asset: str, topic: str, refusal: tuple[str, str]) -> None:
        """Log a refused asset name once per name and reason (rate-limited past a bound)."""
        reason, why = refusal
        message = "asset %s (topic %s) refused: %s; its messages are dropped"
        args = (shown_asset(asset), shown_asset(topic), why)
        key = (asset, reason)
        if key in self._refused_logged:
            return
        if len(self._refused_logged) < _REFUSED_LOGGED:
            self._refused_logged.add(key)
            log.warning(message, *args)
        else:
            self._log.warning(f"bad_asset_name:{reason}", message, *args)

    def _decoder(self, source: InputConfig, asset: str) -> Decoder | None:
        """The decoder for ``asset`` on ``source``: one per input and model; None: no model."""
        model = self.fleet.model_for(asset)
        if model is None:
            return None
        key = (id(source), id(model))
        decoder = self._decoders.get(key)
        if decoder is not None:
            return decoder
        limits = self.config.limits
        decoder = self._decoders[key] = Decoder(
            source.payload,
            use_payload_time=source.timestamp == "payload",
            timestamp_key=source.timestamp_key,
            value_key=source.value_key,
            values_key=source.values_key,
            period_s=model.bundle.period_s,
            max_bytes=limits.max_payload_bytes,
            max_ahead_s=limits.max_ahead_s,
        )
        return decoder


def _items(readings: tuple[Reading, ...]) -> Items:
    """A message's readings as queue items: one :class:`Row` when they are one asset's at
    one time, each channel once (the pipeline places a row in one step), else as they are."""
    first = readings[0]
    if len(readings) == 1:
        return readings
    channels = tuple(reading.channel for reading in readings)
    if len(set(channels)) < len(channels) or any(
        r.timestamp != first.timestamp or r.asset != first.asset for r in readings
    ):
        return readings
    return (Row(first.asset, channels, first.timestamp, tuple(r.value for r in readings)),)


def name_refusal(asset: str, outputs: OutputConfig) -> tuple[str, str] | None:
    """Why ``asset`` cannot name the output topics, as ``(reason, explanation)``; or None.

    >>> outputs = OutputConfig()
    >>> name_refusal("well-7", outputs) is None
    True
    >>> name_refusal("w+1", outputs)[0], name_refusal("x" * 65_530, outputs)[0]
    ('wildcard', 'topic_too_long')
    """
    if "+" in asset or "#" in asset:
        return "wildcard", "the name holds '+' or '#', MQTT's wildcards, which no topic may hold"
    if "\0" in asset:
        return "nul", "the name holds a NUL character, which no MQTT topic may hold"
    try:
        asset.encode("utf-8")
    except UnicodeEncodeError:
        return "not_utf8", "the name is not valid UTF-8, which every MQTT topic must be"
    topics = {"alert": outputs.alert_topic_for(asset), "state": outputs.state_topic_for(asset)}
    if outputs.denoised:
        topics["denoised"] = outputs.denoised_topic_for(asset)
    for kind, topic in topics.items():
        size = len(topic.encode("utf-8"))
        if size > MAX_TOPIC_BYTES:
            return "topic_too_long", (
                f"its {kind} topic would be {size} bytes, beyond MQTT's {MAX_TOPIC_BYTES}; "
                "shorten the asset names or outputs.topic_prefix"
            )
    return None
