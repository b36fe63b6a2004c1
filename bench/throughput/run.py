"""Readings per second, latency, CPU and memory of ``aewatch run`` through a real mosquitto.

    .venv/bin/python bench/throughput/run.py            # full run, 8-10 minutes on a quiet machine
    .venv/bin/python bench/throughput/run.py --quick    # smoke run, 2-3 minutes

Everything runs side by side in one run, on one private mosquitto per case (loopback, no
queue limits, so the broker never drops for a slow subscriber), each contender in its own
process so that its CPU (``utime + stime``) and memory (``VmRSS``/``VmHWM``) are its own:

* **aewatch**: ``python -m aewatch run --config FILE`` with a model trained here (PCA,
  8 channels, window 10, hop 1, 10 ms period), metrics, alignment and alerts on; its
  counts come from its ``/metrics`` endpoint, polled every ``POLL_S``.
* **paho no-op**, **paho + json.loads** and the **naive daemon** (``json.loads`` per
  message, a deque per asset, one forward pass per window): ``consumers.py``.

The publisher (``publisher.py``) is a raw-socket MQTT 3.1.1 client with every
packet built before the clock starts. A rate is readings over the time from the
publisher's first byte to the consumer's last reading (for aewatch: the moment its
``readings_aligned`` count reached the total, interpolated between polls).

Cases (``--cases``):

a. ``single_qos0``, ``single_qos1``: one reading per JSON message
   (``PREFIX/ASSET/CHANNEL``, ``{"ts": ..., "value": ...}``), 1 000 assets × 8 channels,
   flooded after a warm-up that fills every window. "Sustained with zero drops": in a
   repeat where aewatch drops readings (its reading queue overflows), the publisher is
   paced instead, at falling fractions of the flood's processing rate, until none drops;
b. ``multi``: one ``json_multi`` message per asset row (8 channels), the same way;
   ``sparkplug``: one Sparkplug B DDATA per asset row (8 Double metrics by alias, as
   Ignition sends them), the same way, beside paho no-op and paho + protobuf parsing
   (the warm-up sends each node's births first);
c. ``float32``: ``float32_le`` messages of 100 samples, stamped on arrival, so they cannot
   be flooded: paced at the target first, then lower, each try on a fresh daemon measured
   after a warm-up of ``FLOAT32_WARMUP_S`` in which the assets come online one after
   another over ``FLOAT32_RAMP_S``, until aewatch keeps up with no queue drop, then
   ``FLOAT32_HALVINGS`` tries above it (1.1× while kept up, else halfway to the lowest rate
   it did not keep up with) (readings dropped as late because of arrival-time
   jitter are counted and shown, not held against it). Where that search starts depends
   on how much the overloaded first try processed, so two runs of the same code can
   report rates a fifth apart; to compare two versions, ``--float32-at RATE ...`` tries
   the given rates instead, each ``--repeats`` times, and the lines show each try kept
   up or not and its CPU per sample;
d. ``latency``: at half the sustained rate of (a), QoS 0, rows at the sensors' pace,
   every asset at its own phase in the 10 ms period, payload time = wall clock at send;
   p50/p99 interpolated in aewatch's ``aewatch_decision_latency_seconds`` buckets (and
   the exact share at most 50 ms), the naive daemon's measured exactly;
e. ``memory``: RSS with 1 000 and 10 000 assets × 8 channels once every asset has filled
   a window (``VmRSS`` now, ``VmHWM`` the peak).

Each measurement runs ``--repeats`` times (default 3); tables show medians. Before it
starts, the run waits (up to ``--wait-load`` s) for the 1-minute load average to drop
below ``--max-load``, and prints the load at start and end. With ``--profile`` (on in the
full run) it records aewatch with py-spy during one extra flood of case (a) and prints
the top frames per thread. Output: Markdown tables on stdout, every run as JSON in
``--out`` (default ``bench/out/throughput``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from contenders import (
    PYTHON,
    Broker,
    Contender,
    Daemon,
    Publisher,
    Script,
    messages_in,
    stop_process,
)
from publisher import CHANNELS, Plan, signal_rows
from report import TARGETS, Run, histogram_summary, report, sustained, top_frames

from aewatch.model.dataset import Table
from aewatch.model.fit import FitSettings
from aewatch.model.train import TrainSettings, train_bundle

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
PERIOD_S = 0.01  # the model's sample period
WARM_ROWS = 18  # rows that fill every window: first-row wait (5) + window (10) + margin
NAIVE_ROWS = 11  # the same for the naive daemon: window (10) + 1
LADDER = (0.95, 0.85, 0.7, 0.5)  # fractions of the flood's processing rate to pace at
PACE_CLIMB, PACE_PROBES = 1.1, 3  # then up by this factor while kept up, this many tries
FLOAT32_HALVINGS = 3  # tries above the best rate kept up (1.1x, or halfway to a failure)
FLOAT32_WARMUP_S = 4.0  # sent before a float32 try's measured part: start-up, warm-up
FLOAT32_RAMP_S = 2.0  # in the warm-up, the assets come online one after another over this


@dataclass(frozen=True)
class Sizes:
    """How much each case sends; the quick run sends less."""

    repeats: int
    assets: int
    single_rows: int  # rows per asset per run, one message per reading
    qos1_rows: int
    multi_rows: int  # 90 in the full run: a paced run of ~2.5 s, so its end (the daemon's
    # last batch after the last send) weighs on the rate a third of what it did at 30 rows
    float32_s: float
    latency_s: float
    memory_assets: tuple[int, ...]


FULL = Sizes(3, 1000, 20, 15, 90, 5.0, 6.0, (1000, 10_000))
QUICK = Sizes(1, 1000, 6, 5, 20, 3.0, 4.0, (1000, 2000))


class Bench:
    """One bench run: sizes, the model, the output folder, and every run measured."""

    def __init__(self, out: Path, sizes: Sizes, *, bundle: Path, protocol: str) -> None:
        self.out = out
        self.sizes = sizes
        self.bundle = bundle
        self.protocol = protocol  # MQTT version of aewatch and the paho clients
        self.runs: list[Run] = []
        self.notes: list[str] = []
        self.profile: dict[str, Any] = {}
        self.broker_port = 0  # the broker of the case running now
        self._plans = 0

    def plan(self, contender: Contender | None, **fields: Any) -> Plan:
        """A plan aimed at ``contender`` (or at ``prefix``) with a fresh client id."""
        self._plans += 1
        if contender is not None:
            fields.setdefault("prefix", contender.prefix)
        return Plan(client_id=f"pub-{self._plans}", port=self.broker_port, **fields)

    def next_rows(self, contender: Contender, rows: int, **fields: Any) -> Plan:
        """A plan of the next ``rows`` grid rows of every asset for ``contender``.

        Each plan starts where the contender's last one ended, so its windows stay warm.
        """
        plan = self.plan(
            contender,
            assets=self.sizes.assets,
            first_slot=contender.next_slot,
            rows=rows,
            **fields,
        )
        contender.next_slot += rows
        return plan

    def measure(
        self,
        contender: Contender,
        plan: Plan,
        *,
        case: str,
        repeat: int,
        per_message: int = 1,
        after_go: Callable[[], None] | None = None,
    ) -> Run:
        """Send ``plan`` to ``contender`` and measure what it did with it.

        ``after_go`` runs on its own thread once the publisher has been told to start.
        """
        publisher = Publisher(plan, self.out)
        before = contender.totals()
        cpu0, _, _ = contender.usage()
        publisher.go()
        helper = threading.Thread(target=after_go) if after_go else None
        if helper:
            helper.start()
        messages = messages_in(plan)
        end_s, after, _ = contender.finish(before, messages, publisher)
        sent = publisher.wait()
        if helper:
            helper.join()
        cpu1, rss, hwm = contender.usage()
        readings = int(after.get("aligned", after["messages"] * per_message))
        missing = max(0, messages - int(after["messages"]))
        drops = int(after.get("drops", 0)) + missing
        run = Run(
            case=case,
            contender=contender.name,
            repeat=repeat,
            readings=readings,
            messages=int(after["messages"]),
            seconds=end_s - sent["first_s"],
            drops=drops,
            cpu_s=cpu1 - cpu0,
            rss_mb=rss,
            hwm_mb=hwm,
            offered_per_s=plan.rate_per_s,
            extra={
                "sent_readings": sent.get("readings"),
                "publish_s": sent["last_s"] - sent["first_s"],
                "lag_s": end_s - sent["last_s"],
                "first_s": sent["first_s"],
                "behind_s": sent.get("behind_s", 0.0),
                "aborted": sent.get("aborted", False),
            },
        )
        if "windows" in after:
            run.extra["windows"] = int(after["windows"])
        if isinstance(contender, Daemon):
            run.extra.update(
                {k: int(after[k]) for k in ("filled", "slots_dropped", "received", "alerts")}
            )
            run.extra["drop_reasons"] = {
                k: int(v) for k, v in after.items() if k.startswith("drop:") and v
            }
        if after.get("latency"):
            run.extra["latency"] = after["latency"]
        return run

    def record(self, run: Run) -> Run:
        """Keep ``run`` and print a one-line summary of it."""
        self.runs.append(run)
        paced = f" paced at {run.offered_per_s:,.0f}/s" if run.offered_per_s else ""
        print(
            f"  {run.case:<12} {run.contender:<18} #{run.repeat} {run.rate:>11,.0f} readings/s"
            f" ({run.readings:,} in {run.seconds:.2f} s{paced}) drops {run.drops:,}"
            f" cpu {run.cpu_us:.1f} µs/reading rss {run.rss_mb:.0f} MB"
            f"{'' if run.is_kept_up else '  NOT KEPT UP'}",
            flush=True,
        )
        return run


def flood_case(
    bench: Bench, *, case: str, payload: str, qos: int, rows: int, kinds: tuple[str, ...]
) -> None:
    """Flood every contender in turn, ``repeats`` times; pace aewatch if it drops."""
    sizes = bench.sizes
    per_message = 1 if payload == "json" else len(CHANNELS)
    with _contenders(bench, case=case, payload=payload, qos=qos, kinds=kinds) as contenders:
        _warm_up(bench, contenders, qos=qos, payload=payload)
        floods: list[Run] = []
        for repeat in range(sizes.repeats):
            for contender in _rotated(contenders, repeat):
                plan = bench.next_rows(contender, rows, mode="flood", payload=payload, qos=qos)
                run = bench.measure(
                    contender, plan, case=case, repeat=repeat, per_message=per_message
                )
                run.is_kept_up = run.drops == 0
                bench.record(run)
                if contender.name == "aewatch":
                    floods.append(run)
            if case == "single_qos0":
                bench.record(_mosquitto_sub_run(bench, rows=rows, repeat=repeat))
        daemon = contenders[0]
        for run in floods:
            if run.drops:
                _pace_until_kept_up(
                    bench, daemon, run, case=case, payload=payload, qos=qos, rows=rows
                )
        if bench.profile.get("wanted") and case == "single_qos0":
            _profile(bench, daemon, rows=rows, payload=payload, qos=qos, flood=floods)


def _mosquitto_sub_run(bench: Bench, *, rows: int, repeat: int) -> Run:
    """A flood to ``mosquitto_sub -C N`` (output discarded): the machine's speed today,
    next to the reference figure the issue gives for it."""
    binary = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
    plan = bench.plan(
        None, prefix="sub", mode="flood", assets=bench.sizes.assets, first_slot=0, rows=rows
    )
    messages = messages_in(plan)
    command = [binary, "-h", "127.0.0.1", "-p", str(bench.broker_port), "-t", "sub/#"]
    command += ["-C", str(messages), "-i", f"bench-sub-{repeat}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # mosquitto_sub says nothing once subscribed
    publisher = Publisher(plan, bench.out)
    publisher.go()
    deadline = time.monotonic() + 120
    pid, usage = 0, None
    while not pid and time.monotonic() < deadline:
        time.sleep(0.005)
        pid, _, usage = os.wait4(process.pid, os.WNOHANG)
    end_s = time.monotonic()
    process.returncode = 0 if pid else None
    if not pid:
        stop_process(process)
    sent = publisher.wait()
    return Run(
        case="single_qos0",
        contender="mosquitto_sub",
        repeat=repeat,
        readings=messages if pid else 0,
        messages=messages if pid else 0,
        seconds=end_s - sent["first_s"],
        drops=0 if pid else messages,
        cpu_s=(usage.ru_utime + usage.ru_stime) if pid and usage else 0.0,
        rss_mb=0.0,  # not measured: its ru_maxrss counts this process's pages before exec
        hwm_mb=0.0,
    )


def _pace_until_kept_up(
    bench: Bench,
    daemon: Contender,
    flood: Run,
    *,
    case: str,
    payload: str,
    qos: int,
    rows: int,
) -> None:
    """For a repeat whose flood dropped readings: pace at falling fractions of the rate
    aewatch processed in that flood until it drops none and keeps up; then climb.

    A flood that overflows the reading queue understates the rate: dropped rows leave holes
    that cost the worker more than whole rows. So from the first rate kept up the pace
    rises by ``PACE_CLIMB`` while aewatch keeps up, then halves the interval to the first
    rate it did not, ``PACE_PROBES`` tries in all."""
    processed = flood.extra["received"] / flood.seconds
    bench.notes.append(
        f"{case} repeat {flood.repeat}: aewatch dropped {flood.drops:,} readings in the flood "
        f"({flood.extra['drop_reasons']}); paced at {LADDER} × its flood processing rate "
        f"({processed:,.0f} readings/s) until it dropped none, then up by {PACE_CLIMB}× "
        f"and halving, {PACE_PROBES} tries"
    )

    def paced(rate: float) -> bool:
        plan = bench.next_rows(
            daemon, rows, mode="paced", payload=payload, qos=qos, rate_per_s=rate
        )
        run = bench.measure(daemon, plan, case=f"{case}_paced", repeat=flood.repeat)
        run.is_kept_up = run.drops == 0 and _is_on_time(run)
        bench.record(run)
        return run.is_kept_up

    kept = next((f * processed for f in LADDER if paced(f * processed)), 0.0)
    failed = math.inf
    for _ in range(PACE_PROBES if kept else 0):
        rate = kept * PACE_CLIMB if failed == math.inf else (kept + failed) / 2
        if rate > 0.97 * failed:
            break
        if paced(rate):
            kept = rate
        else:
            failed = rate


def _is_on_time(run: Run) -> bool:
    """Whether a paced run's consumer finished soon after the last send (it kept pace)."""
    return run.extra["lag_s"] < max(0.5, 0.1 * run.extra["publish_s"])


