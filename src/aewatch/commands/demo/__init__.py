"""``aewatch demo``: the whole loop on this machine, the daemon included, in under three minutes.

Simulates a week of a healthy geothermal production well, trains a model on it with the
default settings and simulates the following day with one fault of each kind a
reconstruction model can see: the same commands a user would type. Then it runs the real
thing: a private mosquitto on a free loopback port, ``aewatch run`` as a child process,
and the fault day replayed over MQTT as fast as the broker takes it, printing each alert
as it arrives. It ends with the faults the daemon detected against those injected, next
to what offline scoring (``aewatch evaluate``) finds on the same day. Every process it
started is stopped before it returns, on an error or a Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from aewatch.commands.demo.processes import Child, find_mosquitto, start_broker, start_daemon
from aewatch.commands.demo.tally import Decision, Tally, fault_spans
from aewatch.commands.demo.watch import OutputWatch
from aewatch.commands.evaluate import evaluate_files
from aewatch.commands.replay import publish_table
from aewatch.commands.score import load_for_model
from aewatch.config import Config, load_config
from aewatch.errors import AewatchError
from aewatch.model.bundle import ModelBundle
from aewatch.model.dataset import Table, read_table
from aewatch.model.offline import score_table

__all__ = ["register"]

_HISTORY_START = "2026-01-01T00:00:00Z"
_FAULT_DAY_START = "2026-01-08T00:00:00Z"
# A week, not three days: the newest quarter of the history calibrates the threshold, and
# with three days that is 18 hours holding only a few choke moves, so the fault day's
# larger moves raised false alerts. A week's calibration part (42 h) covers them.
_HISTORY_HOURS = 168.0
# The seven sensor faults of the first simulator (gain, leak and hunting came later and
# `aewatch simulate --faults all` makes them too).
_DEMO_FAULTS = "drift,step,spikes,stuck,noise,oscillation,decouple"
_INPUT_TOPIC = "demo/{asset}/{channel}"
_ONLINE_TIMEOUT_S = 60.0  # the daemon imports torch and loads the bundle first
_SCORED_TIMEOUT_S = 120.0  # after the replay, for the daemon to catch up
_STOPPED_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class _Files:
    """Where the demo writes, all in the output folder."""

    out: Path
    history: Path
    day: Path
    model: Path
    config: Path
    daemon_log: Path

    @classmethod
    def under(cls, out: Path, scenario: str) -> _Files:
        return cls(
            out=out,
            history=out / "history.csv",
            day=out / "fault-day.csv",
            model=out / f"{scenario}.aew",
            config=out / "aewatch.yaml",
            daemon_log=out / "daemon.log",
        )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` verb."""
    p = sub.add_parser(
        "demo",
        help="simulate, train, run the daemon on a private broker and replay a day of faults",
        description="Simulate a healthy week of a geothermal well and train on it; simulate "
        "the next day with injected faults; start a private mosquitto and the daemon, replay "
        "the day over MQTT, print the alerts as they arrive, and compare the faults detected "
        "with those injected and with offline scoring. Needs the mosquitto binary.",
    )
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder")
    p.add_argument("--scenario", choices=("well", "pump"), default="well")
    p.add_argument(
        "--period",
        type=float,
        default=10.0,
        metavar="S",
        help="sample period in seconds (default %(default)s)",
    )
    p.add_argument(
        "--history-hours",
        type=float,
        default=_HISTORY_HOURS,
        metavar="H",
        help="hours of healthy history to train on (default %(default)s: a week)",
    )
    p.add_argument(
        "--hours",
        type=float,
        default=24.0,
        metavar="H",
        help="length of the fault day in hours (default %(default)s)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=0.0,
        metavar="X",
        help="replay X times faster than real time; 0 = as fast as possible (default)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Simulate, train, simulate faults, run live, compare with offline; print each step."""
    from aewatch.cli import main  # noqa: PLC0415  (the demo drives the real command line)

    mosquitto = find_mosquitto()  # before a minute of work that would end in this error
    files = _Files.under(args.out, args.scenario)
    files.out.mkdir(parents=True, exist_ok=True)
    for title, argv in _offline_steps(args, files):
        print(f"\n== {title}\n$ aewatch {' '.join(argv)}", flush=True)
        status = main(argv)
        if status != 0:
            return status
    print(
        "\n== 4/5 run it live: a private mosquitto, the daemon, the fault day replayed "
        + ("as fast as possible" if args.speed <= 0 else f"{args.speed:g}x real time"),
        flush=True,
    )
    with _sigterm_as_exit() as interrupted:
        decisions = _run_live(files, mosquitto=mosquitto, asset=args.scenario, speed=args.speed)
    if interrupted.is_set():
        # Ctrl-C whose KeyboardInterrupt was swallowed (raised inside a finaliser, say):
        # the children are stopped; still end as an interrupted run.
        return 130
    print(
        "\n== 5/5 compare: the faults injected, what the daemon caught, and what offline "
        f"scoring catches\n   (offline = `aewatch evaluate --model {files.model} --data "
        f"{files.day}`)",
        flush=True,
    )
    _print_summary(files, asset=args.scenario, decisions=decisions)
    return 0


def _offline_steps(args: argparse.Namespace, files: _Files) -> list[tuple[str, list[str]]]:
    simulate = ["simulate", "--scenario", args.scenario, "--period", str(args.period)]
    return [
        (
            "1/5 simulate a healthy week (enough choke moves to calibrate on)",
            [
                *simulate,
                *("--hours", f"{args.history_hours:g}", "--seed", "1"),
                *("--start", _HISTORY_START, "--out", str(files.history)),
            ],
        ),
        (
            "2/5 train on it (default settings)",
            ["train", "--data", str(files.history), "--out", str(files.model), "--quiet"],
        ),
        (
            "3/5 simulate the next day with one fault of each of seven kinds",
            [
                *simulate,
                *("--hours", f"{args.hours:g}", "--faults", _DEMO_FAULTS, "--seed", "2"),
                *("--start", _FAULT_DAY_START, "--out", str(files.day)),
            ],
        ),
    ]


# -- step 4: live -----------------------------------------------------------------------


def _run_live(files: _Files, *, mosquitto: Path, asset: str, speed: float) -> list[Decision]:
    """Broker, daemon, replay, wait until all is scored, stop; return the daemon's decisions."""
    with contextlib.ExitStack() as stack:  # undoes everything below in reverse, whatever happens
        broker, port = start_broker(mosquitto, files.out)
        stack.callback(broker.stop)
        print(
            f"broker   mosquitto on 127.0.0.1:{port} "
            f"(config {files.out / 'mosquitto.conf'}, log {broker.log})",
            flush=True,
        )
        config = _write_daemon_config(files, port=port)
        watch = OutputWatch(port, config.outputs)
        watch.start()
        stack.callback(watch.close)
        print(f"daemon   $ python -m aewatch run --config {files.config}", flush=True)
        daemon = start_daemon(files.config, files.daemon_log)
        stack.callback(daemon.stop)
        _await_online(daemon, watch, config)
        table = read_table(files.day)
        print(
            f"replay   {len(table.timestamps)} rows of {files.day.name} as "
            f"{len(table.timestamps) * len(table.channels)} messages on "
            f"{_INPUT_TOPIC.replace('{asset}', asset)} (JSON, QoS 1)\n"
            f"alerts   as they arrive on {config.outputs.alert_topic_for('+')} "
            "(times are the data's):",
            flush=True,
        )
        _replay(table, port=port, asset=asset, speed=speed)
        _await_scored(daemon, watch, last_s=float(table.timestamps[-1]))
        _stop_daemon(daemon, watch, config)
        return watch.decisions()
    raise AssertionError("unreachable: the ExitStack re-raises")  # pragma: no cover


def _write_daemon_config(files: _Files, *, port: int) -> Config:
    """Write the daemon's YAML into the output folder and check that it loads."""
    files.config.write_text(
        "# Written by `aewatch demo`: the daemon on the demo's private broker.\n"
        "# Reference: docs/configuration.md; check a config with `aewatch check-config FILE`.\n"
        "broker:\n"
        f"  url: mqtt://127.0.0.1:{port}\n"
        "  client_id: aewatch-demo\n"
        "inputs:\n"
        f"  - topic: {_INPUT_TOPIC}\n"
        "    payload: json            # {ts, value}, as `aewatch replay --per channel` sends\n"
        "models:\n"
        f"  - path: {files.model.name}        # relative to this file\n"
        "outputs:\n"
        "  # The reconstruction of each newest row: when the replay's last row shows up\n"
        "  # here, the daemon has scored the whole day.\n"
        "  denoised: true\n"
        "metrics:\n"
        "  port: 0                    # any free port, never one a real daemon holds\n"
    )
    return load_config(files.config)


def _await_online(daemon: Child, watch: OutputWatch, config: Config) -> None:
    started = time.monotonic()
    if not watch.wait_status(
        "online", timeout_s=_ONLINE_TIMEOUT_S, is_alive=lambda: daemon.is_running
    ):
        raise _daemon_failed(daemon, f"did not say `online` on {config.outputs.status_topic_name}")
    print(
        f"daemon   online after {time.monotonic() - started:.1f} s "
        f"(retained `online` on {config.outputs.status_topic_name}; log {daemon.log})",
        flush=True,
    )


def _replay(table: Table, *, port: int, asset: str, speed: float) -> None:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="aewatch-demo-replay", protocol=mqtt.MQTTv5
    )
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    started = time.monotonic()
    try:
        sent = publish_table(
            client, table, asset=asset, template=_INPUT_TOPIC, per="channel", speed=speed, qos=1
        )
    finally:
        client.disconnect()
        client.loop_stop()
    took = time.monotonic() - started
    print(f"replay   published {sent} messages in {took:.1f} s ({sent / took:.0f}/s)", flush=True)


