"""The ``sparkplug_b`` inputs of the intake: one decoder each, their events and commands (shell).

A Sparkplug B edge node's DATA messages carry its metrics by alias, declared in its
births, so each ``sparkplug_b`` input keeps one :class:`~aewatch.daemon.sparkplug.
SparkplugDecoder` for as long as the input stays the same: a reload that leaves it
unchanged keeps the aliases and sequence numbers learnt (a reload that changes it starts
afresh, and the nodes' next data asks for a rebirth). :class:`SparkplugInputs` holds those
decoders for the network thread, with what their messages gave besides readings:

* **events**, counted by kind (:data:`SPARKPLUG_EVENTS`, exported as
  ``aewatch_sparkplug_events_total{event}``) and logged at INFO, one line each: ``birth``
  (an NBIRTH or DBIRTH: its asset is read from now on), ``death`` (an NDEATH of the node's
  current session, or a DDEATH: its assets are stale until the next birth), ``seq_gap``
  (a node's sequence number skipped: messages were lost, its assets are stale until the
  next birth), ``rebirth_request`` (an NCMD asking a node for its births, handed to the
  MQTT client);
* **commands**, the rebirth requests, kept until the daemon takes them to publish
  (:meth:`SparkplugInputs.take_commands`; while it is not connected they wait, at most
  ``MAX_COMMANDS``, the oldest dropped first).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

from aewatch.config import Config, InputConfig
from aewatch.core.counts import Counts
from aewatch.daemon.sparkplug import SparkplugDecoder, SparkplugOutcome, SparkplugTopic

__all__ = ["MAX_COMMANDS", "SPARKPLUG_EVENTS", "SparkplugEvents", "SparkplugInputs"]

SPARKPLUG_EVENTS = ("birth", "death", "seq_gap", "rebirth_request")


@dataclass(slots=True)
class SparkplugEvents(Counts):
    """Sparkplug B events since the start, by kind (:data:`SPARKPLUG_EVENTS`). One writer,
    paho's network thread."""

    birth: int = 0
    death: int = 0
    seq_gap: int = 0
    rebirth_request: int = 0


MAX_COMMANDS = 1_000  # rebirth requests waiting for a connection
_ASSETS_SHOWN = 10  # assets named in one log line; the rest counted

log = logging.getLogger("aewatch.sparkplug")


class SparkplugInputs:
    """The decoders of a configuration's ``sparkplug_b`` inputs, kept across reloads.

    :meth:`serve` (network thread) takes a configuration; :meth:`decoder` gives an input's
    decoder; :meth:`note` counts and logs one message's events and keeps its commands;
    :meth:`take_commands` (any thread) hands the commands over.

    >>> from aewatch.config import Config
    >>> config = Config.model_validate({"broker": {"url": "mqtt://localhost"},
    ...     "inputs": [{"payload": "sparkplug_b", "sparkplug": {"group": "north"}}],
    ...     "models": [{"path": "well.aew"}]})
    >>> inputs = SparkplugInputs()
    >>> inputs.serve(config)
    >>> inputs.decoder(config.inputs[0]).group
    'north'
    """

    def __init__(self) -> None:
        self.events = SparkplugEvents()
        self._decoders: list[tuple[InputConfig, SparkplugDecoder]] = []
        self._commands: deque[tuple[str, bytes]] = deque(maxlen=MAX_COMMANDS)
        self._lock = threading.Lock()  # commands are taken on another thread

    def serve(self, config: Config) -> None:
        """Decode the ``sparkplug_b`` inputs of ``config`` from now on.

        An input equal to one served so far keeps its decoder (its births and sequence
        numbers), with ``config``'s limits; any other gets a new one.
        """
        old = self._decoders
        limits = config.limits
        new: list[tuple[InputConfig, SparkplugDecoder]] = []
        for source in config.inputs:
            if source.sparkplug is None:
                continue
            decoder = next((d for s, d in old if s == source), None) or _decoder_for(source)
            decoder.max_bytes = limits.max_payload_bytes
            decoder.max_ahead_s = limits.max_ahead_s
            new.append((source, decoder))
        self._decoders = new

    def decoder(self, source: InputConfig) -> SparkplugDecoder:
        """The decoder of ``source``, one of the inputs served.

        Raises:
            KeyError: ``source`` is no ``sparkplug_b`` input of the configuration served.
        """
        for served, decoder in self._decoders:
            if served is source:
                return decoder
        raise KeyError(f"no sparkplug_b input served for {source.subscription}")

    def note(self, topic: SparkplugTopic, outcome: SparkplugOutcome, *, asset: str) -> None:
        """Count and log the births, deaths and sequence gaps of one message about
        ``asset``, and keep its commands for :meth:`take_commands`."""
        node = f"edge node {topic.node} (group {topic.group})"
        if outcome.born:
            self.events.birth += 1
            log.info("Sparkplug %s from %s: asset %s is read from now on", topic.kind, node, asset)
        if outcome.stale:
            stale = _named(outcome.stale)
            if topic.kind.endswith("DEATH"):
                self.events.death += 1
                log.info(
                    "Sparkplug %s from %s: %s stale until its next birth", topic.kind, node, stale
                )
            else:
                self.events.seq_gap += 1
                log.info(
                    "Sparkplug %s skipped a sequence number (at its %s): messages were lost; "
                    "%s stale until its next birth",
                    node,
                    topic.kind,
                    stale,
                )
        if outcome.commands:
            with self._lock:
                self._commands.extend(outcome.commands)

    def take_commands(self) -> list[tuple[str, bytes]]:
        """The commands waiting, oldest first, each counted and logged as handed over."""
        if not self._commands:  # the common case, without the lock
            return []
        with self._lock:
            commands = list(self._commands)
            self._commands.clear()
        for topic, _ in commands:
            self.events.rebirth_request += 1
            log.info("Sparkplug: asking for a rebirth on %s", topic)
        return commands


def _decoder_for(source: InputConfig) -> SparkplugDecoder:
    settings = source.sparkplug
    assert settings is not None  # only sparkplug_b inputs are served
    return SparkplugDecoder(
        group=None if settings.group == "+" else settings.group,
        asset_template=settings.device_asset,
        node_template=settings.node_asset,
        channels=settings.channels,
        use_payload_time=source.timestamp == "payload",
        ask_rebirth=settings.rebirth,
        rebirth_interval_s=settings.rebirth_interval_s,
    )


def _named(assets: tuple[str, ...]) -> str:
    """``assets`` for a log line: the first few by name, then how many more."""
    shown = ", ".join(assets[:_ASSETS_SHOWN])
    more = len(assets) - _ASSETS_SHOWN
    noun = "asset" if len(assets) == 1 else "assets"
    verb = "is" if len(assets) == 1 else "are"
    return f"{noun} {shown}{f' and {more} more' if more > 0 else ''} {verb}"
