"""Shared checkpoints (tunebook.execution.ckptstore) on a real S3 server (moto) and on a second
folder standing in for a shared mount: publish, fetch on another machine, checksums, fencing,
pruning, and the checkpoint root's place in an experiment (its identity, bad values)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from s3server import S3, moto_s3
from tunebook.cli import main
from tunebook.core.paths import TRIAL_LOG, trial_dir
from tunebook.execution.ckptstore import TrialCheckpoints, open_checkpoint_root, prepare_trial
from tunebook.execution.runner import materialize
from tunebook.execution.trial import META_FILE, STATE_FILE, Lost, Trial
from tunebook.execution.worker import WorkerOptions, run_trial
from tunebook.execution.workload import load_workload
from tunebook.experiment import Experiment
from tunebook.store.sql import Store

from conftest import MemorySink, cli_env, write_experiment

EXP, STUDY, INDEX = "exp", "main", 3
TRIAL_KEY = f"{EXP}/{STUDY}/trial-{INDEX:05d}"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with moto_s3() as server:
        yield server


class Place:
    """A checkpoint root of one backend, and ways to look at and damage what it holds."""

    def __init__(self, location: str, names: Callable[[], list[str]],
                 damage: Callable[[str], None]) -> None:
        self.location, self.names, self.damage = location, names, damage

    def shared(self) -> TrialCheckpoints:
        root = open_checkpoint_root(self.location)
        assert root is not None
        return root.trial(EXP, STUDY, INDEX)


def _flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


@pytest.fixture(params=["mount", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    """A second folder (the shared mount) or a bucket of the S3 server."""
    if request.param == "mount":
        mount = tmp_path / "mount"

        def mount_names() -> list[str]:
            folder = mount / TRIAL_KEY
            return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                          if p.is_file()) if folder.exists() else []

        def mount_damage(rel: str) -> None:
            path = mount / TRIAL_KEY / rel
            path.write_bytes(_flip(path.read_bytes()))

        return Place(str(mount), mount_names, mount_damage)
    s3: S3 = request.getfixturevalue("s3")
    bucket = s3.bucket()

    def s3_names() -> list[str]:
        return [k[len(f"ckpt/{TRIAL_KEY}/"):] for k in s3.keys(bucket, f"ckpt/{TRIAL_KEY}/")]

    def s3_damage(rel: str) -> None:
        key = f"ckpt/{TRIAL_KEY}/{rel}"
        body = s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        s3.client.put_object(Bucket=bucket, Key=key, Body=_flip(body))

    return Place(f"s3://{bucket}/ckpt", s3_names, s3_damage)


def _trial(folder: Path, shared: TrialCheckpoints | None, sink: Any = None,
           holds_claim: Callable[[], bool] | None = None, **kw: Any) -> Trial:
    return Trial(hparams={}, max_train_steps=100, eval_every=10, seed=1, dir=folder,
                 sink=sink if sink is not None else MemorySink(), objective="loss",
                 shared=shared, holds_claim=holds_claim, **kw)


def _manifests(place: Place) -> list[int]:
    return [int(n.split("-")[1]) for n in place.names() if n.startswith("manifest-")]


def _state_file(place: Place, step: int) -> str:
    (name,) = [n for n in place.names()
               if n.startswith(f"step-{step:010d}-") and n.endswith("/" + STATE_FILE)]
    return name


def test_a_trial_resumes_from_the_shared_copy_in_another_folder(place: Place,
                                                                tmp_path: Path) -> None:
    shared = place.shared()
    sink = MemorySink()
    first = _trial(tmp_path / "a", shared, sink)
    for step in (10, 20, 30):
        first.report(step, loss=1.0 / step)
        first.save_state(step, {"step": step, "weights": list(range(step))})
    assert sink.checkpoint_steps == [10, 20, 30]
    # Pruned like the local folder (keep_checkpoints 2): manifests and their files.
    assert _manifests(place) == [20, 30]
    prefixes = {n.split("/")[0] for n in place.names() if n.startswith("step-")}
    assert prefixes == {"step-" + n[len("manifest-"):-len(".json")] for n in place.names()
                        if n.startswith("manifest-")}

    logged: list[str] = []
    other = tmp_path / "b" / "checkpoints"
    assert prepare_trial(shared, other, first_start=False, recorded_step=30,
                         log=logged.append) == 30
    second = _trial(tmp_path / "b", shared)
    assert second.start_step == 30
    assert second.load_state() == {"step": 30, "weights": list(range(30))}
    assert any("fetched the checkpoint at step 30" in line for line in logged)

    # The store recorded 20 (30's publication did not finish): 30 is not trusted.
    assert prepare_trial(shared, tmp_path / "c" / "checkpoints", first_start=False,
                         recorded_step=20, log=logged.append) == 20


def test_flipped_bytes_in_the_shared_copy_fall_back_to_the_previous_one(
        place: Place, tmp_path: Path) -> None:
    shared = place.shared()
    first = _trial(tmp_path / "a", shared)
    first.keep_checkpoints = 5
    for step in (10, 20):
        first.save_state(step, {"step": step})
    place.damage(_state_file(place, 20))
    logged: list[str] = []
    assert prepare_trial(shared, tmp_path / "b" / "checkpoints", first_start=False,
                         recorded_step=20, log=logged.append) == 10
    assert any("step 20 is corrupt" in line and "sha256" in line for line in logged)
    # Set aside for inspection, no longer trusted; the next claim goes straight to 10.
    assert _manifests(place) == [10]
    assert any(n.startswith("corrupt-manifest-0000000020-") for n in place.names())
    second = _trial(tmp_path / "b", shared)
    assert second.start_step == 10 and second.load_state() == {"step": 10}


def test_a_worker_that_lost_its_trial_publishes_no_trusted_checkpoint(
        place: Place, tmp_path: Path) -> None:
    exp = Experiment.from_yaml(write_experiment(tmp_path, scientific={}, search={"trials": 1}))
    store = Store.at_root(tmp_path / "r")
    try:
        exp_id = store.register(exp.name, exp.identity(), exp.to_dict(), *materialize(exp))
        row = store.claim(exp_id, "me")
        assert row is not None
        trial = _trial(tmp_path / "a", place.shared(), store, trial_id=row.id,
                       holds_claim=lambda: store.heartbeat(row.id, "me"))
        trial.save_state(10, {"step": 10})
        assert _manifests(place) == [10]
        # The supervisor judged "me" gone and another worker took the trial.
        assert store.release_worker("me", "gone", max_attempts=3) == [row.id]
        assert store.claim(exp_id, "other") is not None
        with pytest.raises(Lost):
            trial.save_state(20, {"step": 20})
        assert _manifests(place) == [10]
        assert not any(n.startswith("step-0000000020-") for n in place.names())
        assert store.trial(row.id).checkpoint_step == 10
    finally:
        store.close()


def _publish(trial: Trial, step: int, value: float) -> None:
    with trial.checkpoint(step, prune=False, checksums=True) as folder:
        (folder / STATE_FILE).write_bytes(b"state %d" % step)
        (folder / META_FILE).write_text(json.dumps(
            {"format": 1, "step": step, "metric": "loss", "goal": "minimize", "value": value}))
    trial.retain_checkpoints(step, keep_latest=1, keep_best=1, metric="loss", goal="minimize")


def test_retention_counts_the_shared_copies_written_on_other_machines(
        place: Place, tmp_path: Path) -> None:
    shared = place.shared()
    first = _trial(tmp_path / "a", shared)
    for step, value in ((10, 0.5), (20, 0.1), (30, 0.4)):
        _publish(first, step, value)
    assert _manifests(place) == [20, 30]  # the best and the latest
    assert prepare_trial(shared, tmp_path / "b" / "checkpoints", first_start=False,
                         recorded_step=30, log=lambda _: None) == 30
    second = _trial(tmp_path / "b", shared)
    _publish(second, 40, 0.3)
    # This machine never held step 20, yet it stays: still the best.
    assert [s for s, _ in second.checkpoints()] == [40]
    assert _manifests(place) == [20, 40]
    _publish(second, 50, 0.05)
    assert _manifests(place) == [50]
    assert all(n.startswith(("manifest-0000000050-", "step-0000000050-"))
               for n in place.names())


def test_a_first_start_sets_aside_what_another_store_left(place: Place, tmp_path: Path) -> None:
    shared = place.shared()
    _trial(tmp_path / "a", shared).save_state(10, {"step": 10})
    logged: list[str] = []
    assert prepare_trial(shared, tmp_path / "b" / "checkpoints", first_start=True,
                         recorded_step=None, log=logged.append) is None
    assert _manifests(place) == []
    assert any(n.startswith("unrecorded-manifest-0000000010-") for n in place.names())


# --------------------------------------------------------------------------- the experiment
def test_checkpoint_root_is_kept_but_not_part_of_the_identity(tmp_path: Path) -> None:
    path = write_experiment(tmp_path)
    plain = Experiment.from_yaml(path)
    doc = {**yaml.safe_load(path.read_text()), "checkpoint_root": "s3://bucket/ckpt"}
    shared = Experiment.from_dict(doc, source="x.yaml")
    assert shared.checkpoint_root == "s3://bucket/ckpt"
    assert shared.to_dict()["checkpoint_root"] == "s3://bucket/ckpt"
    assert Experiment.from_dict(shared.to_dict()).checkpoint_root == "s3://bucket/ckpt"
    assert "checkpoint_root" not in plain.to_dict()
    assert shared.identity() == plain.identity()
    moved = Experiment.from_dict({**doc, "checkpoint_root": "/mnt/other"}, source="x.yaml")
    assert moved.identity() == plain.identity()


BAD_FILE_VALUES = [
    ("foo://bucket/x", "unknown protocol 'foo'"),
    ("memory://x", "protocol 'memory' cannot hold shared checkpoints"),
    ("s3://", "names no bucket"),
    (5, "must be a path or a URL"),
    ("", "must be a path or a URL"),
]


def _bad_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    root = tmp_path / "root"
    assert main(["run", *argv, "--root", str(root), "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tunebook: error: "), err
    assert not root.exists()  # nothing written: no store, no trial folder
    return err


@pytest.mark.parametrize(("value", "why"), BAD_FILE_VALUES, ids=[repr(v) for v, _ in
                                                                 BAD_FILE_VALUES])
def test_a_bad_checkpoint_root_in_the_file_is_one_line_naming_file_key_and_value(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], value: object, why: str) -> None:
    path = write_experiment(tmp_path, checkpoint_root=value)
    err = _bad_run(tmp_path, capsys, str(path))
    assert f"{path}: checkpoint_root: " in err and why in err and repr(value) in err


@pytest.mark.parametrize(("value", "why"), [
    ("foo://bucket/x", "unknown protocol 'foo'"), ("https://host/x", "read-only"),
    ("s3://", "names no bucket")])
def test_a_bad_checkpoint_root_option_is_one_line_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, why: str) -> None:
    err = _bad_run(tmp_path, capsys, str(write_experiment(tmp_path)), "--checkpoint-root",
                   value)
    assert "--checkpoint-root" in err and why in err and repr(value) in err


def test_a_missing_bucket_is_said_before_anything_is_written(
        s3: S3, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_experiment(tmp_path, checkpoint_root="s3://no-such-bucket/ckpt")
    err = _bad_run(tmp_path, capsys, str(path))
    assert f"{path}: checkpoint_root: " in err and "s3://no-such-bucket/ckpt" in err
    assert "bucket 'no-such-bucket' does not exist" in err
    err = _bad_run(tmp_path, capsys, str(write_experiment(tmp_path)), "--checkpoint-root",
                   "s3://no-such-bucket/x")
    assert err.startswith("tunebook: error: --checkpoint-root: ") and "no-such-bucket" in err


UPLOADER = """
import os, sys
from pathlib import Path
from tunebook.execution.ckptstore import open_checkpoint_root
from tunebook.execution.trial import Trial