def float32_case(bench: Bench, at: Sequence[float] = ()) -> None:
    """Pace float32_le messages at the target, then lower until aewatch keeps up (or, with
    ``at``, at each of those rates in samples/s, no search).

    Each attempt gets a fresh broker and daemon: a paced run it cannot keep up with is
    given up early, and what it left queued must not spill into the next. Readings dropped
    as late are counted but allowed: with arrival times, a message whose intake was
    delayed by more than half a period overlaps the next one of its channel.
    """
    sizes = bench.sizes
    with _contenders(bench, case="float32", payload="float32_le", qos=0, kinds=("noop",)) as (
        noop,
    ):
        for repeat in range(sizes.repeats):
            plan = bench.plan(
                noop, mode="float32_flood", payload="float32_le", assets=500, duration_s=2.0
            )
            bench.record(bench.measure(noop, plan, case="float32", repeat=repeat, per_message=100))
    if at:  # fixed rates, each repeat in turn: comparable between versions
        for repeat in range(sizes.repeats):
            for fixed in at:
                _float32_attempt(bench, fixed, repeat=repeat)
        return
    for repeat in range(sizes.repeats):
        rate = float(TARGETS["float32_samples_per_s"])
        kept, failed, falls, halvings = 0.0, math.inf, 0, 0
        while True:
            run = _float32_attempt(bench, rate, repeat=repeat)
            if run.is_kept_up:
                kept = max(kept, run.offered_per_s or 0.0)
            else:
                failed = min(failed, run.offered_per_s or math.inf)
            if kept:  # then up while kept up, or between it and the lowest failed rate
                if halvings < FLOAT32_HALVINGS and failed > 1.1 * kept:
                    rate = kept * PACE_CLIMB if failed == math.inf else (kept + failed) / 2
                    halvings += 1
                    continue
                break
            if falls == len(LADDER):
                break
            # An overloaded daemon processes less than it can keep up with: step down from it.
            rate = min(rate, run.rate) * LADDER[falls]
            falls += 1


