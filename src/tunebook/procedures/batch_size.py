"""The batch-size probe (playbook: "Choosing the batch size").

The playbook: the batch size governs training speed and must not be tuned for validation
performance; use the largest batch size the hardware supports that still raises throughput
(examples per second), as long as the input pipeline is not the bottleneck; and when the batch
size changes, most other hyperparameters (the learning rate, regularisation) must be re-tuned.

Design: each batch size is one short, real experiment through the ordinary runner (so it is
resumable and stored like any run), named ``<base>.batch-size.b<B>``: the base experiment with
``batch_size: B`` and ``step_timing: true`` fixed, no scientific or nuisance hyperparameters (so
its ``repeats`` trials are replicates with their own seeds), ``eval_every = W`` and
``max_train_steps = W + timed_steps``, where the warm-up ``W = max(warmup_steps, timed_steps)``
so that the only evaluation inside the timed updates is the last one (an evaluation and its
checkpoint slow the updates after it down by about 5% on the digits MLP: see
``bench/bench_batch_size.py``). With ``step_timing`` the training helper
(:func:`tunebook.workloads.common.train_classifier`) reports, at each evaluation, the mean update
time, the part of it spent fetching the batch, and the peak memory; any workload may report the
same metrics (``step_seconds``, ``data_seconds``, ``peak_memory_mb``). The probe drops the first
evaluation interval (the warm-up: allocation, caches) and averages the rest weighted by their
number of updates: every size gets the same number of timed updates.

A size **does not fit** when a trial failed out of memory (``MemoryError``,
``torch.cuda.OutOfMemoryError``, a message with "out of memory") or when its peak memory
exceeds ``memory_limit_mb`` (default: half of the machine's RAM on CPU; on a GPU the
allocator's own out-of-memory error is the ceiling). Without explicit sizes the probe starts at
the file's ``batch_size`` and doubles after each size that fits, up to ``max_size``; it stops at
the first size that does not fit or fails.

Conclusion: the throughput gain of each step up is normalised per doubling
(``(T_i / T_{i-1}) ** (1 / log2(B_i / B_{i-1}))``); diminishing returns start at the first
step whose gain is below ``min_gain`` (default 1.5: perfect scaling gives 2). The recommended
batch size is the largest size that fits reached before that point. The input pipeline's share
is ``data_seconds / step_seconds``; a ``batch-size-input-bound`` warning fires when it is above
``input_bound_share`` (default 1/3) at the recommended size.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunebook.analysis.findings import Finding
from tunebook.errors import WorkloadError
from tunebook.experiment import Experiment
from tunebook.procedures.base import Outcome, Procedure, Recommendation, procedure, run_procedure
from tunebook.store.sql import Store

__all__ = ["BatchSize", "default_memory_limit_mb", "run_batch_size"]

SECTION = "Choosing the batch size"
_OOM_MARKERS = ("MemoryError", "OutOfMemoryError", "out of memory")


def default_memory_limit_mb(share: float = 0.5) -> float:
    """``share`` of the machine's physical memory, in MiB (the CPU ceiling's default)."""
    return share * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


@procedure("batch-size")
class BatchSize(Procedure):
    """Measure throughput, the input pipeline's share and fit per batch size; recommend one.

    Args:
        sizes: the sizes to probe (all of them); None: powers of two from the file's
            ``batch_size`` (``start`` when it has none) up to the first failure or ``max_size``.
        warmup_steps: untimed updates before the timed ones, at least ``timed_steps``.
        timed_steps: timed updates per trial (the same for every size).
        repeats: trials per size (replicates), for the spread.
        memory_limit_mb: the CPU ceiling on peak memory growth (None: half of the RAM).
        min_gain: the throughput gain per doubling below which returns are diminishing.
        input_bound_share: the data share above which the workload counts as input-bound.
    """

    def __init__(self, sizes: Sequence[int] | None = None, *, start: int = 16,
                 max_size: int = 4096, warmup_steps: int = 5, timed_steps: int = 20,
                 repeats: int = 3, memory_limit_mb: float | None = None,
                 min_gain: float = 1.5, input_bound_share: float = 1 / 3) -> None:
        if sizes is not None and (not sizes or any(b < 1 for b in sizes)):
            raise ValueError("sizes must be positive integers")
        if min(warmup_steps, timed_steps, repeats, start, max_size) < 1:
            raise ValueError("warmup_steps, timed_steps, repeats, start and max_size must be "
                             ">= 1")
        self.sizes = sorted(set(sizes)) if sizes is not None else None
        self.start, self.max_size = start, max_size
        self.warmup_steps, self.timed_steps, self.repeats = warmup_steps, timed_steps, repeats
        self.memory_limit_mb = (default_memory_limit_mb() if memory_limit_mb is None
                                else memory_limit_mb)
        self.min_gain, self.input_bound_share = min_gain, input_bound_share
        # Sizes whose trials could not start (see run_batch_size): size -> the cause.
        self.failed: dict[int, str] = {}

    # ----------------------------------------------------------------- planning
    def probe(self, base: Experiment, size: int) -> Experiment:
        """The short experiment that measures ``size``."""
        warmup = self.warmup
        data = base.to_dict()
        for key in ("nuisance_for", "configs", "follows"):
            data.pop(key, None)
        return Experiment.from_dict(
            {**data, "name": f"{base.name}.{self.name}.b{size}", "scientific": {},
             "nuisance": {}, "fixed": {**base.fixed, "batch_size": size, "step_timing": True},
             "max_train_steps": warmup + self.timed_steps, "eval_every": warmup,
             "search": {**data.get("search", {}), "trials": self.repeats}},
            source=base.source, base_dir=base.base_dir)

    @property
    def warmup(self) -> int:
        """The untimed updates: ``max(warmup_steps, timed_steps)`` (see the module docstring)."""
        return max(self.warmup_steps, self.timed_steps)

    def plan(self, base: Experiment) -> list[Experiment]:
        """Every size when given; else the first (the file's ``batch_size``)."""
        if self.sizes is not None:
            return [self.probe(base, b) for b in self.sizes if b not in self.failed]
        first = base.fixed.get("batch_size", self.start)
        return [self.probe(base, int(first))]

    def more(self, base: Experiment, outcomes: Sequence[Outcome]) -> list[Experiment]:
        """Double after a size that fits, up to ``max_size`` (only without explicit sizes)."""
        if self.sizes is not None:
            return []
        last = self.measure(outcomes[-1])
        nxt = 2 * last["batch_size"]
        return [self.probe(base, nxt)] if last["fits"] and nxt <= self.max_size else []

    # ----------------------------------------------------------------- measuring
    def measure(self, outcome: Outcome) -> dict[str, Any]:
        """One size's evidence: fits (and why not), throughput mean and spread, data share."""
        size = int(outcome.experiment.fixed["batch_size"])
        out: dict[str, Any] = {"batch_size": size, "fits": True, "reason": None}
        for t in outcome.trials:
            if t.status == "failed":
                error = t.error or ""
                oom = any(m in error for m in _OOM_MARKERS)
                out["fits"] = False
                lines = [s for s in error.splitlines() if s.strip()]
                out["reason"] = "out of memory" if oom else (
                    "failed: " + (lines[-1] if lines else "no error text"))
                return out
        rows = (outcome.store.measurements([t.id for t in outcome.trials])
                if outcome.store is not None else [])
        per_trial: dict[int, dict[str, dict[int, float]]] = {}
        for trial_id, step, metric, value in rows:
            per_trial.setdefault(trial_id, {}).setdefault(metric, {})[step] = value
        rates, shares, peaks = [], [], []
        for curves in per_trial.values():
            steps = sorted(s for s in curves.get("step_seconds", {}) if s > self.warmup)
            if not steps:
                continue
            # Weight each interval by its number of updates (the last may be shorter).
            bounds = [self.warmup, *steps]
            n = [b - a for a, b in itertools.pairwise(bounds)]
            step_s = sum(k * curves["step_seconds"][s] for k, s in zip(n, steps, strict=True))
            data_s = sum(k * curves.get("data_seconds", {}).get(s, 0.0)
                         for k, s in zip(n, steps, strict=True))
            rates.append(size * sum(n) / step_s)
            shares.append(data_s / step_s)
            peaks.append(max(curves.get("peak_memory_mb", {0: 0.0}).values()))
        if not rates:
            out.update(fits=False, reason="no step timings reported (does the workload "
                                          "support step_timing?)")
            return out
        out.update(examples_per_second=statistics.fmean(rates),
                   spread=[min(rates), max(rates)],
                   stdev=statistics.stdev(rates) if len(rates) > 1 else 0.0,
                   data_share=statistics.fmean(shares), peak_memory_mb=max(peaks),
                   repeats=len(rates))
        if max(peaks) > self.memory_limit_mb:
            out.update(fits=False, reason=f"peak memory {max(peaks):.0f} MiB above the "
                                          f"limit {self.memory_limit_mb:.0f} MiB")
        return out

    # ----------------------------------------------------------------- concluding
    def conclude(self, base: Experiment, outcomes: Sequence[Outcome]) -> Recommendation:
        """The largest fitting size before diminishing returns, with the playbook's warnings."""
        sizes = sorted([self.measure(o) for o in outcomes]
                       + [{"batch_size": b, "fits": False, "reason": f"failed: {why}"}
                          for b, why in self.failed.items()], key=lambda s: s["batch_size"])
        fitting = [s for s in sizes if s["fits"]]
        names = tuple(o.experiment.name for o in outcomes)
        findings: list[Finding] = []
        evidence: dict[str, Any] = {"sizes": sizes, "min_gain": self.min_gain,
                                    "timed_steps": self.timed_steps,
                                    "warmup_steps": self.warmup,
                                    "memory_limit_mb": self.memory_limit_mb}
        if not fitting:
            why = sizes[0]["reason"] if sizes else "nothing was probed"
            return Recommendation(self.name, base.name,
                                  f"No batch size probed fits or runs ({why}): try smaller "
                                  "sizes.", evidence, (), names)
        best, diminishing = fitting[0], None
        for prev, cur in itertools.pairwise(fitting):
            doublings = math.log2(cur["batch_size"] / prev["batch_size"])
            cur["gain_per_doubling"] = (cur["examples_per_second"]
                                        / prev["examples_per_second"]) ** (1 / doublings)
            if diminishing is None:
                if cur["gain_per_doubling"] >= self.min_gain:
                    best = cur
                else:
                    diminishing = cur
        b = best["batch_size"]
        evidence.update(recommended=b, diminishing_returns_at=(
            diminishing["batch_size"] if diminishing else None),
            data_share=best["data_share"])
        first_misfit = next((s for s in sizes if not s["fits"]), None)
        text = [f"Use batch_size {b}: {best['examples_per_second']:.4g} examples/s "
                f"(spread {best['spread'][0]:.4g}-{best['spread'][1]:.4g} over "
                f"{best['repeats']} repeats)."]
        if diminishing is not None:
            text.append(f"At {diminishing['batch_size']} throughput rose only "
                        f"{diminishing['gain_per_doubling']:.3f}x per doubling (below "
                        f"{self.min_gain:g}x): diminishing returns.")
        elif first_misfit is not None:
            text.append(f"{first_misfit['batch_size']} does not fit "
                        f"({first_misfit['reason']}).")
        else:
            text.append("Throughput still scaled at the largest size probed; larger sizes "
                        "may be faster.")
        text.append(f"The input pipeline takes {100 * best['data_share']:.0f}% of the step "
                    "time there.")
        if best["data_share"] > self.input_bound_share:
            findings.append(Finding(
                "batch-size-input-bound", "warning",
                f"the input pipeline takes {100 * best['data_share']:.0f}% of the step time at "
                f"batch size {b}: the workload is input-bound", {"data_share": best["data_share"],
                                                               "batch_size": b},
                SECTION, "speed up the input pipeline before choosing a larger batch size"))
        text.append("Do not tune the batch size for validation performance; when it changes, "
                    "re-tune the other hyperparameters (learning rate, momentum, "
                    "regularisation), as the playbook says.")
        findings.append(Finding(
            "batch-size-retune", "info",
            "changing the batch size requires re-tuning most hyperparameters",
            {"batch_size": b}, "Changing the batch size requires re-tuning most "
            "hyperparameters", "re-tune the learning rate and regularisation at the new size"))
        return Recommendation(self.name, base.name, " ".join(text), evidence,
                              tuple(findings), names, {"batch_size": b})


def run_batch_size(proc: BatchSize, base: Experiment, *, root: str | Path = "tunebook",
                   store: str | None = None, **options: Any) -> Recommendation | None:
    """:func:`~tunebook.procedures.run_procedure` for the probe, where a size whose trials
    cannot start (a batch larger than the training set: the workload's ``ValueError``) is
    recorded as "does not fit" and the probe stops below it, instead of the run stopping as
    for a broken workload. A failure of the smallest size is the workload's: it is raised."""
    while True:
        try:
            return run_procedure(proc, base, root=root, store=store, **options)
        except WorkloadError as exc:
            opened = Store(store) if store else Store.at_root(root)
            try:
                size = _failed_size(opened, proc, base)
            finally:
                opened.close()
            smallest = min(proc.sizes) if proc.sizes else int(
                base.fixed.get("batch_size", proc.start))
            if size is None or size <= smallest:
                raise
            proc.failed[size] = str(exc).split(" could not start: ", 1)[-1].split(
                " (the run stopped there", 1)[0]
            if proc.sizes is None:
                proc.max_size = size - 1


def _failed_size(store: Store, proc: BatchSize, base: Experiment) -> int | None:
    """The smallest probed size whose experiment has a failed trial and no completed one."""
    prefix = f"{base.name}.{proc.name}.b"
    for row in sorted((e for e in store.experiments() if e.name.startswith(prefix)),
                      key=lambda e: int(e.name[len(prefix):])):
        statuses = {t.status for t in store.trials(row.id)}
        size = int(row.name[len(prefix):])
        if "failed" in statuses and "completed" not in statuses and size not in proc.failed:
            return size
    return None
