"""Reading historian exports, piece by piece (shell input): the options, the file's
columns, one asset's rows of a fleet's export, times, cells, row order, wide and long
tables and the summary of what was read. :mod:`aewatch.model.dataset` puts them together
into a ``Table``."""

from aewatch.model.tables.assets import asset_names, asset_rows, fleet_raw
from aewatch.model.tables.cells import (
    BAD_CELL_FIX,
    Cells,
    carried_forward,
    interpolated,
    looks_numeric,
    parsed_numbers,
)
from aewatch.model.tables.files import RawFile, listing, read_raw
from aewatch.model.tables.long import Pivot, long_columns, read_long
from aewatch.model.tables.options import ReadOptions
from aewatch.model.tables.order import Order, ordered_rows
from aewatch.model.tables.summary import ColumnCells, ReadSummary, time_span
from aewatch.model.tables.table import (
    CHANNELS_FIX,
    LABEL_COLUMNS,
    ChannelPick,
    Export,
    Step,
    Table,
)
from aewatch.model.tables.times import TimeRead, read_times
from aewatch.model.tables.wide import read_wide

__all__ = [
    "BAD_CELL_FIX",
    "CHANNELS_FIX",
    "LABEL_COLUMNS",
    "Cells",
    "ChannelPick",
    "ColumnCells",
    "Export",
    "Order",
    "Pivot",
    "RawFile",
    "ReadOptions",
    "ReadSummary",
    "Step",
    "Table",
    "TimeRead",
    "asset_names",
    "asset_rows",
    "carried_forward",
    "fleet_raw",
    "interpolated",
    "listing",
    "long_columns",
    "looks_numeric",
    "ordered_rows",
    "parsed_numbers",
    "read_long",
    "read_raw",
    "read_times",
    "read_wide",
    "time_span",
]