def _float32_attempt(bench: Bench, rate: float, *, repeat: int) -> Run:
    """One paced float32 run at about ``rate`` samples/s against a fresh daemon.

    The publisher sends ``FLOAT32_WARMUP_S`` more than the measured time, and in it the
    assets come online one after another over ``FLOAT32_RAMP_S``: an asset's first rounds
    are its start-up (its first row waits ``max_late_s`` for earlier samples) and cost
    about twice a steady round, so all assets starting in the same second would measure a
    cold start, not a sustained rate. The rate, the CPU and the readings are those after
    the warm-up, with every asset online and past its start-up; drops count over the whole
    try.
    """
    per_asset = len(CHANNELS) / PERIOD_S  # samples a second one asset sends
    assets = max(1, round(rate / per_asset))
    with _contenders(
        bench, case="float32", payload="float32_le", qos=0, kinds=("aewatch",)
    ) as contenders:
        (daemon,) = contenders
        plan = bench.plan(
            daemon,
            mode="float32",
            payload="float32_le",
            assets=assets,
            duration_s=FLOAT32_WARMUP_S + bench.sizes.float32_s,
            ramp_s=FLOAT32_RAMP_S,
        )
        start, start_cpu = daemon.totals(), daemon.usage()[0]
        warm: dict[str, Any] = {}

        def take_warm() -> None:
            time.sleep(FLOAT32_WARMUP_S)
            warm.update(at=time.monotonic(), totals=daemon.totals(), cpu_s=daemon.usage()[0])

        run = bench.measure(daemon, plan, case="float32", repeat=repeat, after_go=take_warm)
    end_s = run.extra["first_s"] + run.seconds
    if warm and warm["at"] < end_s - 0.5:  # else it fell behind and was given up in the warm-up
        run.readings -= int(warm["totals"].get("aligned", 0) - start.get("aligned", 0))
        run.seconds = end_s - warm["at"]
        run.cpu_s -= warm["cpu_s"] - start_cpu
        run.extra["warmup_s"] = FLOAT32_WARMUP_S
    reasons = run.extra["drop_reasons"]
    late = reasons.get("drop:late", 0)
    run.offered_per_s = assets * per_asset
    run.extra["late"] = late
    run.is_kept_up = run.drops == late and not run.extra["aborted"] and _is_on_time(run)
    return bench.record(run)


