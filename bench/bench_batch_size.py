"""The batch-size probe: its own overhead, and its throughput against a plain timed loop.

probe
  ``tunebook.procedures.batch_size.BatchSize`` run by ``run_procedure(workers=0)`` on the
  built-in digits MLP (1 hidden layer of ``width``, Adam, constant rate) at each size: ``warmup``
  untimed updates, ``timed`` timed ones, ``repeats`` trials; its figure is the mean examples/s
  (``train_classifier`` with ``step_timing``: the clock around each update, summed).

plain
  The same arithmetic written out (same model, optimizer, ``BatchOrder``, loss, learning-rate
  setting and unclipped gradient norm as ``train_classifier``'s update), ``warmup``
  updates, then ``timed`` updates between two clock reads: examples/s = ``B * timed / wall``.
  ``repeats`` times; mean. Accuracy = probe / plain - 1.

overhead
  What the timing adds to what it measures: the plain loop with the probe's instrumentation
  (``_StepTimer``'s clock reads and sums, as in ``train_classifier``) vs without, alternated,
  medians of ``repeats``: (instrumented - bare) / bare per update. Target <= 5 %.

    .venv/bin/python bench/bench_batch_size.py [--sizes 16,64,256] [--timed 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from tunebook.experiment import Experiment
from tunebook.procedures import run_procedure
from tunebook.procedures.batch_size import BatchSize
from tunebook.torch import ClipTracker, make_optimizer, set_lr
from tunebook.workloads.common import BatchOrder, _StepTimer, mlp
from tunebook.workloads.digits import load_digits_split

from benchutil import describe_machine, median, print_table

WIDTH = 128


def plain(batch: int, warmup: int, timed: int, *, instrumented: bool = False,
          seed: int = 0) -> float:
    """Seconds per update of the plain loop (optionally with the probe's clock reads)."""
    x, y, _, _ = load_digits_split()
    torch.manual_seed(seed)
    model = mlp(64, 10, 1, WIDTH, "relu")
    opt = make_optimizer("adam", model.parameters(), {})
    order = BatchOrder(len(x), batch, seed)
    clipper = ClipTracker(None, keep_norms=1000)
    timer = _StepTimer(False) if instrumented else None
    start = 0.0
    for step in range(warmup + timed):
        if step == warmup:
            start = time.perf_counter()
        t0 = timer.now() if timer is not None else 0.0
        set_lr(opt, 1e-3)
        index = order(step)
        xb, yb = x[index], y[index]
        if timer is not None:
            timer.data += timer.now() - t0
        loss = F.cross_entropy(model(xb), yb)
        loss.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        clipper.clip(model.parameters())
        opt.step()
        if timer is not None:
            timer.step += timer.now() - t0
            timer.count += 1
    return (time.perf_counter() - start) / timed


def probe(sizes: Sequence[int], warmup: int, timed: int, repeats: int,
          seed: int = 0) -> dict[int, float]:
    """Examples/s per size as the probe reports it."""
    with tempfile.TemporaryDirectory() as tmp:
        doc = {"name": "bench-bs", "workload": "tunebook.workloads.digits:train_mlp",
               "objective": {"metric": "val_error", "goal": "minimize"},
               "max_train_steps": 10, "eval_every": 10,
               "search": {"algorithm": "quasi_random", "trials": 1, "seed": seed},
               "nuisance": {}, "fixed": {"batch_size": sizes[0], "width": WIDTH}}
        (Path(tmp) / "e.yaml").write_text(yaml.safe_dump(doc))
        base = Experiment.from_yaml(Path(tmp) / "e.yaml")
        rec = run_procedure(BatchSize(sizes, warmup_steps=warmup, timed_steps=timed,
                                      repeats=repeats), base, root=Path(tmp) / "root",
                            workers=0)
        assert rec is not None
        return {s["batch_size"]: s["examples_per_second"] for s in rec.evidence["sizes"]}


def main(argv: Sequence[str] | None = None) -> None:
    """Run and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="16,64,256")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--timed", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # a shared machine: one core, steadier timings
    sizes = [int(s) for s in args.sizes.split(",")]
    print(describe_machine())
    runs: dict[int, tuple[list[float], list[float]]] = {b: ([], []) for b in sizes}
    probed: list[dict[int, float]] = []
    # Alternate the probe (one repeat per round) with the plain loops, so that a change in the
    # machine's load hits both alike.
    for r in range(args.repeats):
        probed.append(probe(sizes, args.warmup, args.timed, 1, seed=r))
        for b in sizes:
            runs[b][0].append(plain(b, args.warmup, args.timed, seed=r))
            runs[b][1].append(plain(b, args.warmup, args.timed, instrumented=True, seed=r))
    measured = {b: sum(p[b] for p in probed) / len(probed) for b in sizes}
    rows = []
    for b in sizes:
        bare, inst = runs[b]
        plain_rate = sum(b / t for t in bare) / len(bare)
        overhead = median(inst) / median(bare) - 1
        rows.append([b, f"{measured[b]:.0f}", f"{plain_rate:.0f}",
                     f"{100 * (measured[b] / plain_rate - 1):+.1f}%",
                     f"{1e6 * median(bare):.0f}", f"{100 * overhead:+.2f}%",
                     "yes" if overhead <= 0.05 else "NO"])
    print_table(["batch", "probe ex/s", "plain ex/s", "probe vs plain", "us/update",
                 "overhead", "<= 5%"], rows)


if __name__ == "__main__":
    main()
