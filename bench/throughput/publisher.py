"""A raw-socket MQTT 3.1.1 publisher for ``bench/throughput/run.py``: never the limit.

A Python paho publisher tops out near the rate the daemon is meant to reach, so this one
builds every packet by hand before the clock starts (CONNECT, then PUBLISH packets joined
into large buffers written with ``sendall``); QoS 1 packets carry ids and a reader thread
counts the PUBACKs, keeping at most ``WINDOW`` unacknowledged. It runs as its own process
so its CPU is not charged to anyone measured:

    python bench/throughput/publisher.py PLAN.json

It prints ``ready`` once connected with every packet built, waits for one line on stdin
(the go-ahead), sends, and prints one JSON line with what it did (monotonic seconds).

Plans (``mode``):

* ``flood``: ``rows`` grid rows per asset from slot ``first_slot`` on, slot-major (every
  asset's row for one slot, then the next slot), timestamps ``slot * period_s`` in the
  payload, as fast as the socket takes them.
* ``paced``: the same packets, spread evenly so that ``rate_per_s`` readings go out per
  second.
* ``live``: ``duration_s`` of rows at the sensors' pace (one row per asset per
  ``period_s``), each asset at its own phase in the period so the load is even; a row is
  encoded when it is sent, with the wall clock at that moment as its payload timestamp
  (which the daemon rounds to the nearest grid slot).
* ``float32``: ``float32_le`` messages of ``samples`` values per asset and channel,
  one per ``samples * period_s`` seconds, assets spread over that interval, for
  ``duration_s`` (no timestamps: the daemon stamps them on arrival); with ``ramp_s``,
  asset ``i`` of ``n`` starts sending ``ramp_s * i / n`` late (whole rounds), so the
  assets come online one after another; ``float32_flood`` sends the same packets as fast
  as it can.

Payload ``json`` is one reading per message on ``PREFIX/ASSET/CHANNEL``; ``json_multi`` is
one row per message, ``{"ts": ..., "values": {"ch0": ..., ...}}`` on ``PREFIX/ASSET``;
``sparkplug_b`` is one row per message as Ignition's MQTT Transmission sends it: a Sparkplug
B DDATA on ``spBv1.0/PREFIX/DDATA/NODE/ASSET`` (the group is the prefix, one edge node
``n00042`` per device ``a00042``) with every channel by alias, each with its timestamp and
data type (Double), ``seq`` counting on from the node's births at slot 0 (slot ``k``'s row
has ``seq`` ``k + 1``). With ``births`` an asset's first row goes as its node's NBIRTH and
its device's DBIRTH, which declares the aliases (``ch0`` is alias 1, ...).
"""

from __future__ import annotations

import json
import math
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aewatch.daemon.sparkplug_schema import Payload

__all__ = ["CHANNELS", "Plan", "asset_name", "signal_rows"]

CHANNELS = tuple(f"ch{i}" for i in range(8))
WINDOW = 20_000  # most QoS 1 packets in flight (unacknowledged) at once
_CHUNK = 2_000  # packets per sendall when the window or the pace needs checking
_TICK_S = 0.001
_SIGNAL_ROWS = 4096
_KEEPALIVE_S = 600
_SPARKPLUG_EPOCH_MS = 1_700_000_000_000  # slot 0's time: Sparkplug times are epoch ms > 0
_DOUBLE, _INT64 = 10, 4  # Sparkplug B's data types of a float64 and an int64


