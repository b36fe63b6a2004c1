"""A local journal of the QoS 1 messages the daemon took, replayed at start (shell).

The broker forgets a QoS 1 message once the daemon acknowledges it, and the daemon holds
a reading in memory for a while after that: in its queue, in a slot waiting for the
rest of its row, in the windows still to come. A SIGKILL there would lose it. So with
``state_dir`` set, the network thread appends every message it queued to this journal
before it acknowledges it, one record per socket read, and the scoring worker
:meth:`Journal.release` s records once their readings are done with (scored, their
outputs acknowledged by the broker, and outside every window still to come). At start
:meth:`Journal.replay` hands back every record not released, oldest first, and the
daemon scores them again.

What the replay rebuilds is decided from a *checkpoint*, so that a restart goes on where
the last process was: every few seconds and at a clean stop the daemon saves each asset's
newest decided window and its decisions' state (:meth:`Journal.checkpoint`), once the
broker has taken every output published until then, with the records released at that
moment. Released records become deletable only through a checkpoint, so the records after
the newest one are always on disk: a start after a clean stop or a kill restores the
checkpoint's states (:meth:`Journal.read_checkpoint`), replays the records after it, and
decides again only the windows after its marks, from the state they were decided from;
outputs the killed process published after its last checkpoint repeat, under the same
alert ids.

Files: ``DIR/checkpoint.json`` (the newest checkpoint; ``stop.json`` is an earlier
version's, read once), ``DIR/released`` (the released seq of the newest checkpoint),
``DIR/SEQ.aej``, each a run of records from the record numbered ``SEQ`` on; a new
segment starts at every start of the daemon and after :data:`SEGMENT_BYTES`. A record is
``length (4) crc32 (4) body``, the body ``seq (8) arrival_s (8) count (4)`` then per
message ``topic length (2) payload length (4) topic payload`` (big-endian). A record cut
short by a kill, or one whose CRC does not match, ends its segment: the rest is cut off
with a warning. Writes go to the kernel at once (``os.write``), which survives a killed
process; a power cut can still lose what the kernel had not written to the disk.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["MAX_BYTES", "SEGMENT_BYTES", "Journal", "Record"]

SEGMENT_BYTES = 1 << 20  # a segment is closed past this size, so released ones can go
MAX_BYTES = 256 << 20  # beyond this, records still needed are dropped, oldest first
_MAX_SEGMENTS = MAX_BYTES // SEGMENT_BYTES  # fewer cannot be over MAX_BYTES (but by a record)
_SUFFIX = ".aej"
_RELEASED = "released"  # the newest checkpoint's released seq: a start replays after it
_CHECKPOINT = "checkpoint.json"  # the newest checkpoint, for the next start
_OLD_STOP_NOTE = "stop.json"  # what a clean stop of an earlier version left
_FRAME = struct.Struct("!II")  # body length, crc32 of the body
_HEAD = struct.Struct("!QdI")  # seq, arrival time, message count
_MESSAGE = struct.Struct("!HI")  # topic length, payload length

log = logging.getLogger("aewatch.journal")


class Record(NamedTuple):
    """One socket read's messages: ``(topic, payload)`` pairs that arrived at ``arrival_s``."""

    seq: int
    arrival_s: float
    messages: list[tuple[str, bytes]]