def latency_case(bench: Bench, load: float | None) -> None:
    """Rows at the sensors' pace: ``load`` readings/s, or half the sustained rate of (a)."""
    single = sustained(bench.runs, "single_qos0")
    if load is None and not single:
        bench.notes.append("latency: no sustained rate from case single_qos0; skipped")
        return
    load = load or single / 2
    assets = max(1, round(load * PERIOD_S / len(CHANNELS)))
    bench.notes.append(
        f"latency: {load:,.0f} readings/s (single_qos0 sustained {single or 0:,.0f}) = "
        f"{assets} assets × 8 channels at {1 / PERIOD_S:.0f} Hz "
        f"({assets * len(CHANNELS) / PERIOD_S:,.0f} readings/s)"
    )
    with _contenders(
        bench, case="latency", payload="json", qos=0, kinds=("aewatch", "naive")
    ) as contenders:
        for repeat in range(bench.sizes.repeats):
            for contender in _rotated(contenders, repeat):
                plan = bench.plan(
                    contender,
                    mode="live",
                    payload="json",
                    assets=assets,
                    duration_s=bench.sizes.latency_s,
                )
                run = _measure_latency(bench, contender, plan, repeat=repeat)
                bench.record(run)
                time.sleep(0.5)


def _measure_latency(bench: Bench, contender: Contender, plan: Plan, *, repeat: int) -> Run:
    """Like ``Bench.measure``, with aewatch's latency histogram taken after the first second."""
    if not isinstance(contender, Daemon):
        run = bench.measure(contender, plan, case="latency", repeat=repeat)
        run.offered_per_s = plan.assets * len(CHANNELS) / PERIOD_S
        return run
    result: dict[str, Any] = {}

    def take_base() -> None:
        time.sleep(1.0 + 20 * PERIOD_S)  # sending starts 20 periods after the go-ahead
        result["base"] = contender.latency()

    run = bench.measure(contender, plan, case="latency", repeat=repeat, after_go=take_base)
    buckets = {k: v - result["base"].get(k, 0.0) for k, v in contender.latency().items()}
    run.offered_per_s = plan.assets * len(CHANNELS) / PERIOD_S
    run.extra["latency"] = histogram_summary(buckets)
    run.extra["latency_buckets"] = buckets  # cumulative counts by upper bound (seconds)
    return run