@dataclass(frozen=True)
class Plan:
    """What one publisher process sends (see the module docstring for the modes)."""

    port: int
    prefix: str
    mode: str
    payload: str = "json"
    qos: int = 0
    assets: int = 1000
    channels: tuple[str, ...] = CHANNELS
    period_s: float = 0.01
    first_slot: int = 0
    rows: int = 0
    rate_per_s: float | None = None
    duration_s: float = 0.0
    samples: int = 100
    ramp_s: float = 0.0  # float32: the assets come online one after another over this long
    births: bool = False  # sparkplug_b: NBIRTH and DBIRTH first (see the module docstring)
    host: str = "127.0.0.1"
    client_id: str = "bench-publisher"
    extra: dict[str, float] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write the plan as JSON for the publisher process."""
        fields = {**self.__dict__, "channels": list(self.channels)}
        path.write_text(json.dumps(fields))

    @classmethod
    def load(cls, path: Path) -> Plan:
        """Read a plan written by :meth:`save`."""
        fields = json.loads(path.read_text())
        return cls(**{**fields, "channels": tuple(fields["channels"])})


def asset_name(index: int) -> str:
    """The name of asset ``index`` in every plan (``a00042``)."""
    return f"a{index:05d}"


def signal_rows(rows: int, seed: int) -> npt.NDArray[np.float64]:
    """``(rows, 8)`` coupled channels: two slow factors mixed into eight, plus noise.

    The mixing is the same for every seed, so a model trained on one seed's rows finds
    another seed's rows normal.
    """
    rng = np.random.default_rng(seed)
    setpoint = np.cumsum(rng.standard_normal(rows) * 0.01)
    lagged = np.empty(rows)
    level, alpha = setpoint[0], 1.0 - 0.5 ** (1 / 30)
    for i, value in enumerate(setpoint):  # first-order lag, half-life 30 rows
        level += alpha * (value - level)
        lagged[i] = level
    mix = np.random.default_rng(12345).standard_normal((2, len(CHANNELS)))
    noise = 0.05 * rng.standard_normal((rows, len(CHANNELS)))
    result: npt.NDArray[np.float64] = np.column_stack([setpoint, lagged]) @ mix + noise
    return result


class Connection:
    """One MQTT 3.1.1 session over a plain socket; counts PUBACKs on a reader thread."""

    def __init__(self, plan: Plan) -> None:
        self.sock = socket.create_connection((plan.host, plan.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.sendall(_connect_packet(plan.client_id))
        connack = _read_exactly(self.sock, 4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"broker refused the connection: CONNACK {connack.hex()}")
        self.acked = 0
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def send(self, packets: list[bytes], *, qos: int) -> None:
        """Write ``packets``; with QoS 1, never more than ``WINDOW`` unacknowledged."""
        if qos == 0:
            self.sock.sendall(b"".join(packets))
            return
        for start in range(0, len(packets), _CHUNK):
            while start - self.acked > WINDOW:
                time.sleep(0.0005)
            self.sock.sendall(b"".join(packets[start : start + _CHUNK]))

    def wait_acks(self, count: int, timeout_s: float = 120.0) -> None:
        """Wait until ``count`` PUBACKs have come back."""
        deadline = time.monotonic() + timeout_s
        while self.acked < count and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> None:
        """Send DISCONNECT and close the socket (the broker reads what is buffered first)."""
        self.sock.sendall(b"\xe0\x00")
        self.sock.shutdown(socket.SHUT_WR)
        self._reader.join(10)  # the broker closes once it has read everything
        self.sock.close()

    def _read_acks(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            buffer = self._count_acks(buffer)

    def _count_acks(self, buffer: bytes) -> bytes:
        at = 0
        while len(buffer) - at >= 2:
            length, header = _decode_length(buffer, at + 1)
            if header is None or len(buffer) < header + length:
                break
            if buffer[at] >> 4 == 4:
                self.acked += 1
            at = header + length
        return buffer[at:]


def main(argv: list[str]) -> int:
    """Run the plan in ``argv[0]``; print ``ready``, wait for a line, send, print the result."""
    plan = Plan.load(Path(argv[0]))
    packets, offsets, readings = [], None, 0  # a live plan encodes as it sends
    if plan.mode != "live":
        packets, offsets, readings = _BUILDERS[plan.mode](plan)
    connection = Connection(plan)
    print("ready", flush=True)
    if not sys.stdin.readline():
        return 1
    if plan.mode == "live":
        result = _send_live(connection, plan)
    else:
        result = _send_planned(connection, plan, packets, offsets)
        result["readings"] = readings
    if plan.qos:
        connection.wait_acks(result["packets"])
    result["acked"] = connection.acked
    connection.close()
    result["closed_s"] = time.monotonic()
    print(json.dumps(result), flush=True)
    return 0


# -- plans -------------------------------------------------------------------------------


def _grid_packets(plan: Plan) -> tuple[list[bytes], npt.NDArray[np.float64] | None, int]:
    """Every row of every asset, slot-major; offsets when paced, else None (flood)."""
    values = signal_rows(_SIGNAL_ROWS, seed=1)
    encode = _sparkplug_packets(plan) if plan.payload == "sparkplug_b" else _row_packets(plan)
    packets: list[bytes] = []
    for slot in range(plan.first_slot, plan.first_slot + plan.rows):
        ts = f"{slot * plan.period_s:.6f}"
        for asset in range(plan.assets):
            row = values[(slot + 97 * asset) % _SIGNAL_ROWS]
            packets.extend(encode(asset, ts, row))
    readings = plan.rows * plan.assets * len(plan.channels)
    offsets = None
    if plan.mode == "paced":
        if not plan.rate_per_s:
            raise ValueError("a paced plan needs rate_per_s")
        per_packet = readings / len(packets)
        offsets = np.arange(len(packets)) * (per_packet / plan.rate_per_s)
    return packets, offsets, readings


def _float32_packets(plan: Plan) -> tuple[list[bytes], npt.NDArray[np.float64], int]:
    """``float32_le`` messages of every asset and channel, one round per message span."""
    span_s = plan.samples * plan.period_s
    rounds = max(1, math.ceil(plan.duration_s / span_s))
    values = signal_rows(_SIGNAL_ROWS, seed=2).astype("<f4")
    packets: list[bytes] = []
    offsets: list[float] = []
    ramp_rounds = plan.ramp_s / span_s
    for round_ in range(rounds):
        for asset in range(plan.assets):
            if round_ < int(ramp_rounds * asset / plan.assets):
                continue  # not online yet
            start = (97 * asset + round_ * plan.samples) % (_SIGNAL_ROWS - plan.samples)
            block = values[start : start + plan.samples]
            at = round_ * span_s + span_s * asset / plan.assets
            name = asset_name(asset)
            for column, channel in enumerate(plan.channels):
                topic = f"{plan.prefix}/{name}/{channel}"
                payload = np.ascontiguousarray(block[:, column]).tobytes()
                packets.append(_publish_packet(topic, payload, qos=0, packet_id=0))
                offsets.append(at)
    readings = len(packets) * plan.samples
    return packets, np.asarray(offsets), readings


def _float32_flood(plan: Plan) -> tuple[list[bytes], None, int]:
    """The ``float32`` packets all at once (for subscribers that take no timestamps)."""
    packets, _, readings = _float32_packets(plan)
    return packets, None, readings


_BUILDERS = {
    "flood": _grid_packets,
    "paced": _grid_packets,
    "float32": _float32_packets,
    "float32_flood": _float32_flood,
}


def _row_packets(plan: Plan):  # type: ignore[no-untyped-def]
    """A function encoding one asset's row at ``ts`` (text) into its packets."""
    counter = iter(range(1 << 62))

    def packet(topic: str, payload: str) -> bytes:
        packet_id = next(counter) % 65535 + 1
        return _publish_packet(topic, payload.encode(), qos=plan.qos, packet_id=packet_id)

    def single(asset: int, ts: str, row: npt.NDArray[np.float64]) -> list[bytes]:
        name = asset_name(asset)
        return [
            packet(f"{plan.prefix}/{name}/{channel}", f'{{"ts":{ts},"value":{value:.4f}}}')
            for channel, value in zip(plan.channels, row.tolist(), strict=True)
        ]

    def multi(asset: int, ts: str, row: npt.NDArray[np.float64]) -> list[bytes]:
        values = ",".join(
            f'"{channel}":{value:.4f}'
            for channel, value in zip(plan.channels, row.tolist(), strict=True)
        )
        payload = f'{{"ts":{ts},"values":{{{values}}}}}'
        return [packet(f"{plan.prefix}/{asset_name(asset)}", payload)]

    return multi if plan.payload == "json_multi" else single