shared = open_checkpoint_root(sys.argv[1]).trial(*sys.argv[3:5], int(sys.argv[5]))
trial = Trial(hparams={}, max_train_steps=100, eval_every=10, seed=1, dir=Path(sys.argv[2]),
              shared=shared)
trial.save_state(10, {"step": 10})
with trial.checkpoint(20, checksums=True) as folder:
    for i in range(400):
        (folder / f"shard-{i:04d}.bin").write_bytes(os.urandom(16384))
print("published", flush=True)
"""


def test_kill_9_mid_upload_leaves_no_trusted_checkpoint(place: Place, tmp_path: Path) -> None:
    script = tmp_path / "uploader_script.py"
    script.write_text(UPLOADER)
    proc = subprocess.Popen([sys.executable, str(script), place.location, str(tmp_path / "a"),
                             EXP, STUDY, str(INDEX)], env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    uploaded: list[str] = []
    while not uploaded:
        assert proc.poll() is None, f"the upload ended before the kill: {proc.communicate()}"
        assert time.monotonic() < deadline, "step 20's upload never started"
        uploaded = [n for n in place.names() if n.startswith("step-0000000020-")]
        time.sleep(0.005)
    proc.kill()  # SIGKILL, as soon as the first of step 20's files is there
    proc.wait()
    names = place.names()
    partial = [n for n in names if n.startswith("step-0000000020-")]
    assert 1 <= len(partial) < 401, "the kill did not land during the upload"
    assert _manifests(place) == [10]  # step 20 was never trusted
    shared = place.shared()
    assert prepare_trial(shared, tmp_path / "b" / "checkpoints", first_start=False,
                         recorded_step=20, log=lambda _: None) == 10
    # The next publication of the trial clears the orphaned files.
    resumed = _trial(tmp_path / "b", shared)
    assert resumed.load_state() == {"step": 10}
    resumed.save_state(20, {"step": 20})
    assert _manifests(place) == [10, 20]
    assert not any(n.startswith(partial[0].split("/")[0]) for n in place.names())


def test_a_relative_checkpoint_root_is_relative_to_the_experiment_file(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    exp = Experiment.from_yaml(write_experiment(tmp_path / "project", checkpoint_root="ckpt"))
    root = open_checkpoint_root(exp.checkpoint_root, exp.base_dir)
    assert root is not None
    trial = _trial(tmp_path / "a", root.trial(EXP, STUDY, INDEX))
    trial.save_state(10, {"step": 10})
    assert len(list((tmp_path / "project" / "ckpt" / TRIAL_KEY).glob("manifest-*.json"))) == 1


def test_the_option_wins_over_the_file_and_the_run_publishes_there(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_experiment(tmp_path, workload="tunebook.workloads.synthetic:quadratic",
                            scientific={}, search={"trials": 1}, max_train_steps=30,
                            objective={"metric": "val_loss", "goal": "minimize"},
                            checkpoint_root=str(tmp_path / "from-file"))
    option = tmp_path / "from-option"
    assert main(["run", str(path), "--root", str(tmp_path / "root"), "--workers", "0",
                 "--checkpoint-root", str(option), "--quiet", "--no-report"]) == 0
    capsys.readouterr()
    kept = sorted(p.name.split("-")[1] for p in option.rglob("manifest-*.json"))
    assert kept == ["0000000020", "0000000030"]  # save_state keeps the newest two
    assert not (tmp_path / "from-file").exists()


def test_a_fetch_that_fails_leaves_the_worker_running_from_its_own_checkpoints(
        tmp_path: Path) -> None:
    exp = Experiment.from_yaml(write_experiment(
        tmp_path, workload="tunebook.workloads.synthetic:quadratic", scientific={},
        search={"trials": 1}, max_train_steps=30,
        objective={"metric": "val_loss", "goal": "minimize"},
        checkpoint_root=str(tmp_path / "mount")))
    store = Store.at_root(tmp_path / "r")
    try:
        exp_id = store.register(exp.name, exp.identity(), exp.to_dict(), *materialize(exp))
        first = store.claim(exp_id, "gone")
        assert first is not None
        store.set_checkpoint_step(first.id, 10)
        store.release_worker("gone", "its machine vanished", max_attempts=3, interrupted=True)
        row = store.claim(exp_id, "me")
        assert row is not None and not row.first_start and row.checkpoint_step == 10
        # A shared checkpoint the worker cannot read: its file is a folder (an I/O error, not
        # a checksum mismatch).
        shared = open_checkpoint_root(exp.checkpoint_root, exp.base_dir)
        assert shared is not None
        mine = shared.trial(exp.name, row.study, row.index)
        source = tmp_path / "src"
        source.mkdir()
        (source / STATE_FILE).write_bytes(b"x")
        ckpt = mine.publish(10, source)
        assert ckpt is not None
        target = tmp_path / "mount" / mine.key / ckpt.prefix / STATE_FILE
        target.unlink()
        target.mkdir()
        status = run_trial(store, exp, load_workload(exp), row, tmp_path / "r", "me",
                           WorkerOptions(heartbeat_seconds=0.05))
        assert status == "completed"
        log = (trial_dir(tmp_path / "r", exp.name, row.study, row.index) / TRIAL_LOG).read_text()
        assert f"could not fetch from {mine.where} (IsADirectoryError" in log
        assert "start_step=0" in log
        steps = sorted({s for _, s, _, _ in store.measurements([row.id])})
        assert steps == [10, 20, 30]
    finally:
        store.close()


def test_a_publish_lists_the_shared_store_once_and_hashes_each_file_once(
        place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tunebook.core.durable as durable

    shared = place.shared()
    trial = _trial(tmp_path / "a", shared)  # keeps the newest 2
    for step in (10, 20):
        trial.save_state(step, {"step": step, "blob": "x" * 1000})
    listings: list[str] = []
    names = shared.names
    monkeypatch.setattr(shared, "names", lambda: listings.append("ls") or names())
    hashed: list[str] = []
    real = durable.sha256_file
    monkeypatch.setattr(durable, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    trial.save_state(30, {"step": 30, "blob": "y" * 1000})
    assert listings == ["ls"]  # the pruning reads the listing of the publish
    assert sorted(hashed) == sorted(set(hashed))  # the local manifest's digests reused
    assert sorted(_manifests(place)) == [20, 30]
    # What was published verifies where it is fetched.
    other = _trial(tmp_path / "b", shared)
    assert prepare_trial(shared, other.checkpoint_root, first_start=False, recorded_step=30,
                         log=lambda _: None) == 30
    assert other.load_state() == {"step": 30, "blob": "y" * 1000}