def memory_case(bench: Bench) -> None:
    """RSS of aewatch and the naive daemon once every one of N assets filled a window.

    aewatch gets ``WARM_ROWS`` rows per asset (its first row waits for later ones); the
    naive daemon one window and a row, as it scores as soon as a window is full. The rows
    go one slot at a time (every asset's row, then wait), so that at 10 000 assets a slot's
    80 000 readings fit aewatch's reading queue and none is dropped.
    """
    for assets in bench.sizes.memory_assets:
        case = f"memory_{assets}"
        with _contenders(
            bench, case=case, payload="json_multi", qos=0, kinds=("aewatch", "naive")
        ) as contenders:
            for contender in contenders:
                _, rss0, _ = contender.usage()
                rows = WARM_ROWS if isinstance(contender, Daemon) else NAIVE_ROWS
                run = _fill_by_slot(bench, contender, case=case, assets=assets, rows=rows)
                run.extra["idle_rss_mb"] = rss0
                if isinstance(contender, Daemon):
                    gauges = contender.totals()
                    run.extra["assets_tracked"] = int(gauges["assets_tracked"])
                    run.extra["assets_warming"] = int(gauges["assets_warming"])
                bench.record(run)


def _fill_by_slot(bench: Bench, contender: Contender, *, case: str, assets: int, rows: int) -> Run:
    """Send ``rows`` slots of json_multi rows, one slot per flood; one Run for them all."""
    runs = []
    for slot in range(rows):
        plan = bench.plan(
            contender,
            mode="flood",
            payload="json_multi",
            assets=assets,
            first_slot=slot,
            rows=1,
        )
        runs.append(bench.measure(contender, plan, case=case, repeat=0, per_message=8))
    last = runs[-1]
    return Run(
        case=case,
        contender=contender.name,
        repeat=0,
        readings=sum(r.readings for r in runs),
        messages=sum(r.messages for r in runs),
        seconds=sum(r.seconds for r in runs),
        drops=sum(r.drops for r in runs),
        cpu_s=sum(r.cpu_s for r in runs),
        rss_mb=last.rss_mb,
        hwm_mb=last.hwm_mb,
        extra={
            "filled": sum(r.extra.get("filled", 0) for r in runs),
            "drop_reasons": last.extra.get("drop_reasons", {}),
        },
    )


