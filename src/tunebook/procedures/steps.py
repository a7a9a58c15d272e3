"""``steps``: an initial ``max_train_steps`` from a constant learning-rate sweep.

The playbook ("Deciding how long to train when training is not compute-bound", "Algorithm for
picking an initial candidate for max_train_steps using a learning rate sweep"): run a constant
learning-rate sweep without regularisation or augmentation, each trial training for the base's
``max_train_steps``; the number of steps the fastest trial needs to (nearly) fit the training
set is the initial guess for ``max_train_steps``. Check that the best learning rate is not at
the edge of the sweep (a sweep of only too-small rates would ask for far too many steps).

Rule (the thresholds are :class:`Steps`' options):

* the training metric is ``train_error`` when the trials report it, else ``train_loss``;
* a trial *fits* the training set at its first evaluation with ``train_error <= error_threshold``
  (default 0.01), or ``train_loss <= loss_fraction * `` its first evaluated value (default 0.01);
* the recommendation is the fastest fitting trial's step, rounded up to a multiple of
  ``eval_every`` (the evaluations only see those steps);
* compute-bound: no trial fits, and the best trial's training metric (by the objective) fell in
  the last quarter of its evaluations by more than ``improving_fraction`` (default 0.1) of its
  whole drop — still improving at the end, so steps, not the data, are the limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tunebook.analysis.checks import run_checks
from tunebook.analysis.data import Curve, ExperimentData, load
from tunebook.core.hparams import REGULARIZERS
from tunebook.experiment import Experiment
from tunebook.procedures.base import Outcome, Procedure, Recommendation, procedure
from tunebook.search.space import Float

__all__ = ["REGULARIZERS", "Steps"]

_CAVEATS = (
    "This estimate assumes a well-chosen learning-rate schedule will be tuned afterwards (with "
    "decay the same result may need fewer steps); it grows when augmentation or regularisers "
    "add gradient noise; when in doubt, train longer, and refine it from the best steps that "
    "retrospective checkpoint selection finds in later studies.")
_COMPUTE_BOUND = (
    "The training set was not fit and training was still improving at the end of the sweep: "
    "this looks compute-bound. The playbook then trains as long as you can afford only for the "
    "final runs, and tunes in rounds of increasing length (round 1: short runs, e.g. ~10% of "
    "production length, to find good model and optimizer hyperparameters; round 2: very few "
    "long runs on the best points). A longer sweep (a larger max_train_steps in the base file) "
    "would measure the steps needed if you can afford it.")
_STUCK = (
    "The training set was not fit and training had stopped improving (saturated: not "
    "compute-bound, yet not fit either): the sweep's assumption "
    "(that a constant learning rate can fit the training set) does not hold here, so it gives "
    "no step count. Look at the model and optimizer first, or choose max_train_steps from the "
    "best steps retrospective checkpoint selection finds.")


@procedure("steps")
class Steps(Procedure):
    """The learning-rate sweep that estimates ``max_train_steps`` (see the module docstring).

    Args:
        trials: learning rates in the sweep (a grid, log scale).
        learning_rate: the learning rate's name in the experiment file.
        regularizers: hyperparameters fixed at 0 in the sweep when the base names them.
        metric: the training metric (default ``train_error`` if reported, else ``train_loss``).
        error_threshold: an error metric fits at or below this.
        loss_fraction: a loss metric fits at or below this fraction of its first value.
        improving_fraction: see the module docstring (compute-bound).
    """

    def __init__(self, trials: int = 8, learning_rate: str = "learning_rate",
                 regularizers: Sequence[str] = REGULARIZERS, metric: str | None = None,
                 error_threshold: float = 0.01, loss_fraction: float = 0.01,
                 improving_fraction: float = 0.1) -> None:
        if trials < 2:
            raise ValueError(f"trials must be >= 2, got {trials}")
        self.trials, self.lr, self.regularizers = trials, learning_rate, tuple(regularizers)
        self.metric, self.error_threshold = metric, error_threshold
        self.loss_fraction, self.improving_fraction = loss_fraction, improving_fraction

    def _lr_range(self, base: Experiment) -> dict[str, Any]:
        """The base's range for the learning rate (log scale), else a decade and a half either
        side of its fixed value, else the built-in workloads' Adam range."""
        hp = base.nuisance.get(self.lr)
        if isinstance(hp, Float) and hp.low > 0:
            return {"type": "float", "low": hp.low, "high": hp.high, "scale": "log"}
        fixed = base.fixed.get(self.lr)
        centre = float(fixed) if isinstance(fixed, int | float) and fixed > 0 else 1e-3
        return {"type": "float", "low": centre / 30, "high": centre * 30, "scale": "log"}

    def plan(self, base: Experiment) -> list[Experiment]:
        """One experiment: a grid over the learning rate, constant schedule, no regularisers;
        scientific hyperparameters at their first value, other nuisance ones at the workload's
        defaults (fix them in the base file to choose)."""
        names = {*base.fixed, *base.nuisance, *base.scientific}
        fixed = {k: v for k, v in base.fixed.items() if k != self.lr}
        fixed.update({k: values[0] for k, values in base.scientific.items() if k != self.lr})
        fixed.update({k: 0 for k in self.regularizers if k in names})
        fixed["schedule"] = "constant"
        doc = {**base.to_dict(), "scientific": {}, "nuisance": {self.lr: self._lr_range(base)},
               "fixed": fixed,
               "search": {"algorithm": "grid", "trials": self.trials, "seed": base.search.seed}}
        doc.pop("nuisance_for", None)
        doc.pop("configs", None)
        doc.pop("follows", None)
        return [Experiment.from_dict({**doc, "name": f"{base.name}.{self.name}.lr-sweep"},
                                     source=base.source, base_dir=base.base_dir)]

    def _metric(self, data: ExperimentData) -> str:
        if self.metric is not None:
            return self.metric
        reported = {m for t in data.trials for m in t.curves}
        return "train_error" if "train_error" in reported else "train_loss"

    def fit_step(self, curve: Curve, metric: str) -> int | None:
        """The first evaluated step at which ``curve`` of ``metric`` fits (module docstring)."""
        c = curve.finite()
        if not c.values:
            return None
        limit = (self.error_threshold if "error" in metric
                 else self.loss_fraction * c.values[0])
        return next((s for s, v in zip(c.steps, c.values, strict=True) if v <= limit), None)

    def still_improving(self, curve: Curve) -> bool:
        """The curve fell over its last quarter by more than ``improving_fraction`` of its
        whole drop (and dropped at all)."""
        c = curve.finite()
        if len(c) < 4:
            return False
        tail = c.values[-max(2, len(c) // 4) - 1]
        total = c.values[0] - c.values[-1]
        return total > 0 and tail - c.values[-1] > self.improving_fraction * total

    def conclude(self, base: Experiment, outcomes: Sequence[Outcome]) -> Recommendation:
        """Find each trial's fit step; recommend the fastest's (module docstring)."""
        (sweep,) = outcomes
        assert sweep.store is not None, "run_procedure passes the store"
        data = load(sweep.store, sweep.experiment.name)
        metric = self._metric(data)
        every = sweep.experiment.eval_every
        per_trial: list[dict[str, Any]] = []
        for t in data.trials:
            curve = t.curves.get(metric, Curve((), ()))
            per_trial.append({"trial": t.label, self.lr: t.params.get(self.lr),
                              "status": t.status, "fit_step": self.fit_step(curve, metric),
                              "final_" + metric: _finite(curve.finite().values[-1:])})
        fitted = [p for p in per_trial if p["fit_step"] is not None]
        sign = 1.0 if data.goal == "minimize" else -1.0
        best = min((t for t in data.trials if t.best_value is not None),
                   key=lambda t: sign * (t.best_value or 0.0), default=None)
        # The learning rate is the sweep's only searched hyperparameter.
        boundary = tuple(run_checks(data, only=["boundary"]))
        evidence: dict[str, Any] = {
            "metric": metric, "threshold": (self.error_threshold if "error" in metric
                                            else f"{self.loss_fraction} x first value"),
            "sweep_max_train_steps": sweep.experiment.max_train_steps, "eval_every": every,
            "trials": per_trial,
            "best_trial": None if best is None else best.label,
            "best_" + self.lr: None if best is None else best.params.get(self.lr),
            "boundary_problem": bool(boundary)}
        values: dict[str, Any] = {}
        if fitted:
            fastest = min(fitted, key=lambda p: int(p["fit_step"]))
            steps = math.ceil(int(fastest["fit_step"]) / every) * every
            values = {"max_train_steps": steps}
            evidence.update(compute_bound=False, fastest=fastest)
            text = (f"max_train_steps = {steps}: the fastest trial of the constant learning-rate "
                    f"sweep ({self.lr} = {fastest[self.lr]:.3g}) fit the training set "
                    f"({metric} at or below the threshold) at step {fastest['fit_step']}; "
                    f"{len(fitted)} of {len(per_trial)} trials fit it within "
                    f"{sweep.experiment.max_train_steps} steps. The workload is not "
                    f"compute-bound: the playbook's policy is to train long enough to reach the "
                    f"best result without waste, never tuning max_train_steps within a study. "
                    + _CAVEATS)
            if int(fastest["fit_step"]) <= every:
                text += (" It fit at the first evaluation, so fewer steps may do: lower "
                         "eval_every in the base file to measure it.")
        else:
            improving = best is not None and self.still_improving(
                best.curves.get(metric, Curve((), ())))
            evidence["compute_bound"] = improving
            reason = (_COMPUTE_BOUND if improving else _STUCK if best is not None else
                      f"No trial reported the objective ({data.metric}): see "
                      f"`tunebook findings {sweep.experiment.name}` for why.")
            text = ("No recommendation: no trial of the constant learning-rate sweep fit the "
                    f"training set within {sweep.experiment.max_train_steps} steps. " + reason)
        if boundary:
            text += (f" Warning: the best {self.lr} is at the edge of the sweep's range, so "
                     "this step count may be misleading (too-small learning rates make training "
                     "look slower): widen the range and run again.")
        return Recommendation(self.name, base.name, text, evidence, boundary,
                              (sweep.experiment.name,), values)


def _finite(values: Sequence[float]) -> float | None:
    return values[0] if values and math.isfinite(values[0]) else None

