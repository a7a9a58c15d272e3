"""Steps per second: the digits MLP trained with tunebook's PyTorch toolkit vs a bare loop.

Target: the toolkit (schedule, clipping, evaluation, checkpoints) costs <= 3% of the steps per
second of a bare PyTorch loop doing the same arithmetic, both measured in the same run.

Both loops train the same MLP (64-256-256-10, ReLU) on scikit-learn's digits (1,198 training and
599 validation examples, the bench's own fixed split), batch 64, from the same
initial weights and the same batch order, with the same optimizer class
(``tunebook.torch.optim.Adam``, the playbook's update rule; ``torch.optim.Adam`` places epsilon
differently). Every ``eval_every`` steps each loop evaluates on the validation set and writes a
checkpoint.

bare (A): hand-written warmup + cosine learning rate put into ``param_groups``;
  ``torch.nn.utils.clip_grad_norm_`` (unclipped norm appended to a list); full-batch
  ``model(x_val)`` evaluation (mean loss and error, ``.item()``); the metrics appended to a list;
  ``torch.save`` of model, optimizer, torch RNG state and data position to one file.

bare, playbook clipping by hand (A'): A with ``clip_grad_norm_`` replaced by the playbook's rule
  written out (per-tensor norms, their norm, rescale only above the threshold): the toolkit's
  clipping arithmetic, without ``clip_grad_norm_``'s overhead. Not part of the target; it shows
  what the toolkit costs against the cheapest hand-written loop.

toolkit (B): ``make_optimizer``, ``schedules.from_hparams`` + ``set_lr``, ``ClipTracker.clip``,
  ``trial.report(step, grad_norm=...)`` every step, ``evaluate`` (one batch of 599: the same
  arithmetic as A; ``--eval-batch`` changes it), ``trial.report`` of the evaluation, and
  ``Checkpointer(trial, keep_best=3).save(..., batches=..., clip=...)``, on a real
  ``tunebook.execution.trial.Trial`` whose measurements go to a real SQLite ``Store`` in a temporary
  folder (so checkpoints also flush measurements, as in a real run).

The clipping threshold is the playbook's: the 90th percentile (``clip_threshold``) of the
unclipped norms of an untimed warm-up run, so about 10% of the steps are clipped.

Timed: from just before the loop (the toolkit's ``Checkpointer.restore`` included) to the end of
the last checkpoint (and the final ``trial.flush``). Model, optimizer, store and trial creation
are not timed. All loops clip the same list of parameters. Repetitions interleave
A A' B A A' B ... after one untimed warm-up of each; the medians are compared, and so are the
paired ratios (each B against the A of the same repetition). Runs use one torch thread.
``--breakdown`` times each part of every loop in 3 extra runs of each (a ``time.perf_counter``
between parts), ``--profile`` runs the toolkit loop once under cProfile and lists tunebook's
functions by cumulative time.

    .venv/bin/python bench/bench_toolkit.py [--steps 3000] [--eval-every 100] [--repeats 7]
        [--wait-quiet S] [--breakdown] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import math
import os
import pstats
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tunebook import schedules
from tunebook.execution.trial import Trial
from tunebook.store.sql import Store, StudySpec
from tunebook.torch import (
    Checkpointer,
    ClipTracker,
    clip_threshold,
    evaluate,
    make_optimizer,
    set_lr,
)
from tunebook.torch.optim import Adam

from benchutil import describe_machine, median, print_table, versions, wait_for_quiet

__all__ = ["ToolkitResult", "bench_toolkit", "main"]

TARGET_OVERHEAD = 0.03
SEED = 0
HPARAMS: dict[str, Any] = {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999,
                           "epsilon": 1e-8, "schedule": "cosine", "warmup_steps": 100,
                           "batch_size": 64}


# --------------------------------------------------------------------------- shared pieces
def load_data() -> tuple[torch.Tensor, ...]:
    """Standardised digits, split once (val 1/3, seed 0): the split ``tunebook.workloads.digits``
    used before it held out a test set, kept so that the measured numbers stay comparable."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = data.data.astype(np.float32), data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_val = int(len(x) * (1 / 3))
    val, train = order[:n_val], order[n_val:]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mean) / std
    return (torch.from_numpy(x[train]), torch.from_numpy(y[train]),
            torch.from_numpy(x[val]), torch.from_numpy(y[val]))


