"""The ``aewatch simulate`` sub-command: simulate a stream and write it as CSV.

Shell around the pure simulator (``aewatch.sim.simulate``): it reads arguments, writes
the file and prints what it did. The CSV has a header ``timestamp,<channels...>,anomaly``,
ISO 8601 UTC timestamps ending in ``Z``, values to six significant digits and 0/1 labels.
"""

from __future__ import annotations

import argparse
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from aewatch.errors import AewatchError
from aewatch.sim.simulate import (
    DEFAULT_START_EPOCH_S,
    FAULT_SYNTAX,
    SCENARIOS,
    SimulatedStream,
    parse_faults,
    simulate,
)

__all__ = ["register", "run_simulate", "write_csv"]

_VALUE_FORMAT = "%.6g"
_TimeUnit = Literal["s", "ms"]
_EPILOG = f"""\
fault syntax (--faults):
{textwrap.fill(FAULT_SYNTAX, width=88, initial_indent="  ", subsequent_indent="  ")}
  Omitted times, durations and channels are drawn from the seed: faults go after the
  first tenth of the stream, do not overlap and last 5-30 minutes. Empty: normal data.

fault kinds (sizes in the channel's sensor-noise sd, a few, never gross):
  drift        the sensor walks off linearly, to 6-10 at the span's end
  step         a constant offset of 4-7
  spikes       3-12 isolated one-sample spikes of 8-15
  stuck        the reading freezes at its last value before the span
  noise        extra white noise of 3-5
  oscillation  a sine of 3-5 with a 20 s - 4 min period (a loose mounting, a resonance)
  decouple     the channel stops following the plant and wanders off, to 5-8
  gain         the transmitter's gain is off: readings scaled about zero, by 3-6 at the
               span's start, then growing and shrinking with the process level
  leak         a slow process loss: its channel ramps to 4-7, and the channels the plant
               couples to it move less, the way the plant would (well: flow falls and
               whp rises, or whp and flow fall; pump: flow and head fall at the same
               speed and current, or head rises while flow and current fall)
  hunting      a control loop hunts: a flat-topped swing of 2-4 with a 1-10 min period
               (at least 6 samples a cycle) that builds up over its first cycle, weaker
               on the coupled channels (well: whp against flow; pump: speed, current,
               head and flow together)
  A leak or hunting with no channel starts on one the scenario couples; on any other
  channel it stays on that channel.

channels:
{chr(10).join(f"  {name}: {', '.join(channels)}" for name, channels in SCENARIOS.items())}

example:
  aewatch simulate --scenario well --hours 24 --faults all --seed 3 --out well.csv
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` sub-command; its ``func`` is ``run_simulate``."""
    parser = subparsers.add_parser(
        "simulate",
        help="write a synthetic well or pump stream with labelled faults to CSV",
        description="Simulate a geothermal well or mine pump stream, with labelled faults, "
        "and write it to CSV (timestamp, one column per channel, anomaly 0/1).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--hours", type=float, default=24.0, help="stream length (default 24)")
    parser.add_argument(
        "--period", type=float, default=1.0, help="sample period in seconds (default 1)"
    )
    parser.add_argument(
        "--faults", default="", help="faults to inject, e.g. 'drift,spikes@3.5+0.25:whp_bar'"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--start",
        type=_parse_start,
        default=DEFAULT_START_EPOCH_S,
        help="ISO date/time of the first row, UTC unless it has an offset "
        "(default 2026-01-01T00:00:00Z)",
    )
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    """Simulate as ``args`` say, write the CSV, print the faults and the path; return 0.

    Raises:
        AewatchError: bad fault text or arguments, or an unwritable output file.
    """
    stream = simulate(
        args.scenario,
        hours=args.hours,
        period_s=args.period,
        faults=parse_faults(args.faults),
        seed=args.seed,
        start_epoch_s=args.start,
    )
    write_csv(stream, args.out)
    start = float(stream.timestamps[0])
    spans = np.array([(f.start_s, f.end_s) for f in stream.faults], dtype=np.float64)
    spans = spans.reshape(-1, 2) + start
    unit = _iso_unit(np.concatenate([stream.timestamps, spans.ravel()]))
    for fault, (begin, end) in zip(stream.faults, spans, strict=True):
        begin_text, end_text = _iso_times(np.array([begin, end]), unit=unit)
        print(f"{fault.kind:<12} {fault.channel:<16} {begin_text} .. {end_text}")
    print(f"wrote {len(stream.timestamps)} rows x {len(stream.channels)} channels to {args.out}")
    return 0


def write_csv(stream: SimulatedStream, path: Path | str) -> None:
    """Write ``stream`` to ``path`` as CSV: ``timestamp,<channels...>,anomaly``.

    Raises:
        AewatchError: the file cannot be written.
    """
    row = ",".join(["%s", *[_VALUE_FORMAT] * len(stream.channels), "%d"]) + "\n"
    header = ",".join(["timestamp", *stream.channels, "anomaly"]) + "\n"
    times = _iso_times(stream.timestamps, unit=_iso_unit(stream.timestamps))
    try:
        with Path(path).open("w", encoding="utf-8", newline="") as out:
            out.write(header)
            out.writelines(
                row % (at, *values, label)
                for at, values, label in zip(
                    times, stream.values.tolist(), stream.labels.tolist(), strict=True
                )
            )
    except OSError as err:
        raise AewatchError(
            f"cannot write the simulated stream to {path}: {err.strerror}; "
            "choose a writable --out path in an existing directory"
        ) from err


def _iso_unit(epoch_s: npt.NDArray[np.float64]) -> _TimeUnit:
    """Return ``"s"`` if all times are whole seconds (to the millisecond), else ``"ms"``."""
    millis = np.round(epoch_s * 1000.0).astype(np.int64)
    return "s" if bool(np.all(millis % 1000 == 0)) else "ms"


def _iso_times(epoch_s: npt.NDArray[np.float64], *, unit: _TimeUnit) -> list[str]:
    """Return ISO 8601 UTC strings ending in ``Z``, to the ``unit`` (``"s"`` or ``"ms"``)."""
    millis = np.round(epoch_s * 1000.0).astype(np.int64)
    text = np.datetime_as_string(millis.astype("datetime64[ms]"), unit=unit)
    return [f"{t}Z" for t in text.tolist()]


def _parse_start(text: str) -> float:
    """Return epoch seconds of an ISO date/time; naive times are taken as UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--start {text!r} is not an ISO date/time; use e.g. 2026-01-01 or 2026-01-01T06:00:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