def _profile(
    bench: Bench, daemon: Contender, *, rows: int, payload: str, qos: int, flood: list[Run]
) -> None:
    """py-spy record of aewatch during one more flood; keep the top frames per thread."""
    spy = str(_py_spy_path())
    seconds = max(3, round(statistics.median(run.seconds for run in flood)) + 2)
    output = bench.out / "profile_single_qos0.speedscope.json"
    plan = bench.next_rows(daemon, rows, mode="flood", payload=payload, qos=qos)
    command = [spy, "record", "--pid", str(daemon.process.pid), "--rate", "100", "--function"]
    command += ["--duration", str(seconds), "--format", "speedscope", "-o", str(output)]
    spying = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    run = bench.measure(daemon, plan, case="profiled", repeat=0)
    _, errors = spying.communicate(timeout=seconds + 30)
    bench.record(run)
    if spying.returncode != 0 or not output.exists():
        bench.notes.append(f"py-spy failed: {errors.decode()[-300:]}")
        return
    bench.profile.update({"file": str(output), "seconds": seconds, "threads": top_frames(output)})


_SCRIPTS = {
    "noop": "paho no-op",
    "json": "paho + json.loads",
    "proto": "paho + protobuf parse",
    "naive": "naive daemon",
}


@contextmanager
def _contenders(
    bench: Bench, *, case: str, payload: str, qos: int, kinds: tuple[str, ...]
) -> Iterator[list[Contender]]:
    """A fresh broker and the contenders of one case, started together, ready to measure."""
    folder = bench.out / case
    broker = Broker(folder)
    bench.broker_port = broker.port
    started: list[Contender] = []
    try:
        for kind in kinds:
            if kind == "aewatch":
                started.append(
                    Daemon(
                        folder,
                        broker=broker,
                        bundle=bench.bundle,
                        payload=payload,
                        qos=qos,
                        limits=_limits(payload),
                        protocol=bench.protocol,
                    )
                )
            else:
                started.append(
                    Script(
                        kind,
                        _SCRIPTS[kind],
                        broker=broker,
                        qos=qos,
                        bundle=bench.bundle,
                        protocol=bench.protocol,
                        payload=payload,
                    )
                )
        for contender in started:
            contender.wait_ready()
        yield started
    finally:
        for contender in started:
            contender.stop()
        broker.stop()