def _sparkplug_packets(plan: Plan):  # type: ignore[no-untyped-def]
    """A function encoding one asset's row at ``ts`` (text) into its Sparkplug B DDATA; in
    a plan with births, an asset's first row goes as its node's NBIRTH and its DBIRTH."""
    counter = iter(range(1 << 62))
    born: set[int] = set()

    def packet(topic: str, message: Any) -> bytes:
        packet_id = next(counter) % 65535 + 1
        return _publish_packet(
            topic, message.SerializeToString(), qos=plan.qos, packet_id=packet_id
        )

    def encode(asset: int, ts: str, row: npt.NDArray[np.float64]) -> list[bytes]:
        slot = round(float(ts) / plan.period_s)
        stamp_ms = _SPARKPLUG_EPOCH_MS + round(float(ts) * 1000)
        node, device = _node(asset), asset_name(asset)
        is_birth = plan.births and asset not in born
        message = Payload(timestamp=stamp_ms, seq=(1 + slot) % 256)
        for alias, (channel, value) in enumerate(zip(plan.channels, row.tolist(), strict=True), 1):
            metric = message.metrics.add(
                alias=alias, timestamp=stamp_ms, datatype=_DOUBLE, double_value=value
            )
            if is_birth:
                metric.name = channel
        if not is_birth:
            return [packet(f"spBv1.0/{plan.prefix}/DDATA/{node}/{device}", message)]
        born.add(asset)
        birth = Payload(timestamp=stamp_ms, seq=slot % 256)  # the DBIRTH's seq follows
        birth.metrics.add(name="bdSeq", datatype=_INT64, long_value=0)
        return [
            packet(f"spBv1.0/{plan.prefix}/NBIRTH/{node}", birth),
            packet(f"spBv1.0/{plan.prefix}/DBIRTH/{node}/{device}", message),
        ]

    return encode


