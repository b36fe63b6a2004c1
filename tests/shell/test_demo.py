"""``aewatch demo`` end to end: a real mosquitto, the real daemon, and nothing left running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aewatch.cli import main
from aewatch.commands.demo import processes as demo_processes

# Short enough for a test, long enough for the simulator to place all seven faults.
_SHORT = ("--history-hours", "24", "--hours", "6")


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes, other than this one, that contain ``text``.

    The demo's broker and daemon name their config in the output folder, so they show
    up here even if they outlived the demo and were handed to init.
    """
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # it exited while we looked
        line = " ".join(a.decode(errors="replace") for a in args if a)
        if text in line:
            found.append(f"{proc.name}: {line}")
    return found


def _children() -> list[str]:
    """Processes, zombies included, whose parent is this test process."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        if int(stat.rpartition(")")[2].split()[1]) == os.getpid():
            found.append(stat[: stat.rfind(")") + 1])
    return found


@pytest.mark.broker
def test_demo_runs_live_and_cleans_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo-out"
    assert main(["demo", "--out", str(out), *_SHORT]) == 0
    printed = capsys.readouterr().out
    assert "daemon   online after" in printed
    assert re.search(r"published 8640 messages", printed)  # 2160 rows x 4 channels
    assert "said `stopped` on aewatch/status (retained), drained and exited 0" in printed
    summary = re.search(r"daemon   detected (\d) of (\d) faults, (\d+) false alerts?", printed)
    assert summary, printed
    assert int(summary[2]) == 7
    assert int(summary[1]) >= 1  # the noise burst on vibration is plain to see
    assert re.search(r"offline  detected \d of 7 faults", printed)
    # The live daemon and offline scoring decide alike, down to the alert ids.
    assert "match    the daemon raised exactly the" in printed
    for name in ("aewatch.yaml", "daemon.log", "mosquitto.conf", "mosquitto.log"):
        assert (out / name).stat().st_size > 0
    assert "terminating" in (out / "mosquitto.log").read_text()
    assert _processes_mentioning(str(out)) == []
    assert _children() == []


@pytest.mark.broker
def test_ctrl_c_stops_broker_and_daemon(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    # Replayed at 1 000x real time (6 h in about 22 s): the run must still be going when
    # Ctrl-C comes, and as fast as possible it can finish while this test looks at /proc.
    command = [sys.executable, "-m", "aewatch", "demo", "--out", str(out), *_SHORT]
    command += ["--speed", "1000"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as demo:  # leaving the block closes the pipe and waits
        assert demo.stdout is not None
        printed = []
        for line in demo.stdout:
            printed.append(line)
            if line.startswith("daemon   online"):
                for config in ("mosquitto.conf", "aewatch.yaml"):  # broker and daemon run
                    assert len(_processes_mentioning(str(out / config))) == 1
                os.kill(demo.pid, signal.SIGINT)
                break
        else:
            demo.wait()
            pytest.fail("the daemon never came online:\n" + "".join(printed))
        demo.stdout.read()
        assert demo.wait(60) == 130
    assert _processes_mentioning(str(out)) == []
    assert "got SIGTERM; stopping" in (out / "daemon.log").read_text()


def test_without_mosquitto_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo_processes.shutil, "which", lambda _name: None)
    monkeypatch.setattr(demo_processes, "SBIN_MOSQUITTO", tmp_path / "no-mosquitto")
    out = tmp_path / "demo-out"
    assert main(["demo", "--out", str(out)]) == 2
    assert "apt-get install mosquitto" in capsys.readouterr().err
    assert not out.exists()  # it said so before simulating anything
