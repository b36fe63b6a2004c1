"""The QoS 1 journal on real files: what a start replays, what a checkpoint lets go, and
a record cut short by a kill."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from aewatch.daemon import journal as journal_module
from aewatch.daemon.journal import Journal


def _messages(n: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [(f"plant/w{i}/flow", f"{i}.5".encode()) for i in range(start, start + n)]


def _let_go(journal: Journal, seq: int) -> None:
    """Release the records up to ``seq`` and write a checkpoint, which lets them go."""
    journal.release(seq)
    journal.checkpoint({}, seq)


def test_a_start_replays_what_was_not_released(tmp_path: Path) -> None:
    """Records come back in order with their arrival times; released ones do not."""
    journal = Journal(tmp_path)
    seqs = [journal.append(_messages(3, 3 * i), arrival_s=100.0 + i) for i in range(4)]
    assert seqs == [0, 1, 2, 3]
    _let_go(journal, 1)
    journal.close()
    again = Journal(tmp_path)
    records = list(again.replay())
    assert [(r.seq, r.arrival_s) for r in records] == [(2, 102.0), (3, 103.0)]
    assert records[0].messages == _messages(3, 6)
    assert again.append(_messages(1), arrival_s=1.0) == 4  # numbering goes on


def test_a_release_deletes_whole_segments_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments wholly released go; the one still holding a needed record stays."""
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 200)
    journal = Journal(tmp_path)
    for i in range(12):
        journal.append(_messages(4, i), arrival_s=float(i))
    segments = sorted(tmp_path.glob("*.aej"))
    assert len(segments) > 3
    journal.release(5)
    assert sorted(tmp_path.glob("*.aej")) == segments  # kept until a checkpoint
    journal.checkpoint({}, 5)
    left = sorted(tmp_path.glob("*.aej"))
    assert 0 < len(left) < len(segments)
    journal.close()
    assert [r.seq for r in Journal(tmp_path).replay()] == list(range(6, 12))


def test_a_record_cut_short_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A kill mid-write leaves a torn tail: the whole records before it replay, it goes."""
    journal = Journal(tmp_path)
    journal.append(_messages(2), arrival_s=1.0)
    journal.append(_messages(2, 2), arrival_s=2.0)
    journal.close()
    (segment,) = tmp_path.glob("*.aej")
    whole = segment.stat().st_size
    with segment.open("r+b") as f:
        f.truncate(whole - 3)
    with caplog.at_level(logging.WARNING, logger="aewatch.journal"):
        records = list(Journal(tmp_path).replay())
    assert [r.seq for r in records] == [0]
    assert "cut short or corrupt" in caplog.text
    assert segment.stat().st_size < whole - 3  # cut off at the torn record


def test_a_corrupt_record_is_not_believed(tmp_path: Path) -> None:
    """A flipped byte fails the CRC: the record and what follows are dropped."""
    journal = Journal(tmp_path)
    journal.append(_messages(1), arrival_s=1.0)
    journal.append(_messages(1, 1), arrival_s=2.0)
    journal.close()
    (segment,) = tmp_path.glob("*.aej")
    data = bytearray(segment.read_bytes())
    data[-2] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert [r.seq for r in Journal(tmp_path).replay()] == [0]


def test_numbering_goes_on_after_an_empty_last_segment(tmp_path: Path) -> None:
    """A kill before a new segment's first record was whole leaves it empty: the next start
    still numbers after what was released, so its records are replayed, not skipped."""
    first = Journal(tmp_path)
    for i in range(3):
        first.append(_messages(1, i), arrival_s=float(i))
    _let_go(first, 2)
    first.close()
    second = Journal(tmp_path)
    assert list(second.replay()) == []
    second.append(_messages(1, 3), arrival_s=3.0)  # opens segment 3, drops segment 0
    (segment,) = tmp_path.glob("*.aej")
    segment.write_bytes(b"")  # killed mid-write: the record never became whole
    third = Journal(tmp_path)
    assert list(third.replay()) == []
    assert third.append(_messages(1, 4), arrival_s=4.0) == 3
    third.close()
    assert [r.messages for r in Journal(tmp_path).replay()] == [_messages(1, 4)]


def test_records_kept_counts_what_a_start_would_replay(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert journal.records_kept() == 0
    for i in range(4):
        journal.append(_messages(2, 2 * i), arrival_s=float(i))
    journal.release(1)
    assert journal.records_kept() == 4  # a start now replays them: no checkpoint yet
    journal.checkpoint({}, 1)
    assert journal.records_kept() == 2
    journal.close()
    again = Journal(tmp_path)
    replayed = list(again.replay())
    assert again.records_kept() == len(replayed) == 2
    _let_go(again, 3)
    assert again.records_kept() == 0
    again.close()


# Appends under a file size limit that a record crosses (a full disk fails the same way,
# part way through a write), then without it. Python ignores SIGXFSZ: the write raises.
_CUT_SHORT = """\
import json, resource, sys
from pathlib import Path
from aewatch.daemon.journal import Journal

