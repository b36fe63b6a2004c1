"""Simulated sensor streams with labelled faults: the ``aewatch simulate`` command.

Offline tooling beside the scoring pipeline: it makes realistic well and pump data to
train on, demo with and test detectors against.
"""

from aewatch.sim.cli import write_csv
from aewatch.sim.simulate import (
    DEFAULT_START_EPOCH_S,
    FAULT_KINDS,
    FAULT_SYNTAX,
    SCENARIOS,
    FaultSpec,
    InjectedFault,
    SimulatedStream,
    parse_faults,
    simulate,
)

__all__ = [
    "DEFAULT_START_EPOCH_S",
    "FAULT_KINDS",
    "FAULT_SYNTAX",
    "SCENARIOS",
    "FaultSpec",
    "InjectedFault",
    "SimulatedStream",
    "parse_faults",
    "simulate",
    "write_csv",
]
