"""``aewatch replay``: publish a CSV/Parquet file to MQTT as the daemon's input (shell).

Each row becomes either one message per channel (``--per channel``: ``{"ts": .., "value": ..}``
on the topic with ``{channel}`` filled in) or one message per row (``--per row``:
``{"ts": .., "values": {channel: value, ...}}``). ``--speed X`` replays X times faster than
the file's own clock; 0 publishes as fast as the broker takes it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from aewatch.commands import parse_channels
from aewatch.commands.read_options import add_read_options, read_options
from aewatch.errors import AewatchError
from aewatch.model.dataset import Table, read_export

__all__ = ["broker_address", "publish_table", "register"]

_DEFAULT_TEMPLATE = "aewatch/in/{asset}/{channel}"
_MAX_UNACKED = 10_000


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``replay`` verb."""
    p = sub.add_parser(
        "replay",
        help="publish a file to MQTT as live readings",
        description="Publish a CSV/Parquet export to an MQTT broker as the daemon's input. "
        "The password, if any, comes from $AEWATCH_MQTT_PASSWORD, never the command line.",
    )
    p.add_argument("file", type=Path)
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://HOST:PORT")
    p.add_argument(
        "--topic-template",
        default=_DEFAULT_TEMPLATE,
        help="with {asset} and, for --per channel, {channel} (default %(default)s)",
    )
    p.add_argument(
        "--asset",
        help="asset name (default: the file's stem); with --asset-column, also the asset "
        "whose rows are replayed",
    )
    p.add_argument("--per", choices=("channel", "row"), default="channel")
    p.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="times faster than real time; 0 = as fast as possible (default)",
    )
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    p.add_argument("--username")
    p.add_argument("--client-id", default="")
    p.add_argument(
        "--channels",
        help="comma-separated channel columns, or a long table's tags, to publish (default: "
        "every numeric column, every tag)",
    )
    add_read_options(p, asset_option=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the file and publish it; print what was read and how many messages went out."""
    export = read_export(
        args.file, channels=parse_channels(args.channels), options=read_options(args)
    )
    print("\n".join(export.summary.lines()), flush=True)
    table = export.table
    asset = args.asset or args.file.stem
    host, port = broker_address(args.broker)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=args.client_id, protocol=mqtt.MQTTv5
    )
    if args.username:
        client.username_pw_set(args.username, os.environ.get("AEWATCH_MQTT_PASSWORD"))
    try:
        client.connect(host, port, keepalive=30)
    except OSError as err:
        raise AewatchError(
            f"cannot reach MQTT broker {args.broker} ({err}); check the "
            "address and that the broker runs"
        ) from err
    client.loop_start()
    try:
        sent = publish_table(
            client,
            table,
            asset=asset,
            template=args.topic_template,
            per=args.per,
            speed=args.speed,
            qos=args.qos,
        )
    finally:
        client.disconnect()
        client.loop_stop()
    print(f"published {sent} messages ({len(table.timestamps)} rows of {asset}) to {args.broker}")
    return 0


def publish_table(
    client: mqtt.Client,
    table: Table,
    *,
    asset: str,
    template: str,
    per: str,
    speed: float,
    qos: int,
) -> int:
    """Publish every row of ``table``; return the number of messages.

    Waits for the broker to acknowledge the last message (QoS ≥ 1) before returning.
    """
    if "{asset}" not in template or (per == "channel" and "{channel}" not in template):
        raise AewatchError(
            f"--topic-template {template!r} needs {{asset}}"
            + (" and {channel}" if per == "channel" else "")
        )
    started = time.monotonic()
    # paho numbers in-flight messages 1..65535: wait for old ones before reusing an id.
    unacked: deque[mqtt.MQTTMessageInfo] = deque()
    sent = 0
    for ts, row in zip(table.timestamps, table.values, strict=True):
        if speed > 0:
            due = started + (ts - table.timestamps[0]) / speed
            time.sleep(max(0.0, due - time.monotonic()))
        ts_value = round(float(ts), 6)
        if per == "row":
            values = dict(zip(table.channels, map(float, row), strict=True))
            payload = json.dumps({"ts": ts_value, "values": values})
            _track(unacked, client.publish(template.format(asset=asset), payload, qos=qos), qos)
            sent += 1
            continue
        for channel, value in zip(table.channels, row, strict=True):
            payload = json.dumps({"ts": ts_value, "value": float(value)})
            topic = template.format(asset=asset, channel=channel)
            _track(unacked, client.publish(topic, payload, qos=qos), qos)
            sent += 1
    for info in unacked:
        info.wait_for_publish(timeout=30)
    return sent


def _track(unacked: deque[mqtt.MQTTMessageInfo], info: mqtt.MQTTMessageInfo, qos: int) -> None:
    """Remember a QoS ≥ 1 publish; once too many are unacknowledged, wait for the oldest."""
    if qos == 0:
        return
    unacked.append(info)
    while len(unacked) > _MAX_UNACKED:
        unacked.popleft().wait_for_publish(timeout=30)


def broker_address(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` → ``(host, port)``; 1883 when the port is left out."""
    parsed = urlparse(url)
    if parsed.scheme != "mqtt" or not parsed.hostname:
        raise AewatchError(
            f"--broker {url!r} is not an mqtt://HOST:PORT address (TLS replay is not supported yet)"
        )
    return parsed.hostname, parsed.port or 1883
