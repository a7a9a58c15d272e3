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
is ``data_seconds / step_seconds``; whether the workload is input-bound there is judged by the
registered procedure checks (:mod:`tunebook.analysis.checks.batch_size`), with the pipeline
family's one threshold (``checks: {pipeline: {input_bound_share: ...}}``, default 0.5).

Steps to a result (``steps_to_result=TARGET``; "Choosing the batch size to minimize training
time", Shallue et al. 2018): a second stage (:meth:`BatchSize.more`: resumable) runs at each
size that fits a short search ``<base>.batch-size.steps-b<B>`` over the file's nuisance space
(it must search the learning rate, re-tuned per size), ``result_trials`` quasi-random trials.
A size's steps are its fastest trial's first evaluated step whose objective reaches TARGET in
the objective's direction (None if none does); time = steps x the probe's median step seconds,
cost = time x ``cost_per_hour`` / 3600 (one device per size: proportional to the time). The
recommended size has the least time (or cost); :func:`tunebook.analysis.checks.batch_size.
scaling` gives the perfect-scaling region and where diminishing returns start.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunebook.analysis.checks import procedure_findings
from tunebook.analysis.checks.batch_size import BatchSizeThresholds, scaling
from tunebook.analysis.checks.registry import thresholds_from_config
from tunebook.errors import ConfigError, WorkloadError
from tunebook.experiment import Experiment
from tunebook.procedures.base import Outcome, Procedure, Recommendation, procedure, run_procedure
from tunebook.store.sql import Store, TrialRow

__all__ = ["BatchSize", "default_memory_limit_mb", "run_batch_size"]

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
        steps_to_result: the target value of the objective; None: no steps-to-result stage.
        result_trials: trials of the short tuned search per size (with ``steps_to_result``).
        cost_per_hour: the price of one device-hour; None: recommend by time.
        learning_rate: the name of the learning rate, which the nuisance space must search.
    """

    def __init__(self, sizes: Sequence[int] | None = None, *, start: int = 16,
                 max_size: int = 4096, warmup_steps: int = 5, timed_steps: int = 20,
                 repeats: int = 3, memory_limit_mb: float | None = None,
                 min_gain: float = 1.5, steps_to_result: float | None = None,
                 result_trials: int = 4, cost_per_hour: float | None = None,
                 learning_rate: str = "learning_rate") -> None:
        if sizes is not None and (not sizes or any(b < 1 for b in sizes)):
            raise ValueError("sizes must be positive integers")
        if min(warmup_steps, timed_steps, repeats, start, max_size, result_trials) < 1:
            raise ValueError("warmup_steps, timed_steps, repeats, start, max_size and "
                             "result_trials must be >= 1")
        if steps_to_result is not None and not math.isfinite(steps_to_result):
            raise ValueError(f"steps_to_result must be a finite number, got {steps_to_result}")
        if cost_per_hour is not None and not (math.isfinite(cost_per_hour)
                                              and cost_per_hour > 0):
            raise ValueError(f"cost_per_hour must be a finite number > 0, got {cost_per_hour}")
        self.steps_to_result, self.result_trials = steps_to_result, result_trials
        self.cost_per_hour, self.learning_rate = cost_per_hour, learning_rate
        self.sizes = sorted(set(sizes)) if sizes is not None else None
        self.start, self.max_size = start, max_size
        self.warmup_steps, self.timed_steps, self.repeats = warmup_steps, timed_steps, repeats
        self.memory_limit_mb = (default_memory_limit_mb() if memory_limit_mb is None
                                else memory_limit_mb)
        self.min_gain = min_gain
        # Sizes whose trials could not start (see run_batch_size): size -> the cause.
        self.failed: dict[int, str] = {}

    # ----------------------------------------------------------------- planning
    def _derived(self, base: Experiment, label: str, **changes: Any) -> Experiment:
        """``base`` as one study (no scientific hyperparameters, configs or follows) with
        ``changes``, named ``<base>.batch-size.<label>``."""
        data = base.to_dict()
        for key in ("nuisance_for", "configs", "follows"):
            data.pop(key, None)
        return Experiment.from_dict(
            {**data, "name": f"{base.name}.{self.name}.{label}", "scientific": {}, **changes},
            source=base.source, base_dir=base.base_dir)

    def probe(self, base: Experiment, size: int) -> Experiment:
        """The short experiment that measures ``size``."""
        return self._derived(
            base, f"b{size}", nuisance={},
            fixed={**base.fixed, "batch_size": size, "step_timing": True},
            max_train_steps=self.warmup + self.timed_steps, eval_every=self.warmup,
            search={**base.to_dict()["search"], "trials": self.repeats})

    def search(self, base: Experiment, size: int) -> Experiment:
        """The short tuned search at ``size`` (steps-to-result stage): the file's nuisance
        space, ``result_trials`` trials, the file's ``max_train_steps`` and ``eval_every``."""
        return self._derived(
            base, f"steps-b{size}", fixed={**base.fixed, "batch_size": size},
            nuisance={k: hp.to_json() for k, hp in base.nuisance.items() if k != "batch_size"},
            search={"algorithm": "quasi_random", "trials": self.result_trials,
                    "seed": base.search.seed})

    def _is_search(self, base: Experiment, outcome: Outcome) -> bool:
        return outcome.experiment.name.startswith(f"{base.name}.{self.name}.steps-b")

    @property
    def warmup(self) -> int:
        """The untimed updates: ``max(warmup_steps, timed_steps)`` (see the module docstring)."""
        return max(self.warmup_steps, self.timed_steps)

    def validate(self, base: Experiment) -> None:
        """Raise :class:`ConfigError` when ``base`` cannot be probed as asked: with
        ``steps_to_result``, its nuisance space must search the learning rate (re-tuned at
        each size)."""
        if self.steps_to_result is not None and self.learning_rate not in base.nuisance:
            raise ConfigError(base.source, f"nuisance.{self.learning_rate}",
                              "the steps-to-result search re-tunes the learning rate at each "
                              f"batch size: the nuisance space must search it, got "
                              f"{', '.join(sorted(base.nuisance)) or 'none'}")

    def plan(self, base: Experiment) -> list[Experiment]:
        """Every size when given; else the first (the file's ``batch_size``).

        Raises:
            ConfigError: with ``steps_to_result``, when the file's nuisance space does not
                search the learning rate (it must be re-tuned at each size).
        """
        self.validate(base)
        if self.sizes is not None:
            return [self.probe(base, b) for b in self.sizes if b not in self.failed]
        first = base.fixed.get("batch_size", self.start)
        return [self.probe(base, int(first))]

    def more(self, base: Experiment, outcomes: Sequence[Outcome]) -> list[Experiment]:
        """Double after a size that fits, up to ``max_size`` (only without explicit sizes);
        then, with ``steps_to_result``, one stage of searches at every size that fits."""
        if any(self._is_search(base, o) for o in outcomes):
            return []
        if self.sizes is None:
            last = self.measure(outcomes[-1])
            nxt = 2 * last["batch_size"]
            if last["fits"] and nxt <= self.max_size:
                return [self.probe(base, nxt)]
        if self.steps_to_result is None:
            return []
        fitting = [m["batch_size"] for m in map(self.measure, outcomes) if m["fits"]]
        return [self.search(base, b) for b in sorted(fitting)]

    # ----------------------------------------------------------------- measuring
    def measure(self, outcome: Outcome) -> dict[str, Any]:
        """One size's evidence: fits (and why not), throughput mean and spread, data share."""
        size = int(outcome.experiment.fixed["batch_size"])
        out: dict[str, Any] = {"batch_size": size, "fits": True, "reason": None,
                               "trials": [_ref(t) for t in outcome.trials]}
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
        rates, shares, peaks, step_times = [], [], [], []
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
            step_times.append(step_s / sum(n))
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
                   step_seconds=statistics.median(step_times),
                   repeats=len(rates))
        if max(peaks) > self.memory_limit_mb:
            out.update(fits=False, reason=f"peak memory {max(peaks):.0f} MiB above the "
                                          f"limit {self.memory_limit_mb:.0f} MiB")
        return out

    def steps(self, outcome: Outcome) -> dict[str, Any]:
        """One size's steps to the result (see the module docstring): ``{"batch_size",
        "steps", "best_value", "target", "trials", "trial"}``."""
        exp, target = outcome.experiment, float(self.steps_to_result or 0.0)
        sign = 1.0 if exp.objective.goal == "minimize" else -1.0
        done = [t for t in outcome.trials if t.status == "completed"]
        rows = (outcome.store.measurements([t.id for t in done], metric=exp.objective.metric)
                if outcome.store is not None and done else [])
        curves: dict[int, list[tuple[int, float]]] = {}
        for trial_id, step, _metric, value in rows:
            if math.isfinite(value):
                curves.setdefault(trial_id, []).append((step, sign * value))
        # Per trial: (first step at the target or None, best value, the trial), fastest first.
        scored = []
        for t in done:
            points = sorted(curves.get(t.id, []))
            if points:
                hit = next((st for st, v in points if v <= sign * target), None)
                scored.append((hit, min(v for _, v in points), t))
        reached = sorted((x for x in scored if x[0] is not None), key=lambda x: (x[0], x[1]))
        best = reached[0] if reached else min(scored, key=lambda x: x[1], default=None)
        return {"batch_size": int(exp.fixed["batch_size"]),
                "steps": best[0] if best else None,
                "best_value": sign * best[1] if best else None, "target": target,
                "trials": len(done), "trial": _ref(best[2]) if best else None}

    # ----------------------------------------------------------------- concluding
    def conclude(self, base: Experiment, outcomes: Sequence[Outcome]) -> Recommendation:
        """The largest fitting size before diminishing returns (with ``steps_to_result``: the
        size that reaches the target fastest, or cheapest), with the playbook's warnings."""
        probes = [o for o in outcomes if not self._is_search(base, o)]
        sizes = sorted([self.measure(o) for o in probes]
                       + [{"batch_size": b, "fits": False, "reason": f"failed: {why}"}
                          for b, why in self.failed.items()], key=lambda s: s["batch_size"])
        fitting = [s for s in sizes if s["fits"]]
        names = tuple(o.experiment.name for o in outcomes)
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
        evidence["diminishing_returns_at"] = diminishing["batch_size"] if diminishing else None
        first_misfit = next((s for s in sizes if not s["fits"]), None)
        text = [f"Throughput: {best['batch_size']} is the largest size that still raises it: "
                f"{best['examples_per_second']:.4g} examples/s (spread "
                f"{best['spread'][0]:.4g}-{best['spread'][1]:.4g} over {best['repeats']} "
                "repeats)."]
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
        searches = [o for o in outcomes if self._is_search(base, o)]
        if self.steps_to_result is not None and searches:
            best = self._by_result(base, searches, fitting, evidence, text) or best
        b = best["batch_size"]
        text.insert(0, f"Use batch_size {b}.")
        text.append(f"The input pipeline takes {100 * best['data_share']:.0f}% of the step "
                    "time there.")
        text.append("Do not tune the batch size for validation performance; when it changes, "
                    "re-tune the other hyperparameters (learning rate, momentum, "
                    "regularisation), as the playbook says.")
        # The pipeline family's threshold the input-bound check applies (for the report's line).
        pipeline = thresholds_from_config(base.checks, base.source)["pipeline"]
        evidence.update(recommended=b, data_share=best["data_share"],
                        input_bound_share=pipeline.input_bound_share)
        findings = procedure_findings(self.name, evidence, base.checks, base.source)
        return Recommendation(self.name, base.name, " ".join(text), evidence,
                              tuple(findings), names, {"batch_size": b})

    def _by_result(self, base: Experiment, searches: Sequence[Outcome],
                   fitting: list[dict[str, Any]], evidence: dict[str, Any],
                   text: list[str]) -> dict[str, Any] | None:
        """The steps-to-result part of :meth:`conclude`: fills ``evidence`` and ``text``,
        returns the size (its probe entry) with the least time (or cost) to the target."""
        th: BatchSizeThresholds = thresholds_from_config(base.checks, base.source)["batch_size"]
        rows = sorted((self.steps(o) for o in searches), key=lambda r: r["batch_size"])
        probe = {s["batch_size"]: s for s in fitting}
        shape = scaling(rows, th)
        timed = []
        for r in rows:
            seconds = (r["steps"] * probe[r["batch_size"]]["step_seconds"]
                       if r["steps"] is not None else None)
            cost = (seconds * self.cost_per_hour / 3600
                    if seconds is not None and self.cost_per_hour is not None else None)
            timed.append({"batch_size": r["batch_size"], "steps": r["steps"],
                          "step_seconds": probe[r["batch_size"]]["step_seconds"],
                          "seconds": seconds, "cost": cost, "devices": 1,
                          "fall_per_doubling": shape["fall_per_doubling"].get(
                              str(r["batch_size"]))})
        evidence.update(steps_to_result=rows, time_to_result=timed, scaling=shape,
                        target=self.steps_to_result, cost_per_hour=self.cost_per_hour)
        goal = "<=" if base.objective.goal == "minimize" else ">="
        what = f"{base.objective.metric} {goal} {self.steps_to_result:g}"
        reached = [t for t in timed if t["seconds"] is not None]
        if not reached:
            text.append(f"No size reached {what} within {base.max_train_steps} steps: the "
                        "choice rests on throughput alone.")
            return None
        if shape["diminishing_returns_at"] is not None:
            region = (f"Steps to {what} halve per doubling (within "
                      f"{100 * th.scaling_tolerance:.0f}%) up to {shape['perfect_up_to']}; "
                      f"diminishing returns from {shape['diminishing_returns_at']}")
            if shape["no_reduction_at"] is not None:
                region += f", no reduction from {shape['no_reduction_at']}"
            text.append(region + ".")
        elif len(reached) > 1:
            text.append(f"Steps to {what} halve per doubling (within "
                        f"{100 * th.scaling_tolerance:.0f}%) over every size that reached it.")
        key = "cost" if self.cost_per_hour is not None else "seconds"
        pick = min(reached, key=lambda t: (t[key], t["batch_size"]))
        text.append(f"The training time to {what} is shortest at {pick['batch_size']}: "
                    f"{pick['steps']} steps x {pick['step_seconds']:.3g} s = "
                    f"{pick['seconds']:.3g} s.")
        if self.cost_per_hour is not None:
            text.append(f"Cost to the result: {pick['cost']:.3g} at {self.cost_per_hour:g} per "
                        "device-hour, on one device per size: proportional to the time, so "
                        "the cheapest size is the fastest.")
        evidence["recommended_by"] = key
        return probe[pick["batch_size"]]


def _ref(t: TrialRow) -> dict[str, Any]:
    """How evidence names a trial (as the checks do: ``study #index``)."""
    return {"id": t.id, "label": f"{t.study} #{t.index}"}


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
