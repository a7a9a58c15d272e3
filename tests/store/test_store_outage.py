"""Store outages, with real servers: a PostgreSQL restart mid-run, an outage longer than the
bound, replies lost after a commit (a TCP relay cuts the connection), a SQLite lock held past the
busy timeout, and a whole ``tunebook run`` across a restart.

The restarts use a dedicated PostgreSQL server (the session's server stays up for other tests).
"""

from __future__ import annotations

import contextlib
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunebook.errors import StoreError
from tunebook.store.sql import Store, StudySpec, sqlite_url

from conftest import cli_env, write_experiment


def _register(store: Store, n: int, studies: int = 1) -> int:
    specs = [StudySpec(f"s{k}", k, {"k": k}, "quasi_random", 0, n) for k in range(studies)]
    trials = {f"s{k}": [(i, {"x": i / 10, "k": k}, 100 * k + i) for i in range(n)]
              for k in range(studies)}
    return store.register("exp", "id1", {"objective": {"metric": "loss", "goal": "minimize"}},
                          specs, trials)


@pytest.fixture(scope="module")
def server(dedicated_postgres: Any) -> Any:
    """A PostgreSQL server of this module's own, which the tests stop and start again."""
    return dedicated_postgres


@contextlib.contextmanager
def outage(srv: Any, after: float, seconds: float) -> Iterator[dict[str, float]]:
    """Stop the server ``after`` seconds from now for ``seconds``, from a background thread;
    on leaving the block the server is up again (whatever happened)."""
    times: dict[str, float] = {}

    def cut() -> None:
        time.sleep(after)
        srv.pause()
        times["down"] = time.monotonic()
        time.sleep(seconds)
        srv.resume()
        times["up"] = time.monotonic()

    thread = threading.Thread(target=cut, daemon=True)
    thread.start()
    try:
        yield times
    finally:
        thread.join()


