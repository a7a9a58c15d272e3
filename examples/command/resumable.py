"""A resumable command workload: linear regression by minibatch SGD, in plain Python.

Run by tunebook (see docs/command-workloads.md), or by hand:
    python resumable.py --learning_rate=0.05 --batch_size=8
"""

import json
import math
import random

from tunebook import script

hp = script.hparams()
lr, batch_size = float(hp["learning_rate"]), int(hp.get("batch_size", 8))
steps, every = script.max_train_steps(default=300), script.eval_every(default=50)


def predict(w: list[float], x: list[float]) -> float:
    return sum(a * b for a, b in zip(w, x, strict=True))


def mse(w: list[float], rows: list[tuple[list[float], float]]) -> float:
    return sum((predict(w, x) - y) ** 2 for x, y in rows) / len(rows)


# A fixed data set (the same in every trial): y = w . x + noise, 8 features.
data_rng = random.Random(0)
true_w = [data_rng.gauss(0, 1) for _ in range(8)]


def example() -> tuple[list[float], float]:
    x = [data_rng.gauss(0, 1) for _ in range(8)]
    return x, predict(true_w, x) + data_rng.gauss(0, 0.1)


train = [example() for _ in range(512)]
val = [example() for _ in range(256)]

# Fresh start, or the state saved in the checkpoint tunebook resumes from.
resume = script.resume_dir()
if resume is None:
    step, w = 0, [0.0] * 8
    rng = random.Random(script.seed())  # the batch order: this trial's seed
else:
    saved = json.loads((resume / "state.json").read_text())
    step, w = saved["step"], saved["w"]
    rng = random.Random()
    version, internal, gauss_next = saved["rng"]
    rng.setstate((version, tuple(internal), gauss_next))

while step < steps:
    step += 1
    grad = [0.0] * 8
    for x, y in rng.sample(train, batch_size):
        err = predict(w, x) - y
        grad = [g + 2 * err * v / batch_size for g, v in zip(grad, x, strict=True)]
    w = [a - lr * g for a, g in zip(w, grad, strict=True)]
    if step % every == 0 or step == steps:
        val_loss = mse(w, val)
        if not math.isfinite(val_loss) or val_loss > 1e6:
            script.infeasible("diverged", step)  # prints the line and exits
        script.report(step, train_loss=mse(w, train), val_loss=val_loss)
        with script.checkpoint(step) as folder:  # announced when the block ends
            (folder / "state.json").write_text(
                json.dumps({"step": step, "w": w, "rng": rng.getstate()}))