def build_model() -> nn.Module:
    """The MLP, initialised from the fixed seed (same weights in both loops)."""
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10))


class Batches:
    """Shuffled mini-batches reshuffled every epoch; identical in both loops."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.randperm(n, generator=self.generator), 0

    def next(self) -> torch.Tensor:
        """The indices of the next batch."""
        if self.pos + self.batch_size > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> dict[str, Any]:
        """The data position."""
        return {"generator": self.generator.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the data position."""
        self.generator.set_state(state["generator"])
        self.perm, self.pos = state["perm"], state["pos"]


class Clock:
    """Accumulates the time between :meth:`lap` calls under the lap's name (for --breakdown)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        """Charge the time since the previous lap to ``name``."""
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now


@dataclass
class LoopRun:
    """One timed training run."""

    steps: int
    seconds: float
    history: list[tuple[int, float, float]]  # (step, val_loss, val_error)
    norms: list[float]
    sections: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Steps per second."""
        return self.steps / self.seconds


# --------------------------------------------------------------------------- A: bare loop
def _bare_lr(step: int, total: int) -> float:
    """Linear warmup from 0, then cosine decay to 0, written out by hand."""
    base, warm = float(HPARAMS["learning_rate"]), int(HPARAMS["warmup_steps"])
    if step < warm:
        return base * step / warm
    decay = total - warm
    return base * 0.5 * (1.0 + math.cos(math.pi * min(step - warm, decay) / decay))


