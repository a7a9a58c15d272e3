"""Local processes: telling a live process from a dead one, and children that die with us."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunebook.core.processes import host_name, pid_alive, worker_alive, worker_name, worker_pid

from conftest import cli_env, write_experiment


def test_this_process_is_alive() -> None:
    assert pid_alive(os.getpid())
    assert pid_alive(os.getppid())


def test_a_reaped_child_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_zombie_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Exited but not reaped: the pid still exists, as a zombie.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_alive(child.pid):
            time.sleep(0.02)
        assert Path(f"/proc/{child.pid}").exists()
        assert not pid_alive(child.pid)
    finally:
        child.wait()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_child_that_asked_dies_with_its_parent(tmp_path: Path) -> None:
    # parent -> child (with die_with_parent): SIGKILL the parent, the child gets SIGTERM.
    marker = tmp_path / "child.pid"
    child_code = ("import os, pathlib, sys, time; "
                  "from tunebook.core.processes import die_with_parent; "
                  f"die_with_parent(); pathlib.Path({str(marker)!r}).write_text(str(os.getpid()));"
                  " time.sleep(60)")
    parent_code = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                   f"{child_code!r}]); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", parent_code], env=cli_env())
    child = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not marker.exists():
            time.sleep(0.02)
        child = int(marker.read_text())
        assert pid_alive(child)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_alive(child):
            time.sleep(0.02)
        assert not pid_alive(child), "the child outlived its parent"
    finally:
        parent.kill()
        parent.wait()
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_command_child_dies_with_its_worker(tmp_path: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    (tmp_path / "sleepy.py").write_text(
        "import os, pathlib, time\n"
        "d = pathlib.Path(os.environ['TUNEBOOK_TRIAL_DIR'])\n"
        "(d / f'child-{os.getpid()}').write_text(str(os.getppid()))\n"
        "time.sleep(60)\n")
    path = write_experiment(tmp_path, workload=None, command="python sleepy.py",
                            scientific={}, search={"trials": 1}, max_train_steps=10,
                            eval_every=10)
    proc = subprocess.Popen([sys.executable, "-m", "tunebook.cli", "run", str(path), "--root",
                             str(tmp_path / "r"), "--workers", "1", "--quiet"], env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        folder = tmp_path / "r/runs/toy/main/trial-00000"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(folder.glob("child-*")):
            time.sleep(0.05)
        marker = next(folder.glob("child-*"))
        child, worker = int(marker.name.split("-")[1]), int(marker.read_text())
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{child}").exists() and \
                "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
            time.sleep(0.05)
        alive = Path(f"/proc/{child}").exists() and \
            "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]
        assert not alive, "the command outlived its SIGKILLed worker"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for marker in (tmp_path / "r").rglob("child-*"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(marker.name.split("-")[1]), signal.SIGKILL)


# ----------------------------------------------------------------------------- worker names
def test_a_worker_name_holds_this_host_and_the_pid() -> None:
    name = worker_name("w1")
    host, ident, label = name.split(":")
    assert host == socket.gethostname() and label == "w1"
    assert worker_pid(name) == int(ident.split(".")[0]) == worker_pid(worker_name("w1"))
    assert worker_alive(name) is True


def test_names_of_other_hosts_or_of_nobody_tell_no_pid() -> None:
    assert worker_pid(None) is None and worker_pid("") is None
    assert worker_pid("elsewhere.invalid:123:w1") is None
    assert worker_pid(f"{socket.gethostname()}:abc:w1") is None
    assert worker_alive("elsewhere.invalid:123:w1") is None


def test_tunebook_host_stands_for_another_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = worker_name("w1")
    monkeypatch.setenv("TUNEBOOK_HOST", "node-b")
    assert host_name() == "node-b"
    theirs = worker_name("w1")
    assert theirs.startswith("node-b:")
    # Seen from "node-b", a worker of the real host is another machine's: only its heartbeat
    # can tell whether it lives.
    assert worker_alive(theirs) is True and worker_alive(mine) is None
    monkeypatch.setenv("TUNEBOOK_HOST", "")
    assert host_name() == socket.gethostname()


def test_the_name_of_a_process_that_ended_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    name = worker_name("gone", child.pid)
    child.wait()
    assert worker_pid(name) == child.pid
    assert worker_alive(name) is False
