"""The QoS 1 journal on real files: what a start replays, what a release deletes, and a
record cut short by a kill."""

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


def test_a_start_replays_what_was_not_released(tmp_path: Path) -> None:
    """Records come back in order with their arrival times; released ones do not."""
    journal = Journal(tmp_path)
    seqs = [journal.append(_messages(3, 3 * i), arrival_s=100.0 + i) for i in range(4)]
    assert seqs == [0, 1, 2, 3]
    journal.release(1)
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
    first.release(2)
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
    assert journal.records_kept() == 2
    journal.close()
    again = Journal(tmp_path)
    replayed = list(again.replay())
    assert again.records_kept() == len(replayed) == 2
    again.release(3)
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


def test_the_note_a_clean_stop_leaves_is_read_back_once(tmp_path: Path) -> None:
    """The next start takes the note (a start after a later kill finds none); infinities
    and NaN come back as they went."""
    journal = Journal(tmp_path)
    note = {"decided": {"well-1": 1_700_000_123.5}, "assets": {"pump": [float("-inf"), 1.0]}}
    journal.save_stop_note(note)
    journal.close()
    again = Journal(tmp_path)
    assert again.take_stop_note() == note
    assert again.take_stop_note() == {}
    assert Journal(tmp_path).take_stop_note() == {}


@pytest.mark.parametrize("text", ["[1, 2]\n", "{not json\n"])
def test_an_unreadable_stop_note_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    (tmp_path / "stop.json").write_text(text)
    with caplog.at_level(logging.WARNING, logger="aewatch.journal"):
        assert Journal(tmp_path).take_stop_note() == {}
    assert "starts afresh" in caplog.text
    assert not (tmp_path / "stop.json").exists()