journal = Journal(Path(sys.argv[1]))
whole = [journal.append([("plant/w1/flow", b"1.5")], arrival_s=1.0)]
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (journal.bytes_kept() + 20, hard))
failed = []
for payload in (b"2.5" * 20, b"3.5"):
    try:
        journal.append([("plant/w1/flow", payload)], arrival_s=2.0)
    except OSError as err:
        failed.append(err.strerror)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
whole.append(journal.append([("plant/w1/flow", b"4.5")], arrival_s=3.0))
journal.close()
print(json.dumps({"whole": whole, "failed": failed}))
"""


def test_a_write_that_fails_part_way_leaves_no_torn_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A record written in part is cut off again, so the records appended once the disk
    has room replay (a replay stops at the first torn record)."""
    done = subprocess.run(
        [sys.executable, "-c", _CUT_SHORT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome == {"whole": [0, 1], "failed": ["File too large", "File too large"]}
    with caplog.at_level(logging.WARNING, logger="aewatch.journal"):
        records = list(Journal(tmp_path).replay())
    assert [(r.seq, r.messages) for r in records] == [
        (0, [("plant/w1/flow", b"1.5")]),
        (1, [("plant/w1/flow", b"4.5")]),
    ]
    assert "cut short" not in caplog.text


def test_released_records_stay_until_a_checkpoint_lets_them_go(tmp_path: Path) -> None:
    """A kill between checkpoints replays every record after the newest one, released by
    the killed process or not, so its states and the replay fit together."""
    journal = Journal(tmp_path)
    for i in range(6):
        journal.append(_messages(1, i), arrival_s=float(i))
    journal.release(1)
    note = {"decided": {"well-1": 1.0}, "assets": {}}
    journal.checkpoint(note, 1)
    journal.release(4)  # done with, but no checkpoint since: killed here
    journal.close()
    again = Journal(tmp_path)
    assert again.read_checkpoint() == note
    assert [r.seq for r in again.replay()] == [2, 3, 4, 5]


def test_the_newest_checkpoint_is_read_back_at_every_start(tmp_path: Path) -> None:
    """Infinities and NaN come back as they went; the note stays for a start after a kill
    that comes before the next checkpoint."""
    journal = Journal(tmp_path)
    journal.append(_messages(2), arrival_s=1.0)
    journal.append(_messages(2, 2), arrival_s=2.0)
    journal.release(0)
    note = {"decided": {"well-1": 1_700_000_123.5}, "assets": {"pump": [float("-inf"), 1.0]}}
    journal.checkpoint(note, 0)
    journal.close()
    again = Journal(tmp_path)
    assert again.read_checkpoint() == note
    assert [r.seq for r in again.replay()] == [1]
    again.close()
    assert Journal(tmp_path).read_checkpoint() == note


def test_a_checkpoint_whose_records_were_dropped_is_not_believed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Records after the checkpoint dropped past the journal's bound: its states would
    go on across the gap, so every asset starts afresh, with a warning."""
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 100)
    monkeypatch.setattr(journal_module, "MAX_BYTES", 300)
    monkeypatch.setattr(journal_module, "_MAX_SEGMENTS", 3)
    journal = Journal(tmp_path)
    journal.append(_messages(1), arrival_s=0.0)
    journal.checkpoint({"decided": {}, "assets": {}}, -1)
    for i in range(1, 20):
        journal.append(_messages(2, i), arrival_s=float(i))
    assert journal.dropped > 0
    journal.close()
    with caplog.at_level(logging.WARNING, logger="aewatch.journal"):
        assert Journal(tmp_path).read_checkpoint() == {}
    assert "older than the records kept" in caplog.text


def test_an_earlier_versions_stop_note_is_read_once(tmp_path: Path) -> None:
    """A clean stop of a version before checkpoints left ``stop.json``: the first start
    goes on from it and removes it (its checkpoints take over)."""
    note = {"decided": {"well-1": 1_700_000_123.5}, "assets": {}}
    (tmp_path / "stop.json").write_text(json.dumps(note))
    assert Journal(tmp_path).read_checkpoint() == note
    assert not (tmp_path / "stop.json").exists()
    assert Journal(tmp_path).read_checkpoint() == {}


@pytest.mark.parametrize("text", ["[1, 2]\n", "{not json\n", '{"released": "3"}\n'])
def test_an_unreadable_checkpoint_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    (tmp_path / "checkpoint.json").write_text(text)
    with caplog.at_level(logging.WARNING, logger="aewatch.journal"):
        assert Journal(tmp_path).read_checkpoint() == {}
    assert "starts afresh" in caplog.text
