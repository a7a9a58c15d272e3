"""A command workload for the preemption tests: pure Python, resumable through tunebook.script.

It trains a seeded running sum (``random.Random(TUNEBOOK_SEED)``), reports ``loss`` and
``total`` every ``TUNEBOOK_EVAL_EVERY`` steps and checkpoints its state (the sum and the
generator's state, as JSON) every ``checkpoint_every`` steps. For the tests it also records
every start in ``attempts`` (``<pid> <worker pid> <start step>``), publishes
``<pid> <worker pid> <step>`` in ``progress`` and appends ``<pid> <step>`` to ``steps`` after
every step, sleeping ``sleep`` seconds per step so a kill lands at a step of the test's choosing.
"""

from __future__ import annotations

import json
import math
import os
import random
import time

from tunebook import script

hp = script.hparams()
steps, every = script.max_train_steps(40), script.eval_every(5)
checkpoint_every = int(hp.get("checkpoint_every", every))
sleep = float(hp.get("sleep", 0.0))
rate = float(hp["learning_rate"])

rng = random.Random(script.seed())
step, total = 0, 0.0
resume = script.resume_dir()
if resume is not None:
    state = json.loads((resume / "state.json").read_text())
    version, internal, gauss_next = state["rng"]
    rng.setstate((version, tuple(internal), gauss_next))
    step, total = state["step"], state["total"]
    assert step == script.start_step(), (step, script.start_step())

trial = script.trial_dir() or os.getcwd()
pid, parent = os.getpid(), os.getppid()
with open(os.path.join(trial, "attempts"), "a", encoding="utf-8") as f:
    f.write(f"{pid} {parent} {step}\n")

while step < steps:
    step += 1
    total += rate * rng.gauss(0.0, 1.0) + 0.01
    if sleep:
        time.sleep(sleep)
    tmp = os.path.join(trial, f".progress.{pid}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{pid} {parent} {step}\n")
    os.replace(tmp, os.path.join(trial, "progress"))
    with open(os.path.join(trial, "steps"), "a", encoding="utf-8") as f:
        f.write(f"{pid} {step}\n")
    if step % every == 0 or step == steps:
        script.report(step, loss=math.exp(-abs(total)), total=total)
    if step % checkpoint_every == 0:
        with script.checkpoint(step) as folder:
            (folder / "state.json").write_text(json.dumps(
                {"step": step, "total": total, "rng": rng.getstate()}))