class Journal:
    """The segments in ``folder``: :meth:`replay` what is there, :meth:`append`, :meth:`release`.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> journal = Journal(folder)
    >>> journal.append([("plant/w1/flow", b"1.5")], arrival_s=10.0)
    0
    >>> journal.close()
    >>> [record.messages for record in Journal(folder).replay()]
    [[('plant/w1/flow', b'1.5')]]

    Raises:
        OSError: the folder cannot be made or read (the caller names the setting).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._segments: list[tuple[int, Path]] = sorted(
            (int(path.stem), path) for path in folder.glob(f"*{_SUFFIX}") if path.stem.isdigit()
        )  # oldest first: (first seq, path)
        # Records up to ``_kept_after`` are done with as of the newest checkpoint (on disk,
        # deletable); up to ``_released`` done with in this process (kept until the next).
        self._kept_after = _read_released(folder / _RELEASED)
        self._released = self._kept_after
        # Never below a segment's name or the released seq: when the last segment is empty
        # (a kill before its first record was whole), records read back cannot tell, and a
        # number reused at or below the released one would be skipped by the next replay.
        self._next_seq = max([self._released + 1, *(first for first, _ in self._segments)])
        # The network thread appends, the scoring worker releases: both change the segments.
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0  # bytes in the open segment
        self.dropped = 0  # records dropped unreleased past MAX_BYTES
        self.appended = 0  # bytes of records written by this process

    def replay(self) -> Iterator[Record]:
        """Every record in the journal not released, oldest first (before :meth:`append`)."""
        for _first, path in list(self._segments):
            for record in _read_segment(path):
                self._next_seq = max(self._next_seq, record.seq + 1)
                if record.seq > self._released:
                    yield record

    @property
    def oldest_seq(self) -> int:
        """The seq of the oldest record still on disk (released or not); records before
        it were released, or dropped past :data:`MAX_BYTES`."""
        with self._lock:
            return self._segments[0][0] if self._segments else self._next_seq

    def append(self, messages: Sequence[tuple[str, bytes]], *, arrival_s: float) -> int:
        """Write one record of ``messages`` to the kernel; its seq number.

        Raises:
            OSError: the write failed (a full disk, say); nothing is taken as written.
        """
        with self._lock:
            return self._append(messages, arrival_s=arrival_s)

    def _append(self, messages: Sequence[tuple[str, bytes]], *, arrival_s: float) -> int:
        if self._fd is None or self._size >= SEGMENT_BYTES:
            self._open_segment()
        seq = self._next_seq
        parts = [_HEAD.pack(seq, arrival_s, len(messages))]
        for topic, payload in messages:
            name = topic.encode()
            parts += (_MESSAGE.pack(len(name), len(payload)), name, payload)
        body = b"".join(parts)
        data = _FRAME.pack(len(body), zlib.crc32(body)) + body
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            self._cut_back()
            raise
        self._size += len(data)
        self.appended += len(data)
        self._next_seq = seq + 1
        return seq

    def _cut_back(self) -> None:
        """Take a record written in part (a full disk) off the open segment's end.

        A replay stops at the first torn record, so whole records appended after one would
        never come back. Should the cut fail too (it only shortens the file, so it hardly
        can), the segment is closed and the next append opens one again.
        """
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            os.close(self._fd)
            self._fd = None

    def release(self, seq: int) -> None:
        """Records up to ``seq`` are done with: the next :meth:`checkpoint` lets them go."""
        with self._lock:
            self._released = max(self._released, seq)

    @property
    def released(self) -> int:
        """The highest seq done with (:meth:`release`); a checkpoint taken now replays the
        records after it."""
        with self._lock:
            return self._released

    def bytes_kept(self) -> int:
        """Bytes in the segments still on disk."""
        return sum(_size(path) for _first, path in list(self._segments))

    def records_kept(self) -> int:
        """Records written and not yet released: what a start now would replay.

        Until :meth:`replay` has read the segments back, those of the newest segment are
        not counted (its first number is all that is known of it).
        """
        with self._lock:
            first = self._segments[0][0] if self._segments else self._next_seq
            return max(0, self._next_seq - max(first, self._kept_after + 1))

    def checkpoint(self, note: Mapping[str, Any], released: int) -> int:
        """Save ``note`` (plain JSON; infinities and NaN as JSON's ``Infinity``, ``NaN``)
        as the newest checkpoint, taken when the records up to ``released`` were done
        with, and let those go: a start from now on replays the records after it.

        The note is written first, through a temporary file and a rename (never half),
        then the released seq; a kill between the two replays more than the note needs,
        which its decided marks skip. Returns the note's size in bytes.

        Raises:
            OSError: the note could not be written; the previous checkpoint stands.
        """
        path = self.folder / _CHECKPOINT
        partial = path.with_suffix(".partial")
        text = _json_in_parts({**note, "released": released}) + "\n"
        partial.write_text(text)
        os.replace(partial, path)
        with self._lock:
            self._kept_after = max(self._kept_after, min(released, self._released))
            self._save_released()
            self._trim()
        return len(text)

    def read_checkpoint(self) -> dict[str, Any]:
        """The newest :meth:`checkpoint`'s note (an earlier version's stop note, once), or
        empty when there is none, it is unreadable, or records it needs are gone (dropped
        past :data:`MAX_BYTES`): then every asset starts afresh (a warning says why)."""
        old = self.folder / _OLD_STOP_NOTE
        path = old if old.exists() else self.folder / _CHECKPOINT
        try:
            text = path.read_text()
        except FileNotFoundError:
            return {}
        if path == old:
            old.unlink(missing_ok=True)  # read once: the checkpoints take over
        try:
            note = json.loads(text)
        except ValueError:
            note = None
        released = None if not isinstance(note, dict) else note.pop("released", self._kept_after)
        if not isinstance(note, dict) or type(released) is not int:
            log.warning(
                "journal: %s is not the checkpoint a run leaves; the replayed readings' "
                "windows are decided again and every asset starts afresh",
                path,
            )
            return {}
        with self._lock:
            first = self._segments[0][0] if self._segments else self._next_seq
        if released < self._kept_after or first > released + 1:
            log.warning(
                "journal: %s is older than the records kept in %s (records after it were "
                "dropped past %d MiB); the replayed readings' windows are decided again and "
                "every asset starts afresh",
                path,
                self.folder,
                MAX_BYTES >> 20,
            )
            return {}
        return note

    def close(self) -> None:
        """Close the open segment (what was appended stays)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _save_released(self) -> None:
        """Write the checkpoint's released seq through a temporary file and a rename."""
        path = self.folder / _RELEASED
        partial = path.with_suffix(".partial")
        partial.write_text(f"{self._kept_after}\n")
        os.replace(partial, path)

    def _open_segment(self) -> None:
        self._close()
        path = self.folder / f"{self._next_seq:016d}{_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0
        if not self._segments or self._segments[-1][1] != path:  # not an empty one reopened
            self._segments.append((self._next_seq, path))
        self._trim()

    def _trim(self) -> None:
        """Delete the segments the newest checkpoint released, and the oldest beyond
        :data:`MAX_BYTES`."""
        segments = self._segments
        # A segment ends where the next starts; the open one (the last) stays.
        while len(segments) > 1 and segments[1][0] - 1 <= self._kept_after:
            _remove(segments.pop(0)[1])
        while len(segments) > _MAX_SEGMENTS and self.bytes_kept() > MAX_BYTES:
            first, path = segments.pop(0)
            lost = segments[0][0] - first
            self.dropped += lost
            _remove(path)
            log.warning(
                "journal %s is over %d MiB: dropped its oldest %d records unreleased (an "
                "asset that went silent part way through a row, or readings dated far "
                "ahead, hold them); a crash now may lose them",
                self.folder,
                MAX_BYTES >> 20,
                lost,
            )