def _await_scored(daemon: Child, watch: OutputWatch, *, last_s: float) -> None:
    started = time.monotonic()
    if not watch.wait_scored(
        last_s, timeout_s=_SCORED_TIMEOUT_S, is_alive=lambda: daemon.is_running
    ):
        raise _daemon_failed(daemon, f"did not score the last row ({_clock(last_s)})")
    print(
        f"daemon   scored the last row ({_clock(last_s)}) "
        f"{time.monotonic() - started:.1f} s after the replay ended",
        flush=True,
    )


def _stop_daemon(daemon: Child, watch: OutputWatch, config: Config) -> None:
    status = daemon.stop()
    topic = config.outputs.status_topic_name
    said = "`stopped`" if watch.wait_status("stopped", timeout_s=_STOPPED_TIMEOUT_S) else "nothing"
    outcome = "drained and exited 0" if status == 0 else f"exited {status}; see its log"
    print(f"daemon   SIGTERM: it said {said} on {topic} (retained), {outcome}", flush=True)


def _daemon_failed(daemon: Child, what: str) -> AewatchError:
    state = "is still running" if daemon.is_running else f"exited with {daemon.process.returncode}"
    return AewatchError(
        f"the daemon {what}; it {state}. Its log {daemon.log} ends:\n{daemon.log_tail()}"
    )


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[threading.Event]:
    """While children run, SIGTERM unwinds the stack (so they are stopped) instead of killing.

    Yields an event set by Ctrl-C, which also raises KeyboardInterrupt as usual.
    """
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    previous_int = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


