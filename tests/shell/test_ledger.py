"""Ledger: the journal's bookkeeping on its own, with a real journal, intake and pipeline.

A QoS 1 message is acknowledged once its readings are queued and journaled; with no
room it is held, unacknowledged, and admitted in order later; a record goes once its
asset is done with it and the outputs published since are acknowledged; what is not
released is replayed. ``tests/reliability/test_journal_flow.py`` runs the same through a
broker and a killed daemon.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from pathlib import Path

import pytest

from aewatch.config import Config, OutputConfig
from aewatch.core.pipeline import Pipeline
from aewatch.daemon.asset_errors import AssetErrors
from aewatch.daemon.asset_gauges import AssetGauges
from aewatch.daemon.fleet import Fleet, ServedModel
from aewatch.daemon.intake import Intake
from aewatch.daemon.journal import Journal
from aewatch.daemon.ledger import SILENT_S, Ledger
from aewatch.daemon.mqtt import Publish
from aewatch.daemon.outputs import Outputs
from aewatch.daemon.reading_queue import ReadingQueue
from aewatch.daemon.service_counts import ServiceCounts
from aewatch.model.bundle import ModelBundle
from aewatch.model.fit import FitSettings
from aewatch.model.train import TrainSettings, train_bundle
from tests.shell.test_asset_gauges import _table
from tests.shell.test_outputs import RecordingClient, _scored

T0 = 1_700_000_000.0
ROWS = 80
CONFIG = {
    "broker": {"url": "mqtt://127.0.0.1:1"},
    "inputs": [{"topic": "plant/{asset}/{channel}", "payload": "json"}],
    "models": [{"path": "unused.aew"}],
    "metrics": {"port": 0},
}


class Clock:
    """Wall-clock seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    """test_asset_gauges' model: channels a, b, c; window 10, hop 1, period 1 s."""
    settings = TrainSettings(fit=FitSettings(show_progress=False))
    return train_bundle([_table(2000, 0)], settings).bundle


def _publish(mid: int, channel: str = "a") -> Publish:
    """Reading ``value`` 0.5 of ``channel`` at T0 + ``mid`` s, as a QoS 1 message."""
    payload = json.dumps({"ts": T0 + mid, "value": 0.5}).encode()
    return Publish(f"plant/well-1/{channel}", payload, 1, mid, False)


def _parts(
    bundle: ModelBundle, folder: Path, capacity: int
) -> tuple[Ledger, ReadingQueue, Clock, Pipeline[ServedModel], Outputs]:
    config = Config.model_validate(CONFIG)
    fleet = Fleet([ServedModel.from_bundle(bundle, pattern="*", name="well")])
    queue, clock = ReadingQueue(capacity), Clock()
    intake = Intake(config, fleet, queue, clock=clock)
    counts = ServiceCounts()
    outputs = Outputs(
        RecordingClient(),
        OutputConfig(),
        counts=counts,
        asset_errors=AssetErrors(logging.getLogger("test")),
        asset_gauges=AssetGauges(),
        state_key=None,
        track_sent=True,
    )
    ledger = Ledger(Journal(folder), intake, counts, threading.Lock())
    return ledger, queue, clock, Pipeline(fleet), outputs


def _kept_by_a_checkpoint(journal: Journal) -> int:
    """The records a checkpoint written now keeps for the next start (the released go)."""
    journal.checkpoint({}, journal.released)
    return journal.records_kept()


def test_a_full_queue_holds_messages_unacknowledged_and_admits_them_in_order(
    bundle: ModelBundle, tmp_path: Path
) -> None:
    ledger, queue, _, _, _ = _parts(bundle, tmp_path / "journal", capacity=4)
    found = [_publish(mid) for mid in range(1, 7)]
    done = ledger.take(found)
    assert [p.mid for p in done] == [1, 2, 3, 4]  # queued and journaled: acknowledge
    assert ledger.has_held and ledger.counts.held == 2
    assert ledger.journal.records_kept() == 1 and ledger.marked == 1
    assert ledger.admit_held() == []  # still no room
    queue.take(0)  # the worker takes the four
    assert [p.mid for p in ledger.admit_held()] == [5, 6]
    assert not ledger.has_held and ledger.journal.records_kept() == 2


def test_a_record_goes_once_its_asset_is_done_and_the_outputs_are_acknowledged(
    bundle: ModelBundle, tmp_path: Path
) -> None:
    ledger, queue, clock, pipeline, outputs = _parts(bundle, tmp_path / "journal", 100)
    client = outputs.client
    assert isinstance(client, RecordingClient)
    ledger.take([_publish(1), _publish(2, "b")])
    pipeline.ingest(itertools.chain.from_iterable(queue.take(0)))
    ledger.settle(ledger.marked, pipeline, outputs)
    assert _kept_by_a_checkpoint(ledger.journal) == 1  # its readings: a window to come
    outputs.publish(_scored(bundle, ("well-9",)))  # an alert elsewhere, not yet acknowledged
    clock.now += SILENT_S + 1  # the asset fell silent: its records may go
    ledger.settle(ledger.marked, pipeline, outputs)
    assert ledger.marked == 0
    assert _kept_by_a_checkpoint(ledger.journal) == 1  # not before the broker has the output
    client.ack_all()
    ledger.settle(ledger.marked, pipeline, outputs)
    assert _kept_by_a_checkpoint(ledger.journal) == 0


def test_a_start_replays_what_was_not_released(bundle: ModelBundle, tmp_path: Path) -> None:
    first, _, _, _, _ = _parts(bundle, tmp_path / "journal", 100)
    first.take([_publish(1), _publish(2)])
    first.take([_publish(3)])
    first.journal.close()
    second, queue, _, _, _ = _parts(bundle, tmp_path / "journal", 100)
    assert second.replay_end is None  # not replayed yet
    second.replay(lambda: True)
    assert second.counts.replayed == 3 and second.marked == 2
    assert second.replay_end == second.added == 2  # the worker must take 2 records
    assert sum(len(items) for items in queue.take(0)) == 3  # every reading, queued again
    second.take([_publish(4)])  # live, once connected
    assert second.added == 3 and second.replay_end == 2


def test_the_records_behind_every_window_to_come_go_first(
    bundle: ModelBundle, tmp_path: Path
) -> None:
    ledger, queue, clock, pipeline, outputs = _parts(bundle, tmp_path / "journal", 1000)
    clock.now = T0 + ROWS  # the readings arrive as they are made, none from the future
    for row in range(1, ROWS + 1):  # a record per row of the three channels
        ledger.take([_publish(row, channel) for channel in ("a", "b", "c")])
    pipeline.ingest(itertools.chain.from_iterable(queue.take(0)))
    pipeline.flush()
    ledger.settle(ledger.marked, pipeline, outputs)
    kept = _kept_by_a_checkpoint(ledger.journal)
    # A slot is final once max_late_s (30 s) of newer readings came, and the next window
    # (10 rows, hop 1) still needs the 9 final rows before it: the rows before are done.
    assert 0 < kept < ROWS and kept == ledger.marked
    assert kept == sum(1 for row in range(1, ROWS + 1) if T0 + row > pipeline.settled_s("well-1"))