def _manual_clip(params: Sequence[torch.Tensor], max_norm: float) -> float:
    """The playbook's rule written out: global L2 norm, rescale only above the threshold."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = float(torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g) for g in grads])))
    if norm > max_norm and math.isfinite(norm):
        with torch.no_grad():
            for g in grads:
                g.mul_(max_norm / norm)
    return norm


def bare_loop(data: Sequence[torch.Tensor], steps: int, eval_every: int, folder: Path,
              max_norm: float | None, clock: Clock | None = None,
              torch_clip: bool = True) -> LoopRun:
    """A plain PyTorch loop doing the toolkit loop's arithmetic.

    ``torch_clip``: clip with ``torch.nn.utils.clip_grad_norm_`` (the issue's bare loop); with
    False, with :func:`_manual_clip`, the toolkit's own arithmetic written out by hand.
    """
    x_train, y_train, x_val, y_val = data
    model = build_model()
    opt = Adam(model.parameters(), lr=HPARAMS["learning_rate"], beta1=HPARAMS["beta1"],
               beta2=HPARAMS["beta2"], eps=HPARAMS["epsilon"])
    batches = Batches(len(x_train), HPARAMS["batch_size"], SEED)
    clip_to = math.inf if max_norm is None else max_norm
    params = list(model.parameters())
    norms: list[float] = []
    history: list[tuple[int, float, float]] = []
    metrics: list[tuple[int, float, float, float, float]] = []
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if clock is not None:
        clock.last = t0
    for step in range(steps):
        lr = _bare_lr(step, steps)
        for group in opt.param_groups:
            group["lr"] = lr
        if clock is not None:
            clock.lap("learning rate")
        idx = batches.next()
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if clock is not None:
            clock.lap("forward + backward")
        if torch_clip:
            norm = float(torch.nn.utils.clip_grad_norm_(params, clip_to))
        else:
            norm = _manual_clip(params, clip_to)
        if not math.isfinite(norm):
            raise FloatingPointError(f"gradient norm is {norm} at step {step + 1}")
        if clock is not None:
            clock.lap("clip")
        opt.step()
        if clock is not None:
            clock.lap("optimizer step")
        norms.append(norm)
        done = step + 1
        if clock is not None:
            clock.lap("log grad norm")
        if done % eval_every == 0 or done == steps:
            model.eval()
            with torch.no_grad():
                logits = model(x_val)
                val_loss = F.cross_entropy(logits, y_val).item()
                val_error = (logits.argmax(1) != y_val).float().mean().item()
            model.train()
            if clock is not None:
                clock.lap("evaluate")
            history.append((done, val_loss, val_error))
            metrics.append((done, loss.item(), val_loss, val_error, lr))
            if clock is not None:
                clock.lap("report evaluation")
            torch.save({"step": done, "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "rng": torch.get_rng_state(), "batches": batches.state_dict()},
                       folder / "checkpoint.pt")
            if clock is not None:
                clock.lap("checkpoint")
    seconds = time.perf_counter() - t0
    return LoopRun(steps, seconds, history, norms, clock.seconds if clock else {})


# --------------------------------------------------------------------------- B: toolkit loop
def _store_with_trial(root: Path) -> tuple[Store, int]:
    """A fresh SQLite store under ``root`` with one pending trial (measurements need one)."""
    store = Store.at_root(root)
    study = StudySpec("main", 0, {}, "random", 0, 1)
    exp_id = store.register("bench-toolkit", "bench", {}, [study],
                            {"main": [(0, dict(HPARAMS), SEED)]})
    return store, store.trials(exp_id)[0].id


def toolkit_loop(data: Sequence[torch.Tensor], steps: int, eval_every: int, folder: Path,
                 max_norm: float | None, clock: Clock | None = None,
                 eval_batch: int | None = None) -> LoopRun:
    """The same training with tunebook's helpers, on a real Trial and Store."""
    x_train, y_train, x_val, y_val = data
    store, trial_id = _store_with_trial(folder)
    trial = Trial(hparams=HPARAMS, max_train_steps=steps, eval_every=eval_every, seed=SEED,
                  dir=folder / "trial", sink=store, trial_id=trial_id, objective="val_error",
                  goal="minimize")
    hparams = trial.hparams
    batch_size = hparams["batch_size"]
    model = build_model()
    opt = make_optimizer("adam", model.parameters(), hparams)
    schedule = schedules.from_hparams(hparams, trial.max_train_steps)
    clip = ClipTracker(max_norm)
    batches = Batches(len(x_train), batch_size, SEED)
    params = list(model.parameters())  # as in the bare loops
    history: list[tuple[int, float, float]] = []
    eval_size = len(x_val) if eval_batch is None else eval_batch
    t0 = time.perf_counter()
    if clock is not None:
        clock.last = t0
    ckpt = Checkpointer(trial, keep_best=3)
    step = ckpt.restore(model, opt)
    if clock is not None:
        clock.lap("checkpoint")
    while step < trial.max_train_steps:
        lr = schedule(step)
        set_lr(opt, lr)
        if clock is not None:
            clock.lap("learning rate")
        idx = batches.next()
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if clock is not None:
            clock.lap("forward + backward")
        norm = clip.clip(params).norm
        if not math.isfinite(norm):
            raise trial.infeasible(f"gradient norm is {norm}", step + 1)
        if clock is not None:
            clock.lap("clip")
        opt.step()
        if clock is not None:
            clock.lap("optimizer step")
        step += 1
        trial.report(step, grad_norm=norm)
        if clock is not None:
            clock.lap("log grad norm")
        if step % trial.eval_every == 0 or step == trial.max_train_steps:
            val = evaluate(model, (x_val, y_val), eval_size, train_batch_size=batch_size)
            if clock is not None:
                clock.lap("evaluate")
            history.append((step, val["loss"], val["error"]))
            trial.report(step, train_loss=loss.item(), learning_rate=lr,
                         clip_fraction=clip.fraction_clipped, **val.prefixed("val_"))
            if clock is not None:
                clock.lap("report evaluation")
            ckpt.save(step, model, opt, batches=batches, clip=clip)
            if clock is not None:
                clock.lap("checkpoint")
    trial.flush()
    seconds = time.perf_counter() - t0
    if clock is not None:
        clock.lap("checkpoint")
    store.close()
    return LoopRun(steps, seconds, history, clip.norms, clock.seconds if clock else {})


# --------------------------------------------------------------------------- the benchmark
KINDS = ("bare", "bare-manual-clip", "toolkit")
LABELS = {"bare": "bare PyTorch loop (A)",
          "bare-manual-clip": "bare, playbook clipping by hand (A')",
          "toolkit": "tunebook toolkit (B)"}


@dataclass
class ToolkitResult:
    """Everything one benchmark run measured: ``runs[kind]`` in interleaved order."""

    steps: int
    eval_every: int
    max_norm: float
    runs: dict[str, list[LoopRun]]
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)
    profile: list[tuple[str, float, float, int]] = field(default_factory=list)
    eval_batch: int | None = None

    def rate(self, kind: str) -> float:
        """Median steps/s of a loop."""
        return median([r.rate for r in self.runs[kind]])

    def overhead(self, against: str = "bare") -> float:
        """1 - toolkit/bare steps per second, from the medians."""
        return 1.0 - self.rate("toolkit") / self.rate(against)

    def paired_overhead(self, against: str = "bare") -> float:
        """The median of 1 - B/A over the interleaved repetitions."""
        return median([1.0 - b.rate / a.rate for a, b in zip(self.runs[against],
                                                             self.runs["toolkit"], strict=True)])

    @property
    def target_met(self) -> bool:
        """Overhead against the issue's bare loop (A) of at most 3%."""
        return self.overhead() <= TARGET_OVERHEAD

    def max_val_loss_difference(self, against: str = "bare") -> float:
        """Largest |val_loss(A) - val_loss(B)| over the evaluations of the last repetition."""
        a, b = self.runs[against][-1].history, self.runs["toolkit"][-1].history
        assert [s for s, _, _ in a] == [s for s, _, _ in b]
        return max(abs(x[1] - y[1]) for x, y in zip(a, b, strict=True))