# -- step 5: compare ----------------------------------------------------------------------


def _print_summary(files: _Files, *, asset: str, decisions: list[Decision]) -> None:
    bundle = ModelBundle.load(files.model)
    evaluation = evaluate_files(bundle, [str(files.day)], plot_dir=files.out)
    table = load_for_model(bundle, str(files.day))
    assert table.labels is not None  # the simulator always writes the anomaly column
    offline_events = score_table(bundle, table, asset=asset).events
    faults = fault_spans(table.timestamps, table.labels)
    live = Tally.of(faults, decisions)
    offline = Tally.of(faults, [(e.alert_id, e.state, e.at) for e in offline_events])
    print(f"faults   {len(faults)} injected (the runs of anomaly = 1 in {files.day.name}):")
    for (first, last), ids in zip(faults, live.detected_by, strict=True):
        print(f"  {_clock(first)} .. {_clock(last)[11:]}  {_caught(live, first, ids)}")
    print(f"daemon   {live.line()} (live, over MQTT)")
    print(f"offline  {_offline_line(evaluation)}")
    print(f"match    {_match_line(live, offline)}")
    summary = json.loads((files.out / f"{files.model.name}.report" / "summary.json").read_text())
    print(
        f"\nTraining report: {files.out / (files.model.name + '.report') / 'index.html'}"
        f"\nEvaluation plot: {files.out / (files.day.stem + '-evaluation.png')}"
        f"\nDaemon config and log: {files.config}, {files.daemon_log}"
        f"\nModel {summary['model']} {summary['version']}: score any CSV with "
        f"`aewatch score --model {files.model} --data FILE --out scores.csv`"
        "\nNote: the faults are a few times each sensor's noise. A small step on flow, the"
        "\nchannel the choke moves, looks like a small choke move: give a model the choke"
        "\nposition as a channel to see such faults."
    )


def _caught(tally: Tally, first: float, ids: tuple[str, ...]) -> str:
    if not ids:
        return "missed"
    raised_at = tally.alerts[ids[0]][0]
    when = "on already" if raised_at <= first else f"raised {raised_at - first:.0f} s in"
    return f"detected by {ids[0]} ({when})"


def _offline_line(r: dict[str, Any]) -> str:
    n_false = r["false_alert_events"]
    return (
        f"detected {r['detected_events']} of {r['true_events']} faults, {n_false} false "
        f"alert{'' if n_false == 1 else 's'} (aewatch evaluate: F1 {r['f1']:.3f}, "
        f"FAR {r['far']:.2%}, MAR {r['mar']:.2%})"
    )


def _match_line(live: Tally, offline: Tally) -> str:
    if live.alerts == offline.alerts:
        n = len(live.alerts)
        return (
            f"the daemon raised exactly the {n} alert{'' if n == 1 else 's'} offline scoring "
            "raises: same ids, same raise and resolve times"
        )
    differ = sorted(set(live.alerts) ^ set(offline.alerts))
    differ += sorted(
        a for a in live.alerts.keys() & offline.alerts if live.alerts[a] != offline.alerts[a]
    )
    return (
        f"the daemon's alerts differ from offline scoring ({', '.join(differ)}); see the daemon log"
    )


def _clock(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
