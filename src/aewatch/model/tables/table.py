"""What reading an export gives: ``Table``, one file's readings on its own times, and
``Export``, that table with the summary of what reading found (shell input); with
``ChannelPick``, the channels a caller asks for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aewatch.model.tables.summary import ReadSummary

__all__ = ["CHANNELS_FIX", "LABEL_COLUMNS", "ChannelPick", "Export", "Step", "Table"]

LABEL_COLUMNS = ("anomaly", "changepoint")  # never channels; the first is the default label
CHANNELS_FIX = "fix --channels"  # what a message about a missing channel says to do

# Called with the name of each step of a read, for a progress bar.
Step = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Table:
    """One file's readings, sorted by time, with its labels and where each row came from.

    ``timestamps`` ``(n,)`` epoch seconds UTC, strictly increasing; ``values``
    ``(n, channels)`` in the file's units, missing cells forward-filled; ``labels`` and
    ``changepoints`` ``(n,)`` 0/1 or ``None`` when the file has no such column; ``lines``
    ``(n,)`` the 1-based line of each row in a CSV file (the header is line 1) or its
    1-based row number in a Parquet file, for error messages.
    """

    source: str  # the path as given
    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    channels: tuple[str, ...]
    labels: npt.NDArray[np.int8] | None
    changepoints: npt.NDArray[np.int8] | None
    lines: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Export:
    """One file as read: its :class:`Table` and the summary of what reading it found."""

    table: Table
    summary: ReadSummary


@dataclass(frozen=True, slots=True)
class ChannelPick:
    """The channels asked for, in order (None: every numeric column, or every tag), and
    what a message about one the file lacks tells the reader to do.

    >>> ChannelPick(("whp_bar",)).fix
    'fix --channels'
    """

    names: Sequence[str] | None = None
    fix: str = CHANNELS_FIX
