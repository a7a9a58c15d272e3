"""Hand-built experiment data for the check tests: trials, curves, finding asserts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from tunebook.analysis.data import Curve, ExperimentData, TrialData
from tunebook.analysis.findings import Finding
from tunebook.experiment import Experiment, Objective, Search
from tunebook.objective import summarize
from tunebook.search.space import Float, Hyperparameter, SearchSpace

SECTIONS = {
    "Extracting insight from experimental results",
    "Identifying bad search space boundaries",
    "Not sampling enough points in the search space",
    "Examining the training curves",
    "Deciding how long to train when training is not compute-bound",
    "Setting up periodic evaluations",
    "How can optimization failures be debugged and mitigated?",
    "Choosing the batch size",
    "How many trials are needed to get good results with quasi-random search?",
    "Choosing a sample for periodic evaluation",
    "Optimizing the input pipeline",
}

DEFAULT_SPACE: dict[str, Hyperparameter] = {
    "lr": Float(1e-4, 1.0, "log"),
    "x": Float(0.0, 1.0),
}


# ----------------------------------------------------------------------------- builders
def tr(values: Sequence[float] | None = None, *, study: str = "main",
       status: str = "completed", params: dict[str, Any] | None = None,
       steps: Sequence[int] | None = None, every: int = 10,
       train: Sequence[float] | None = None, error: str | None = None,
       reason: str | None = None, id: int | None = None,
       extra: dict[str, tuple[Sequence[int], Sequence[float]]] | None = None,
       curves: dict[str, Sequence[float]] | None = None) -> dict[str, Any]:
    """A trial spec for :func:`make_data`: objective values at steps every, 2*every, ...;
    ``extra`` adds other metrics' curves as ``{metric: (steps, values)}``, ``curves`` other
    metrics at the objective's steps (e.g. ``{"val_error_chance": [0.9]}``)."""
    return {"values": values, "study": study, "status": status, "params": params or {},
            "steps": steps, "every": every, "train": train, "error": error, "reason": reason,
            "id": id, "extra": extra or {}, "curves": curves or {}}


def _curve(values: Sequence[float], steps: Sequence[int] | None, every: int) -> Curve:
    s = tuple(steps) if steps is not None else tuple(every * (i + 1) for i in range(len(values)))
    return Curve(s, tuple(float(v) for v in values))


def make_data(trials: Sequence[dict[str, Any]], *, max_train_steps: int = 100,
              eval_every: int = 10, nuisance: dict[str, Hyperparameter] | None = None,
              goal: str = "minimize", metric: str = "loss",
              studies: Sequence[str] | None = None, final: bool = False,
              fixed: dict[str, Any] | None = None,
              scientific: dict[str, Sequence[Any]] | None = None,
              checks: dict[str, dict[str, Any]] | None = None,
              search_trials: int | None = None) -> ExperimentData:
    """ExperimentData built directly: trials get ids/indexes in order, summaries per ``goal``.

    ``fixed``, ``scientific``, ``checks`` and ``search_trials`` (the planned trials per study)
    go to the :class:`Experiment` as they are.
    """
    exp = Experiment(name="t", objective=Objective(metric, goal),  # type: ignore[arg-type]
                     max_train_steps=max_train_steps, eval_every=eval_every,
                     nuisance=SearchSpace(nuisance if nuisance is not None else DEFAULT_SPACE),
                     workload="x:y", fixed=fixed or {},
                     scientific={k: tuple(v) for k, v in (scientific or {}).items()},
                     checks=checks or {},
                     search=Search(trials=search_trials) if search_trials else Search())
    out = []
    per_study: dict[str, int] = {}
    for i, spec in enumerate(trials):
        curves: dict[str, Curve] = {}
        if spec["values"] is not None:
            curves[metric] = _curve(spec["values"], spec["steps"], spec["every"])
        if spec["train"] is not None:
            curves["train_loss"] = _curve(spec["train"], None, spec["every"])
        for name, (steps, values) in spec.get("extra", {}).items():
            curves[name] = _curve(values, steps, spec["every"])
        for name, extra_values in spec.get("curves", {}).items():
            curves[name] = _curve(extra_values, None, spec["every"])
        obj = curves.get(metric)
        s = summarize(zip(obj.steps, obj.values, strict=True) if obj else [],
                      goal)  # type: ignore[arg-type]
        index = per_study.get(spec["study"], 0)
        per_study[spec["study"]] = index + 1
        out.append(TrialData(
            id=spec["id"] if spec["id"] is not None else i + 1, study=spec["study"], index=index,
            status=spec["status"], params=spec["params"], seed=i, best_step=s.best_step,
            best_value=s.best_value, final_step=s.final_step, final_value=s.final_value,
            curves=curves, error=spec["error"], infeasible_reason=spec["reason"]))
    names = list(studies) if studies is not None else list(dict.fromkeys(
        t.study for t in out)) or ["main"]
    return ExperimentData(experiment=exp, metric=metric, goal=goal,  # type: ignore[arg-type]
                          final=final, studies=tuple(names), trials=tuple(out))


def flat(level: float, n: int = 10) -> list[float]:
    """A curve decreasing to ``level`` and staying there (best step reached mid-way)."""
    return [level + 0.5 * max(0, 4 - i) for i in range(n)]


def dumpable(findings: Sequence[Finding]) -> None:
    for f in findings:
        json.dumps(f.as_dict(), allow_nan=False)
        assert f.section in SECTIONS
        assert f.action and f.message
        assert f.severity in ("problem", "warning", "info")


def only(findings: list[Finding]) -> Finding:
    dumpable(findings)
    assert len(findings) == 1, [f.message for f in findings]
    return findings[0]


#: A curve that overfits after step 60, and one that keeps improving.
OVERFIT = [1.0, 0.8, 0.6, 0.5, 0.45, 0.44, 0.5, 0.6, 0.7, 0.8]
GOOD = [1.0, 0.8, 0.6, 0.5, 0.45, 0.44, 0.43, 0.42, 0.41, 0.40]


def healthy_curve(level: float, rng: np.random.Generator, n: int = 20,
                  noise: float = 0.002) -> list[float]:
    """A curve with nothing to report: falls, then levels off at ``level`` by ~40% of training
    and stays flat with independent noise ``noise`` (the best step lands anywhere in the flat
    part). Use with ``every=10`` and ``max_train_steps=10 * n``."""
    t = np.arange(1, n + 1) / n
    return [float(v) for v in level + 0.3 * np.exp(-12 * t) + rng.normal(0, noise, n)]