def _json_in_parts(note: Mapping[str, Any]) -> str:
    """``json.dumps(note)``, each item of a mapping inside it encoded on its own: JSON's
    encoder holds the interpreter for the whole of one call, and a checkpoint of a large
    fleet written in one call would hold the scoring worker up as long (tens of ms)."""
    parts = []
    for key, value in note.items():
        if isinstance(value, Mapping):
            inner = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            parts.append(f"{json.dumps(key)}: {{{inner}}}")
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value)}")
    return "{" + ", ".join(parts) + "}"


def _read_segment(path: Path) -> Iterator[Record]:
    """The whole records of one segment; a torn or corrupt tail is cut off with a warning."""
    data = path.read_bytes()
    position = 0
    while position < len(data):
        record = _record_at(data, position)
        if record is None:
            log.warning(
                "journal segment %s: the record at byte %d is cut short or corrupt (a kill "
                "while writing it); the %d bytes from there are dropped",
                path,
                position,
                len(data) - position,
            )
            os.truncate(path, position)
            return
        body_end, found = record
        yield found
        position = body_end


def _record_at(data: bytes, position: int) -> tuple[int, Record] | None:
    """The record at ``position`` and where it ends; None when cut short or corrupt."""
    if position + _FRAME.size > len(data):
        return None
    length, crc = _FRAME.unpack_from(data, position)
    start = position + _FRAME.size
    end = start + length
    if end > len(data) or length < _HEAD.size or zlib.crc32(data[start:end]) != crc:
        return None
    seq, arrival_s, count = _HEAD.unpack_from(data, start)
    cursor = start + _HEAD.size
    messages: list[tuple[str, bytes]] = []
    for _ in range(count):
        if cursor + _MESSAGE.size > end:
            return None
        topic_len, payload_len = _MESSAGE.unpack_from(data, cursor)
        cursor += _MESSAGE.size
        topic_end = cursor + topic_len
        if topic_end + payload_len > end:
            return None
        try:
            topic = data[cursor:topic_end].decode()
        except UnicodeDecodeError:
            return None
        messages.append((topic, data[topic_end : topic_end + payload_len]))
        cursor = topic_end + payload_len
    return end, Record(seq, arrival_s, messages)


def _read_released(path: Path) -> int:
    """The released seq noted in ``path``; -1 (nothing) when there is none or it is unreadable."""
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        return -1
    except ValueError:
        log.warning("journal: %s does not hold a record number; replaying every record", path)
        return -1


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