class Recorder:
    """An ``on_outage`` callback that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def __call__(self, elapsed: float, cause: str) -> None:
        with self.lock:
            self.calls.append((elapsed, cause))


def test_a_postgresql_restart_mid_loop_loses_and_repeats_nothing(server: Any) -> None:
    url = server.new_database()
    heard = Recorder()
    exp_id = _register(Store(url), n=20, studies=2)
    claimed: dict[str, list[int]] = {"w1": [], "w2": []}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        store = Store(url, on_outage=heard)  # one store (engine) per worker, as processes do
        try:
            while (t := store.claim(exp_id, name)) is not None:
                claimed[name].append(t.id)
                assert t.attempts == 1 and t.first_start
                store.add_measurements(t.id, [(s, "loss", t.id + s / 10) for s in (1, 2, 3)])
                assert store.heartbeat(t.id, name)
                assert store.finish(t.id, name, "completed", best_value=float(t.id), best_step=1)
                time.sleep(0.2)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    started = time.monotonic()
    with outage(server, after=1.0, seconds=20.0) as times:
        threads = [threading.Thread(target=worker, args=(name,)) for name in claimed]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    took = time.monotonic() - started
    assert errors == []
    ids = claimed["w1"] + claimed["w2"]
    assert len(ids) == 40 and len(set(ids)) == 40  # every trial, none twice
    store = Store(url)
    assert store.counts(exp_id) == {"completed": 40}
    assert all(t.attempts == 1 for t in store.trials(exp_id))
    rows = store.measurements(experiment_id=exp_id)
    assert len(rows) == 120
    assert sorted(rows) == sorted((i, s, "loss", i + s / 10) for i in ids for s in (1, 2, 3))
    # The workers waited the outage out and said so, with a growing elapsed time.
    assert times["up"] - times["down"] >= 19
    assert took >= 20 and heard.calls
    assert max(e for e, _ in heard.calls) >= 15
    assert all("\n" not in c for _, c in heard.calls)
    print(f"\n20 s outage: loop took {took:.1f} s, {len(heard.calls)} on_outage calls, "
          f"max elapsed {max(e for e, _ in heard.calls):.1f} s, causes "
          f"{sorted({c[:60] for _, c in heard.calls})}")


def test_an_outage_longer_than_the_bound_is_one_line_without_the_password(server: Any) -> None:
    # The test server trusts every local connection: the password is only there to be hidden.
    url = server.new_database().replace("tunebook@", "tunebook:s3cret@")
    heard = Recorder()
    store = Store(url, outage_seconds=3, on_outage=heard)
    exp_id = _register(store, n=2)
    server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            store.counts(exp_id)
        took = time.monotonic() - started
        message = str(info.value)
        assert "\n" not in message and "s3cret" not in message
        assert message.startswith(f"store {store.display_url} unreachable for 3 s: ")
        assert 2.5 <= took < 15
        assert heard.calls and all("s3cret" not in c for _, c in heard.calls)
        # Opening a store nobody reached yet fails at once (most likely a wrong address)...
        started = time.monotonic()
        with pytest.raises(StoreError, match="unreachable: ") as info:
            Store(url)
        assert time.monotonic() - started < 3 and "s3cret" not in str(info.value)
        # ... unless told to wait (worker processes of a run).
        with pytest.raises(StoreError, match="unreachable for 1 s: "):
            Store(url, outage_seconds=1, wait_for_store=True)
    finally:
        server.resume()
    assert store.counts(exp_id) == {"pending": 2}  # the same Store works again


def test_the_outage_bound_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "tunebook.db")
    assert Store(url).outage_seconds == 600.0
    monkeypatch.setenv("TUNEBOOK_STORE_OUTAGE_SECONDS", "12.5")
    assert Store(url).outage_seconds == 12.5
    assert Store(url, outage_seconds=2).outage_seconds == 2.0  # the keyword wins
    monkeypatch.setenv("TUNEBOOK_STORE_OUTAGE_SECONDS", "soon")
    with pytest.raises(StoreError, match="TUNEBOOK_STORE_OUTAGE_SECONDS must be a number"):
        Store(url)


class CuttingRelay:
    """A TCP relay to PostgreSQL that can lose the reply to the next COMMIT.

    Armed, it lets the COMMIT through, waits for the server's answer (so the transaction did
    commit), drops that answer and closes the client's connection: the worst moment for a
    network cut, when the client cannot know whether its transaction happened.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        """Cut the connection that carries the next COMMIT, once committed."""
        self.armed.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            cut = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, cut), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, cut), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, cut: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if b"COMMIT\x00" in data and self.armed.is_set():
                    self.armed.clear()
                    cut.set()  # before sending: the answer cannot overtake the flag
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _down(self, upstream: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if cut.is_set() and b"COMMIT\x00" in data:
                    self.cuts += 1
                    break
                client.sendall(data)
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        """Stop accepting connections."""
        self.listener.close()


def test_lost_replies_after_a_commit_are_not_done_twice(postgres: Any) -> None:
    url = postgres.new_database()
    relay = CuttingRelay(postgres.port)
    heard = Recorder()
    store = Store(url.replace(f":{postgres.port}/", f":{relay.port}/") + "?sslmode=disable",
                  on_outage=heard)
    try:
        exp_id = _register(store, n=3)

        relay.arm()
        claimed = store.claim(exp_id, "w")
        assert relay.cuts == 1 and claimed is not None
        # The claim that committed is the one returned, not a second trial.
        assert (claimed.index, claimed.attempts, claimed.first_start) == (0, 1, True)
        assert [t.id for t in store.trials(exp_id, statuses=["running"])] == [claimed.id]

        relay.arm()
        store.add_measurements(claimed.id, [(1, "loss", 0.5), (2, "loss", 0.25)])
        relay.arm()
        assert store.finish(claimed.id, "w", "completed", best_value=0.25, best_step=2)
        relay.arm()
        run_id = store.start_run(exp_id, "host", 1, {"command": "tunebook run"})
        relay.arm()
        store.add_note(exp_id, "once")
        relay.arm()
        assert _register(store, n=3) == exp_id
        assert relay.cuts == 6 and len(heard.calls) == 6

        done = store.trial(claimed.id)
        assert (done.status, done.attempts, done.best_value) == ("completed", 1, 0.25)
        assert store.counts(exp_id) == {"completed": 1, "pending": 2}
        assert [(s, v) for _, s, _, v in store.measurements([claimed.id])] == [
            (1, 0.5), (2, 0.25)]
        assert [r.id for r in store.runs(exp_id)] == [run_id]
        assert [t for *_, t in store.notes(exp_id)] == ["once"]
        # The next claim takes the next trial: the recovery only finds a *running* trial.
        nxt = store.claim(exp_id, "w")
        assert nxt is not None and nxt.index == 1 and nxt.first_start
    finally:
        store.close()
        relay.close()


_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the SQLite write lock for ``seconds`` (returns once held)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_sqlite_lock_held_past_the_busy_timeout_is_waited_out(tmp_path: Path) -> None:
    path = tmp_path / "tunebook.db"
    heard = Recorder()
    store = Store(sqlite_url(path), busy_timeout_seconds=0.5, on_outage=heard)
    exp_id = _register(store, n=2)
    holder = _hold_lock(path, 3.0)
    started = time.monotonic()
    t = store.claim(exp_id, "w")
    store.add_measurements(t.id if t else 0, [(1, "loss", 1.0)])
    took = time.monotonic() - started
    assert holder.wait(timeout=30) == 0
    assert t is not None and t.index == 0
    assert store.measurements([t.id]) == [(t.id, 1, "loss", 1.0)]
    assert took >= 2.0  # waited for the other process, well past the 0.5 s busy timeout
    assert heard.calls and all("locked" in c for _, c in heard.calls)
    print(f"\nSQLite lock 3 s, busy timeout 0.5 s: write waited {took:.1f} s, "
          f"{len(heard.calls)} retries")

    # With a bound shorter than the lock: one line, saying why.
    holder = _hold_lock(path, 3.0)
    short = Store(sqlite_url(path), busy_timeout_seconds=0.2, outage_seconds=0.5)
    with pytest.raises(StoreError, match=r"unreachable for \d s: database is locked$"):
        short.add_note(exp_id, "never")
    assert holder.wait(timeout=30) == 0
    assert store.notes(exp_id) == []


@pytest.mark.slow
def test_a_run_survives_a_postgresql_restart(server: Any, tmp_path: Path) -> None:
    url = server.new_database()
    # 3 trials per arm, 30 steps of 0.1 s each: two workers are busy for about 10 s.
    path = write_experiment(tmp_path, max_train_steps=30, search={"trials": 3, "seed": 5},
                            fixed={"sleep": 0.1})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunebook.cli", "run", str(path), "--store", url, "--workers",
         "2", "--root", str(tmp_path / "root"), "--no-report"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        watcher = Store(url, wait_for_store=True, outage_seconds=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # mid-run: trials running, some measured
            exp = watcher.get_experiment("toy")
            if exp is not None and watcher.counts(exp.id).get("running", 0) >= 2 and (
                    watcher.measurements(experiment_id=exp.id)):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        watcher.close()
        with outage(server, after=0.0, seconds=20.0):
            pass
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    # The progress line said so while it lasted (the run is not silent in an outage).
    assert "STORE UNREACHABLE" in err and "retrying for up to 600 s" in err, err[-3000:]
    store = Store(url)
    exp_id = store.require_experiment("toy").id
    trials = store.trials(exp_id)
    assert len(trials) == 6
    assert all((t.status, t.attempts) == ("completed", 1) for t in trials), [
        (t.study, t.index, t.status, t.attempts, t.error) for t in trials]
    rows = store.measurements(experiment_id=exp_id)
    keys = [(t, s, m) for t, s, m, _ in rows]
    assert len(keys) == len(set(keys)) == 6 * 3 * 2  # steps 10, 20, 30; loss and other
    assert not any(math.isnan(v) for *_, v in rows)


@pytest.mark.slow
def test_a_run_stops_with_one_line_when_the_store_stays_away(server: Any,
                                                              tmp_path: Path) -> None:
    url = server.new_database()
    path = write_experiment(tmp_path, max_train_steps=40, search={"trials": 2, "seed": 5},
                            fixed={"sleep": 0.1})
    env = dict(cli_env(), TUNEBOOK_STORE_OUTAGE_SECONDS="4")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunebook.cli", "run", str(path), "--store", url, "--workers",
         "2", "--root", str(tmp_path / "root"), "--quiet", "--no-report"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        watcher = Store(url, wait_for_store=True, outage_seconds=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            exp = watcher.get_experiment("toy")
            if exp is not None and watcher.counts(exp.id).get("running", 0) >= 2:
                break
            time.sleep(0.2)
        watcher.close()
        server.pause()
        down = time.monotonic()
        _, err = proc.communicate(timeout=120)
        took = time.monotonic() - down
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.resume()
    assert proc.returncode == 2, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("tunebook: error: ")]
    assert len(errors) == 1 and "unreachable for 4 s" in errors[0], err[-3000:]
    assert "Traceback" not in err
    # The clean-up after giving up does not wait out the bound again for every call.
    assert took < 60, took
    print(f"\nstore gone for good: the run stopped {took:.1f} s after the server did")
    # Back up: the next run resumes everything (nothing recorded was lost).
    again = subprocess.run(
        [sys.executable, "-m", "tunebook.cli", "run", str(path), "--store", url, "--workers",
         "2", "--root", str(tmp_path / "root"), "--quiet", "--no-report"],
        capture_output=True, text=True, env=cli_env(), timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