def _node(asset: int) -> str:
    """The Sparkplug edge node of asset ``index`` (``n00042``): one device each."""
    return f"n{asset:05d}"


# -- sending -----------------------------------------------------------------------------


def _send_planned(
    connection: Connection,
    plan: Plan,
    packets: list[bytes],
    offsets: npt.NDArray[np.float64] | None,
) -> dict[str, float]:
    """Send ``packets`` at once (no offsets) or each at its offset from the start."""
    first_s = time.monotonic()
    behind_s = 0.0
    if offsets is None:
        connection.send(packets, qos=plan.qos)
    else:
        sent = 0
        while sent < len(packets):
            elapsed = time.monotonic() - first_s
            due = int(np.searchsorted(offsets, elapsed, side="right"))
            if due > sent:
                behind_s = max(behind_s, elapsed - float(offsets[due - 1]))
                connection.send(packets[sent:due], qos=plan.qos)
                sent = due
            else:
                time.sleep(min(_TICK_S, float(offsets[sent]) - elapsed))
    return {
        "first_s": first_s,
        "last_s": time.monotonic(),
        "packets": len(packets),
        "behind_s": behind_s,
    }


def _send_live(connection: Connection, plan: Plan) -> dict[str, float]:
    """Rows at the sensors' pace, each stamped with the wall clock when it is sent."""
    values = signal_rows(_SIGNAL_ROWS, seed=3)
    encode = _row_packets(plan)
    period = plan.period_s
    first_slot = math.ceil(time.time() / period) + 20
    slots = max(1, round(plan.duration_s / period))
    # Each asset at its own phase in [-P/2, P/4) of its slot, so its wall-clock timestamps
    # round to that slot with P/4 to spare for a late send.
    phases = ((np.arange(plan.assets) + 0.5) / plan.assets * 0.75 - 0.5) * period
    due_at = (first_slot + np.arange(slots))[:, None] * period + phases[None, :]
    order = np.argsort(due_at, axis=None, kind="stable")
    times = due_at.reshape(-1)[order]
    slot_of, asset_of = np.divmod(order, plan.assets)
    first_s, sent, packets, behind_s = time.monotonic(), 0, 0, 0.0
    while sent < len(times):
        now = time.time()
        due = int(np.searchsorted(times, now, side="right"))
        if due == sent:
            time.sleep(min(_TICK_S, float(times[sent]) - now))
            continue
        behind_s = max(behind_s, now - float(times[due - 1]))
        ts = f"{now:.6f}"
        batch: list[bytes] = []
        for row_index in range(sent, due):
            slot, asset = int(slot_of[row_index]), int(asset_of[row_index])
            batch.extend(encode(asset, ts, values[(slot + 97 * asset) % _SIGNAL_ROWS]))
        connection.send(batch, qos=plan.qos)
        packets += len(batch)
        sent = due
    per_packet = 1 if plan.payload == "json" else len(plan.channels)
    return {
        "first_s": first_s,
        "last_s": time.monotonic(),
        "packets": packets,
        "readings": packets * per_packet,
        "behind_s": behind_s,
    }


# -- MQTT 3.1.1 packets ------------------------------------------------------------------


def _connect_packet(client_id: str) -> bytes:
    """CONNECT with a clean session, no will, no credentials."""
    identifier = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02" + _KEEPALIVE_S.to_bytes(2, "big")
    payload = len(identifier).to_bytes(2, "big") + identifier
    return b"\x10" + _encode_length(len(variable) + len(payload)) + variable + payload


def _publish_packet(topic: str, payload: bytes, *, qos: int, packet_id: int) -> bytes:
    """PUBLISH of ``payload`` on ``topic``; QoS 1 carries ``packet_id``."""
    name = topic.encode()
    head = len(name).to_bytes(2, "big") + name
    if qos:
        head += packet_id.to_bytes(2, "big")
    flags = 0x30 | (qos << 1)
    return bytes((flags,)) + _encode_length(len(head) + len(payload)) + head + payload


def _encode_length(length: int) -> bytes:
    """MQTT's variable-length 'remaining length'."""
    out = bytearray()
    while True:
        length, digit = divmod(length, 128)
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _decode_length(buffer: bytes, at: int) -> tuple[int, int | None]:
    """(remaining length, index after it) at ``buffer[at:]``; None when incomplete."""
    length, shift = 0, 0
    for index in range(at, min(at + 4, len(buffer))):
        length |= (buffer[index] & 0x7F) << shift
        if not buffer[index] & 0x80:
            return length, index + 1
        shift += 7
    return 0, None


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise RuntimeError("the broker closed the connection during CONNECT")
        data += chunk
    return data


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