def _limits(payload: str) -> dict[str, float]:
    """The case's ``limits``: the defaults but for what the payload format needs.

    ``max_late_s``, how long a grid slot waits for its missing channels: the default (30 s)
    would be 3 000 periods of this model, and the first row of every asset waits that long;
    5 periods is plenty when each asset's channels arrive together. A 100-sample float32
    message spans 100 periods and the other channels' samples of those slots come in their
    own messages, so there a slot must wait longer than that. And for float32 the reading
    queue sized in seconds of input, as ``docs/metrics.md`` tells operators to: its default
    (100 000 readings) is 40 ms at 2.5 M samples/s, 1 000 000 (19 MB of samples) is 0.4 s.
    """
    if payload == "float32_le":
        return {"max_late_s": 150 * PERIOD_S, "queue_size": 1_000_000}
    return {"max_late_s": 5 * PERIOD_S}


def _warm_up(bench: Bench, contenders: list[Contender], *, qos: int, payload: str) -> None:
    """Fill every asset's window in the contenders that keep windows (not measured).

    The rows go as ``json_multi`` (eight readings a message) whatever the case sends, to
    the contender's ``warm_prefix``: aewatch has a second input there for the same assets.
    For Sparkplug B they go through the case's own input, with the births first.
    """
    for contender in contenders:
        if contender.name not in ("aewatch", "naive daemon"):
            continue
        sparkplug = payload == "sparkplug_b"
        plan = bench.plan(
            contender,
            prefix=contender.prefix if sparkplug else contender.warm_prefix,
            mode="flood",
            payload=payload if sparkplug else "json_multi",
            births=sparkplug,
            qos=qos,
            assets=bench.sizes.assets,
            first_slot=0,
            rows=WARM_ROWS,
        )
        contender.next_slot = WARM_ROWS
        run = bench.measure(contender, plan, case="warm-up", repeat=0, per_message=8)
        print(f"  warm-up {contender.name}: {run.readings:,} readings in {run.seconds:.1f} s")


def _rotated(contenders: list[Contender], repeat: int) -> list[Contender]:
    shift = repeat % len(contenders)
    return contenders[shift:] + contenders[:shift]


def _train_bundle(path: Path) -> None:
    """A PCA model (the defaults) on 20 000 rows of the publishers' 8 signals at 10 ms."""
    rows = 20_000
    first_slot = round(1.7e9 / PERIOD_S)
    table = Table(
        source="bench/throughput/run.py synthetic",
        timestamps=(first_slot + np.arange(rows)) * PERIOD_S,
        values=signal_rows(rows, seed=0),
        channels=CHANNELS,
        labels=None,
        changepoints=None,
        lines=np.arange(rows, dtype=np.int64) + 2,
    )
    settings = TrainSettings(period_s=PERIOD_S, name="bench", fit=FitSettings(show_progress=False))
    train_bundle([table], settings).bundle.save(path)


