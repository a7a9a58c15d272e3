"""A training program in any language would do: this one is plain Python, no tunebook import.

It reads hyperparameters from --name=value flags and the trial's lengths from environment
variables, and prints one JSON line per evaluation.
"""

import json
import math
import os
import sys

args = dict(arg[2:].split("=", 1) for arg in sys.argv[1:] if arg.startswith("--"))
lr = float(args["learning_rate"])
momentum = float(args["momentum"])
steps = int(os.environ["TUNEBOOK_MAX_TRAIN_STEPS"])
every = int(os.environ["TUNEBOOK_EVAL_EVERY"])

# Gradient descent with heavy-ball momentum on an ill-conditioned quadratic.
curvatures = [1.0, 10.0, 100.0]
w = [1.0, 1.0, 1.0]
v = [0.0, 0.0, 0.0]
for step in range(1, steps + 1):
    for i, h in enumerate(curvatures):
        v[i] = momentum * v[i] + h * w[i]
        w[i] -= lr * v[i]
    loss = 0.5 * sum(h * x * x for h, x in zip(curvatures, w, strict=True))
    if not math.isfinite(loss) or loss > 1e12:
        print(json.dumps({"infeasible": "loss diverged", "step": step}))
        break
    if step % every == 0:
        print(json.dumps({"step": step, "loss": loss, "log10_loss": math.log10(loss + 1e-300)}))
