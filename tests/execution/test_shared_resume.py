"""A trial killed on one machine resumes at its checkpoint on another, with exact curves.

Two ``tunebook run`` processes share one store and one checkpoint root (moto's S3 server, or a
folder standing in for a shared mount) but have their own ``--root`` (their own local trial
folders: two machines). The first is SIGKILLed, run and worker at once, after its worker has
published a checkpoint (a PyTorch ``Checkpointer`` on a small MLP, through the preemption
test's wrapper, which slows the steps down and records each attempt's start step); the second
fetches the checkpoint the store recorded and finishes the trial. Its curves must be exactly
those of an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from s3server import S3, moto_s3
from tunebook.core.paths import TRIAL_LOG, trial_dir
from tunebook.execution.runner import run
from tunebook.experiment import Experiment
from tunebook.store.sql import Store, sqlite_url

from conftest import cli_env

WORKLOADS = Path(__file__).parent.parent / "workloads"  # preempt_wrapper
NAME = "shared-resume"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with moto_s3() as server:
        yield server


def _experiment(folder: Path, checkpoint_root: str | None) -> Path:
    doc = {
        "name": NAME,
        "goal": "a trial resumes from its shared checkpoint on another machine",
        "workload": "preempt_wrapper:digits_mlp",
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "max_train_steps": 48,
        "eval_every": 6,
        "search": {"algorithm": "quasi_random", "trials": 1, "seed": 0},
        "scientific": {},
        "nuisance": {"learning_rate": {"type": "float", "low": 2e-3, "high": 4e-3,
                                       "scale": "log"}},
        "fixed": {"num_layers": 2, "width": 32, "dropout": 0.1, "schedule": "cosine",
                  "warmup_steps": 6, "batch_size": 32, "sleep": 0.05},
    }
    if checkpoint_root is not None:
        doc["checkpoint_root"] = checkpoint_root
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _cli(path: Path, root: Path, store: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "tunebook.cli", "run", str(path), "--root", str(root),
            "--store", store, "--workers", "1", "--quiet", "--no-report", *extra]


def _env() -> dict[str, str]:
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(WORKLOADS), env["PYTHONPATH"]])
    return env


def _curves(store: Store) -> dict[str, list[tuple[int, float]]]:
    (trial,) = store.trials(store.require_experiment(NAME).id)
    out: dict[str, list[tuple[int, float]]] = {}
    for _, step, metric, value in store.measurements([trial.id]):
        out.setdefault(metric, []).append((step, value))
    return {m: sorted(points) for m, points in out.items()}


@pytest.mark.parametrize("where", ["s3-option", "mount-file"])
def test_sigkilled_trial_resumes_on_another_root_with_exact_curves(
        where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if where == "s3-option":
        s3: S3 = request.getfixturevalue("s3")
        bucket = s3.bucket()
        location, in_file, extra = f"s3://{bucket}/ckpt", None, ["--checkpoint-root",
                                                                 f"s3://{bucket}/ckpt"]

        def manifests() -> list[int]:
            return [int(k.rsplit("/", 1)[1].split("-")[1]) for k in s3.keys(bucket, "ckpt/")
                    if k.rsplit("/", 1)[1].startswith("manifest-")]
    else:
        mount = tmp_path / "mount"
        location, in_file, extra = str(mount), str(mount), []

        def manifests() -> list[int]:
            return [int(p.name.split("-")[1]) for p in mount.rglob("manifest-*.json")]
    path = _experiment(tmp_path / "exp", in_file)
    url = sqlite_url(tmp_path / "shared.db")
    env = _env()

    # Machine A: killed (run and worker together) once a checkpoint past step 12 is shared.
    first = subprocess.Popen(_cli(path, tmp_path / "a", url, extra), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 180
    while not any(step >= 12 for step in manifests()):
        assert first.poll() is None, f"the run ended before the kill: {first.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint was shared in time"
        time.sleep(0.01)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    store = Store(url)
    try:
        (killed,) = store.trials(store.require_experiment(NAME).id)
        assert killed.status == "running" and killed.checkpoint_step is not None
        resume_at = killed.checkpoint_step
        assert 0 < resume_at < 48  # 12, or 6 when the kill beat the store by a moment
    finally:
        store.close()

    # Machine B: another local root, the same store and checkpoint root.
    second = subprocess.run(_cli(path, tmp_path / "b", url, extra), env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    folder = trial_dir(tmp_path / "b", NAME, "main", 0)
    starts = [int(line.split()[1]) for line in (folder / "attempts").read_text().splitlines()]
    assert starts == [resume_at]  # one attempt there, at the shared checkpoint's step
    assert f"fetched the checkpoint at step {resume_at} from {location}" in (
        folder / TRIAL_LOG).read_text()

    # The reference: the same trial, uninterrupted, without shared checkpoints.
    sys.path.insert(0, str(WORKLOADS))
    try:
        reference = run(Experiment.from_yaml(_experiment(tmp_path / "ref", None)),
                        root=tmp_path / "ref-root", workers=0)
    finally:
        sys.path.remove(str(WORKLOADS))
    assert reference.counts == {"completed": 1}
    store, ref_store = Store(url), Store.at_root(tmp_path / "ref-root")
    try:
        (done,) = store.trials(store.require_experiment(NAME).id)
        assert done.status == "completed"
        resumed, expected = _curves(store), _curves(ref_store)
    finally:
        store.close()
        ref_store.close()
    # data_share is a timing of this machine: the same steps, not the same values.
    assert [s for s, _ in resumed.pop("data_share")] == [s for s, _ in
                                                         expected.pop("data_share")]
    assert resumed == expected
    assert max(s for s, _ in expected["val_loss"]) == 48