def _wait_for_quiet(max_load: float, wait_s: float) -> float:
    """Wait until the 1-minute load average is below ``max_load`` (or ``wait_s`` passed)."""
    deadline = time.monotonic() + wait_s
    load = os.getloadavg()[0]
    while load >= max_load and time.monotonic() < deadline:
        print(f"load average {load:.2f} >= {max_load}; waiting", flush=True)
        time.sleep(15)
        load = os.getloadavg()[0]
    return load


def _py_spy_path() -> Path:
    found = shutil.which("py-spy")
    return Path(found) if found else Path(PYTHON).parent / "py-spy"


def main() -> int:
    """Run every case and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--out", type=Path, default=HERE.parent / "out" / "throughput")
    parser.add_argument("--repeats", type=int, help="override the repeats of the run")
    parser.add_argument("--max-load", type=float, default=1.0)
    parser.add_argument("--wait-load", type=float, help="seconds to wait for a quiet machine")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=[
            "single_qos0",
            "single_qos1",
            "multi",
            "sparkplug",
            "float32",
            "latency",
            "memory",
        ],
    )
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--protocol",
        choices=["5", "3.1.1"],
        default="5",
        help="MQTT version of aewatch and the paho clients (default 5, aewatch's default)",
    )
    parser.add_argument(
        "--latency-load", type=float, help="readings/s of case latency (default: half of (a))"
    )
    parser.add_argument(
        "--float32-at",
        type=float,
        nargs="+",
        default=(),
        metavar="RATE",
        help="case float32: try these samples/s, each --repeats times, instead of searching",
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.repeats:
        sizes = replace(sizes, repeats=args.repeats)
    wait_s = args.wait_load if args.wait_load is not None else (0 if args.quick else 600)
    load_start = _wait_for_quiet(args.max_load, wait_s)
    started = time.monotonic()
    args.out = args.out.resolve()  # the daemon's config names files relative to itself
    args.out.mkdir(parents=True, exist_ok=True)
    bundle = args.out / "bench.aew"
    _train_bundle(bundle)
    bench = Bench(args.out, sizes, bundle=bundle, protocol=args.protocol)
    bench.notes.append(
        f"MQTT {args.protocol} for aewatch and the paho clients (the publisher: 3.1.1); "
        f"{sizes.assets:,} assets × 8 channels; model PCA, window 10, hop 1, period "
        f"{PERIOD_S * 1000:.0f} ms"
    )
    bench.profile["wanted"] = not args.quick if args.profile is None else args.profile
    if bench.profile["wanted"] and not _py_spy_path().exists():
        print(
            "py-spy is not installed: .venv/bin/pip install -e '.[bench]' (or pass --no-profile)",
            file=sys.stderr,
        )
        return 2
    cases: dict[str, Callable[[], None]] = {
        "single_qos0": lambda: flood_case(
            bench,
            case="single_qos0",
            payload="json",
            qos=0,
            rows=sizes.single_rows,
            kinds=("aewatch", "noop", "json", "naive"),
        ),
        "single_qos1": lambda: flood_case(
            bench,
            case="single_qos1",
            payload="json",
            qos=1,
            rows=sizes.qos1_rows,
            kinds=("aewatch", "noop", "naive"),
        ),
        "multi": lambda: flood_case(
            bench,
            case="multi",
            payload="json_multi",
            qos=0,
            rows=sizes.multi_rows,
            kinds=("aewatch", "noop", "json", "naive"),
        ),
        "sparkplug": lambda: flood_case(
            bench,
            case="sparkplug",
            payload="sparkplug_b",
            qos=0,
            rows=sizes.multi_rows,
            kinds=("aewatch", "noop", "proto"),
        ),
        "float32": lambda: float32_case(bench, args.float32_at),
        "latency": lambda: latency_case(bench, args.latency_load),
        "memory": lambda: memory_case(bench),
    }
    for name in args.cases:
        print(f"case {name}", flush=True)
        cases[name]()
    text = report(
        bench.runs,
        notes=bench.notes,
        profile=bench.profile,
        load=(load_start, os.getloadavg()[0]),
        seconds=time.monotonic() - started,
    )
    (args.out / "runs.json").write_text(
        json.dumps({"runs": [asdict(r) for r in bench.runs], "profile": bench.profile}, default=str)
    )
    print()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
