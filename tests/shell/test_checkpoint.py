"""Checkpoints on their own, with a real journal, ledger, pipeline and outputs: one is
written only once the broker has every output published before it, at most every
``EVERY_S`` and within its share of the worker's time; a stop writes a last one."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from aewatch.daemon.checkpoint import COST_SHARE, EVERY_S, MAX_EVERY_S, Checkpoints
from aewatch.daemon.ledger import Ledger
from aewatch.daemon.reading_queue import ReadingQueue
from aewatch.model.bundle import ModelBundle
from aewatch.model.fit import FitSettings
from aewatch.model.train import TrainSettings, train_bundle
from tests.shell.test_asset_gauges import _table
from tests.shell.test_ledger import _parts, _publish
from tests.shell.test_outputs import RecordingClient, _scored


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    """test_ledger's model: channels a, b, c; window 10, hop 1, period 1 s."""
    settings = TrainSettings(fit=FitSettings(show_progress=False))
    return train_bundle([_table(2000, 0)], settings).bundle


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _feed(checkpoints: Checkpoints, ledger: Ledger, queue: ReadingQueue, rows: range) -> None:
    """Rows ``rows`` of channels a, b, c through the ledger and the pipeline, decided."""
    ledger.take([_publish(mid, channel) for mid in rows for channel in "abc"])
    checkpoints.pipeline.ingest(itertools.chain.from_iterable(queue.take(0)))
    checkpoints.pipeline.flush()


def _setup(
    bundle: ModelBundle, folder: Path
) -> tuple[Checkpoints, Clock, RecordingClient, Path, Ledger, ReadingQueue]:
    ledger, queue, _, pipeline, outputs = _parts(bundle, folder, 1000)
    client = outputs.client
    assert isinstance(client, RecordingClient)
    clock = Clock()
    unacknowledged = functools.partial(ledger.unacknowledged, outputs)
    checkpoints = Checkpoints(ledger.journal, pipeline, unacknowledged, clock=clock)
    _feed(checkpoints, ledger, queue, range(1, 41))
    outputs.publish(_scored(bundle, ("well-9",)))  # an alert, not yet acknowledged
    return checkpoints, clock, client, folder / "checkpoint.json", ledger, queue


def test_a_checkpoint_waits_for_the_broker_to_take_the_outputs_before_it(
    bundle: ModelBundle, tmp_path: Path
) -> None:
    checkpoints, _, client, note, ledger, queue = _setup(bundle, tmp_path)
    checkpoints.tick()
    checkpoints.wait()
    assert not note.exists()  # taken at once, but the alert is not out
    decided = checkpoints.pipeline.decided()
    assert set(decided) == {"well-1"}
    _feed(checkpoints, ledger, queue, range(41, 61))  # the worker goes on meanwhile
    assert checkpoints.pipeline.decided()["well-1"] > decided["well-1"]
    client.ack_all()
    checkpoints.tick()
    checkpoints.wait()  # written in a thread of its own
    saved = json.loads(note.read_text())
    assert saved["decided"] == decided  # what was decided when it was taken
    assert set(saved["assets"]) == {"well-1"}
    assert checkpoints.written == 1
    checkpoints.tick()
    checkpoints.wait()
    assert checkpoints.written == 1  # the next one comes EVERY_S after the last was taken


def test_the_worker_does_not_wait_for_the_write(
    bundle: ModelBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint is written in a thread of its own, one at a time; a stop waits for
    it before writing its own."""
    checkpoints, clock, client, note, *_ = _setup(bundle, tmp_path)
    client.ack_all()
    write, go_on = checkpoints.journal.checkpoint, threading.Event()

    def slow_disk(*args: Any) -> int:
        assert go_on.wait(30)
        return write(*args)

    monkeypatch.setattr(checkpoints.journal, "checkpoint", slow_disk)
    checkpoints.tick()  # returns with the write under way
    assert not note.exists() and checkpoints.written == 0
    clock.now = 10 * EVERY_S
    checkpoints.tick()  # due, but one write at a time: nothing taken
    go_on.set()
    assert checkpoints.final()  # waits for the first, then writes its own
    assert checkpoints.written == 2 and note.exists()


def test_saving_many_states_is_done_less_often(
    bundle: ModelBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker spends at most COST_SHARE of its time on checkpoints."""
    checkpoints, clock, client, *_ = _setup(bundle, tmp_path)
    client.ack_all()
    states = checkpoints.pipeline.states

    def slow_states() -> object:
        clock.now += 1.0  # a large fleet: a second to export
        return states()

    monkeypatch.setattr(checkpoints.pipeline, "states", slow_states)
    checkpoints.tick()
    checkpoints.wait()
    assert checkpoints.written == 1
    clock.now = 2 * EVERY_S
    checkpoints.tick()
    checkpoints.wait()
    assert checkpoints.written == 1
    clock.now = 1.0 / COST_SHARE
    checkpoints.tick()
    checkpoints.wait()
    assert checkpoints.written == 2


def test_checkpoints_write_no_more_bytes_than_the_journal(
    bundle: ModelBundle, tmp_path: Path
) -> None:
    """A busy journal: a checkpoint a second; a quiet one: MAX_EVERY_S apart."""
    checkpoints, clock, client, note, *_ = _setup(bundle, tmp_path)
    client.ack_all()
    checkpoints.tick()
    checkpoints.wait()
    size = note.stat().st_size
    checkpoints.journal.append([("plant/well-1/a", b"x" * (5 * size))], arrival_s=0.0)
    clock.now = EVERY_S  # five checkpoints' worth of readings came in that second
    checkpoints.tick()
    checkpoints.wait()
    assert checkpoints.written == 2
    clock.now = 2 * EVERY_S  # nothing came in since
    checkpoints.tick()
    checkpoints.wait()
    assert checkpoints.written == 3
    clock.now = 2 * EVERY_S + MAX_EVERY_S - 1.0
    checkpoints.tick()
    checkpoints.wait()
    assert checkpoints.written == 3
    clock.now = 2 * EVERY_S + MAX_EVERY_S
    checkpoints.tick()
    checkpoints.wait()
    assert checkpoints.written == 4


def test_a_stop_writes_a_last_checkpoint_only_with_its_outputs_out(
    bundle: ModelBundle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints, _, client, note, *_ = _setup(bundle, tmp_path)
    with caplog.at_level(logging.WARNING, logger="aewatch.daemon"):
        assert not checkpoints.final()
    assert not note.exists()  # the replay will decide those windows again
    assert "has not acknowledged 2 outputs" in caplog.text
    client.ack_all()
    assert checkpoints.final()
    assert json.loads(note.read_text())["decided"] == checkpoints.pipeline.decided()


def test_a_checkpoint_that_cannot_be_written_is_logged_once_and_tried_again(
    bundle: ModelBundle,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoints, clock, client, note, *_ = _setup(bundle, tmp_path)
    client.ack_all()
    write = checkpoints.journal.checkpoint

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints.journal, "checkpoint", full_disk)
    with caplog.at_level(logging.WARNING, logger="aewatch.daemon"):
        for tick in range(3):
            clock.now = tick * EVERY_S
            checkpoints.tick()
            checkpoints.wait()
    assert caplog.text.count("cannot write a checkpoint") == 1
    assert checkpoints.failed == 3  # counted each time (aewatch_checkpoints_failed_total)
    assert "No space left on device" in caplog.text
    monkeypatch.setattr(checkpoints.journal, "checkpoint", write)
    clock.now = 3 * EVERY_S
    checkpoints.tick()
    checkpoints.wait()
    assert note.exists() and checkpoints.written == 1