def _limit_threads() -> None:
    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def _one(kind: str, data: Sequence[torch.Tensor], steps: int, eval_every: int,
         max_norm: float | None, clock: Clock | None = None,
         eval_batch: int | None = None) -> LoopRun:
    with tempfile.TemporaryDirectory(prefix=f"bench-toolkit-{kind}-") as tmp:
        gc.collect()
        if kind == "toolkit":
            return toolkit_loop(data, steps, eval_every, Path(tmp), max_norm, clock, eval_batch)
        return bare_loop(data, steps, eval_every, Path(tmp), max_norm, clock,
                         torch_clip=kind == "bare")


def _profile_toolkit(data: Sequence[torch.Tensor], steps: int, eval_every: int,
                     max_norm: float, eval_batch: int | None) -> list[tuple[str, float, float,
                                                                            int]]:
    """(function, cumulative s, own s, calls) of tunebook's functions, by cumulative time."""
    prof = cProfile.Profile()
    prof.enable()
    _one("toolkit", data, steps, eval_every, max_norm, eval_batch=eval_batch)
    prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    for (filename, line, name), (_, calls, own, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if f"tunebook{os.sep}" in filename:
            short = filename.split(f"tunebook{os.sep}", 1)[1]
            rows.append((f"{short}:{line} {name}", cum, own, calls))
    return sorted(rows, key=lambda r: -r[1])


def bench_toolkit(steps: int = 3000, eval_every: int = 100, repeats: int = 7,
                  wait_quiet: float = 0.0, breakdown: bool = False, profile: bool = False,
                  eval_batch: int | None = None) -> ToolkitResult:
    """Run the benchmark; see the module docstring."""
    _limit_threads()
    data = load_data()
    # Untimed warm-up of every loop; the toolkit one only measures the gradient norm, and the
    # playbook's threshold (90th percentile of the unclipped norms) is used from then on.
    pilot = _one("toolkit", data, steps, eval_every, None, eval_batch=eval_batch)
    max_norm = clip_threshold(pilot.norms, 0.9)
    for kind in KINDS[:-1]:
        _one(kind, data, steps, eval_every, max_norm)
    runs: dict[str, list[LoopRun]] = {kind: [] for kind in KINDS}
    for _ in range(repeats):
        if wait_quiet:
            wait_for_quiet(wait_quiet)
        for kind in KINDS:
            runs[kind].append(_one(kind, data, steps, eval_every, max_norm,
                                   eval_batch=eval_batch))
    res = ToolkitResult(steps, eval_every, max_norm, runs, eval_batch=eval_batch)
    if breakdown:
        clocked: dict[str, list[LoopRun]] = {kind: [] for kind in KINDS}
        for _ in range(3):
            for kind in KINDS:
                clocked[kind].append(_one(kind, data, steps, eval_every, max_norm, Clock(),
                                          eval_batch))
        for kind, done in clocked.items():
            names = sorted({n for r in done for n in r.sections})
            res.breakdown[kind] = {n: median([r.sections.get(n, 0.0) for r in done])
                                   for n in names}
    if profile:
        res.profile = _profile_toolkit(data, steps, eval_every, max_norm, eval_batch)
    return res


def print_toolkit(res: ToolkitResult) -> None:
    """Print the results table (and the breakdown and profile when measured)."""
    eval_desc = ("one batch of 599 (same arithmetic as bare)" if res.eval_batch is None
                 else f"padded batches of {res.eval_batch}")
    print(f"{res.steps} steps, evaluation + checkpoint every {res.eval_every} steps, "
          f"clip threshold {res.max_norm:.4g} (90th percentile of the pilot's norms), "
          f"toolkit evaluation: {eval_desc}, {len(res.runs['toolkit'])} interleaved repetitions")
    rows: list[list[object]] = []
    for kind in KINDS:
        runs = res.runs[kind]
        rates = [r.rate for r in runs]
        vs = ("" if kind == "toolkit" else
              f"{res.overhead(kind):+.2%} ({res.paired_overhead(kind):+.2%})")
        rows.append([LABELS[kind], f"{median(rates):,.0f}", f"{min(rates):,.0f}-{max(rates):,.0f}",
                     f"{median([r.seconds for r in runs]) / res.steps * 1e3:.3f}",
                     f"{runs[-1].history[-1][2]:.4f}", vs])
    print_table(["loop", "steps/s (median)", "range", "ms/step", "final val_error",
                 "B overhead (paired)"], rows)
    print("overhead = 1 - B/A steps per second, from the medians (median of the per-repetition "
          "ratios); max |val_loss(A) - val_loss(B)| = "
          f"{res.max_val_loss_difference():.2e}, A' vs B: "
          f"{res.max_val_loss_difference('bare-manual-clip'):.2e}")
    verdict = "MET" if res.target_met else "MISSED"
    print(f"target: toolkit <= {TARGET_OVERHEAD:.0%} slower than the bare loop (A): {verdict} "
          f"({res.overhead():+.2%})")
    if res.breakdown:
        present = {n for parts in res.breakdown.values() for n in parts}
        order = ["forward + backward", "optimizer step", "learning rate", "clip",
                 "log grad norm", "evaluate", "report evaluation", "checkpoint"]
        names = [n for n in order if n in present] + sorted(present - set(order))
        print(f"\nbreakdown (median of 3 instrumented runs of each loop; ms per {res.steps} steps; "
              "last column: B - A' in µs per step):")
        brows = []
        parts = [res.breakdown.get(kind, {}) for kind in KINDS]
        for n in [*names, "total"]:
            a, a2, b = (sum(p.values()) if n == "total" else p.get(n, 0.0) for p in parts)
            brows.append([n, f"{a * 1e3:.1f}", f"{a2 * 1e3:.1f}", f"{b * 1e3:.1f}",
                          f"{(b - a2) / res.steps * 1e6:+.2f}"])
        print_table(["part", "A ms", "A' ms", "B ms", "B - A' µs/step"], brows)
    if res.profile:
        print("\ntunebook functions under cProfile (one toolkit run; profiling inflates "
              "Python-heavy code):")
        print_table(["function", "cumulative ms", "own ms", "calls"],
                    [[n, f"{c * 1e3:.1f}", f"{o * 1e3:.1f}", k] for n, c, o, k in
                     res.profile[:15]])


def main(argv: Sequence[str] | None = None) -> ToolkitResult:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000, help="training steps per run")
    p.add_argument("--eval-every", type=int, default=100,
                   help="evaluate and checkpoint every this many steps")
    p.add_argument("--repeats", type=int, default=7, help="interleaved A/B pairs (medians)")
    p.add_argument("--eval-batch", type=int, default=None,
                   help="toolkit evaluation batch size (default: the whole validation set, "
                        "one batch, the bare loop's arithmetic)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each pair, wait up to S seconds for idle CPUs")
    p.add_argument("--breakdown", action="store_true",
                   help="also time each part of both loops (3 extra runs of each)")
    p.add_argument("--profile", action="store_true",
                   help="also profile one toolkit run and list tunebook's functions")
    args = p.parse_args(argv)
    print(f"# bench_toolkit: {describe_machine()}")
    print("# " + ", ".join(f"{k} {v}" for k, v in versions().items())
          + f", torch {torch.__version__}, 1 thread")
    res = bench_toolkit(args.steps, args.eval_every, args.repeats, args.wait_quiet,
                        args.breakdown, args.profile, args.eval_batch)
    print_toolkit(res)
    return res


if __name__ == "__main__":
    main()
