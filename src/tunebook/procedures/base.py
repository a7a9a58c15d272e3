"""The shape of a procedure: plan experiments from a base, run them, conclude, record."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tunebook.analysis.findings import Finding
from tunebook.core.paths import slug
from tunebook.core.registry import Registry
from tunebook.execution.runner import RunResult, run
from tunebook.experiment import Experiment
from tunebook.store.api import StoreAPI
from tunebook.store.sql import Store, TrialRow

__all__ = [
    "Outcome",
    "Procedure",
    "Recommendation",
    "make_procedure",
    "procedure",
    "procedure_names",
    "recommendations",
    "run_procedure",
]


@dataclass(frozen=True)
class Recommendation:
    """What a procedure concludes, and why.

    Attributes:
        procedure: the procedure's registered name.
        experiment: the base experiment's name (what the recommendation is about).
        text: the advice, for a person (one short paragraph).
        evidence: the numbers it rests on, JSON-serialisable (no NaN).
        findings: checks that fired on the way (they qualify the advice).
        experiments: the experiments the procedure ran, in plan order.
        values: the recommendation for scripts, in the experiment file's own names
            (``{"max_train_steps": 1200}``, ``{"warmup_steps": 100}``), JSON-serialisable;
            empty when the procedure recommends no value.
    """

    procedure: str
    experiment: str
    text: str
    evidence: dict[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    experiments: tuple[str, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (what the store keeps)."""
        return {"procedure": self.procedure, "experiment": self.experiment, "text": self.text,
                "evidence": self.evidence, "findings": [f.as_dict() for f in self.findings],
                "experiments": list(self.experiments), "values": self.values}

    def as_json(self) -> dict[str, Any]:
        """What a procedure command prints with ``--format json``: ``{"recommendation": {...},
        "evidence": {...}}``, the recommendation in the experiment's own names plus the text,
        so that scripts can chain procedures."""
        return {"recommendation": {**self.values, "text": self.text,
                                   "procedure": self.procedure, "experiment": self.experiment},
                "evidence": {**self.evidence, "experiments": list(self.experiments),
                             "findings": [f.as_dict() for f in self.findings]}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recommendation:
        """The inverse of :meth:`as_dict`."""
        return cls(data["procedure"], data["experiment"], data["text"],
                   dict(data.get("evidence", {})),
                   tuple(Finding(**f) for f in data.get("findings", ())),
                   tuple(data.get("experiments", ())), dict(data.get("values", {})))

    def markdown(self) -> str:
        """The recommendation as a Markdown page."""
        lines = [f"# {self.procedure}: {self.experiment}", "", self.text, "", "## Evidence", ""]
        lines += [f"- {k}: {json.dumps(v)}" for k, v in self.evidence.items()] or ["- none"]
        if self.findings:
            lines += ["", "## Findings", ""]
            lines += [f"- **{f.severity}** {f.message}" + (f" ({f.action})" if f.action else "")
                      for f in self.findings]
        lines += ["", "## Experiments run", ""] + [f"- {name}" for name in self.experiments]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Outcome:
    """One planned experiment after its run.

    Attributes:
        trials: its trials as stored, by study and index.
        best: its best trial by the experiment's objective (None if no trial reported it).
        store: the store it ran in, open while the procedure plans more and concludes (to read
            curves: ``tunebook.analysis.data.load(outcome.store, outcome.experiment.name)``).
    """

    experiment: Experiment
    result: RunResult
    trials: tuple[TrialRow, ...]
    best: TrialRow | None
    store: StoreAPI | None = field(default=None, compare=False, repr=False)


class Procedure(ABC):
    """A recipe over several experiments; subclasses are registered with :func:`procedure`."""

    name: ClassVar[str]

    @abstractmethod
    def plan(self, base: Experiment) -> list[Experiment]:
        """The experiments to run, built from ``base`` (each with a name of its own)."""

    def more(self, base: Experiment, outcomes: Sequence[Outcome]) -> list[Experiment]:
        """Further experiments, planned from the outcomes so far (every experiment run yet, in
        order); called after each stage until it returns none. Default: none (everything is
        planned up front). A procedure whose next step depends on a result (a warmup study
        only when the sweep found instability) returns it here; it must be a pure function of
        ``base`` and ``outcomes``, so that a resumed procedure plans the same experiments."""
        return []

    @abstractmethod
    def conclude(self, base: Experiment, outcomes: Sequence[Outcome]) -> Recommendation:
        """The recommendation, from the outcomes of every experiment run (:meth:`plan`'s, then
        :meth:`more`'s, in order)."""

    def variant(self, base: Experiment, label: str, **changes: Any) -> Experiment:
        """``base`` with some top-level keys changed, named ``<base>.<procedure>.<label>``.

        Built through the experiment file's validation, like any experiment.
        """
        return Experiment.from_dict(
            {**base.to_dict(), **changes, "name": f"{base.name}.{self.name}.{label}"},
            source=base.source, base_dir=base.base_dir)


# ``@procedure("name")`` registers a Procedure subclass under that name.
procedure: Registry[type[Procedure]] = Registry("procedure")


def procedure_names() -> tuple[str, ...]:
    """The registered procedure names, in registration order."""
    return procedure.names()


def make_procedure(name: str) -> Procedure:
    """A new instance of the procedure registered as ``name``."""
    return procedure.get(name)()


def recommendations(store: StoreAPI, experiment: str,
                    procedure: str | None = None) -> list[Recommendation]:
    """The recommendations stored for base experiment ``experiment``, oldest first."""
    return [Recommendation.from_dict(r.payload)
            for r in store.recommendations(experiment, procedure)]


def run_procedure(proc: Procedure | str, base: Experiment, *, root: str | Path = "tunebook",
                  store: StoreAPI | str | None = None, workers: int = 1,
                  **run_options: Any) -> Recommendation | None:
    """Plan, run every planned experiment (resuming any a previous call left), plan more from
    the outcomes (:meth:`Procedure.more`) until nothing is left, conclude.

    The recommendation is stored against ``base.name`` and written to
    ``<root>/reports/<base>--<procedure>.md``. Returns None, concluding nothing, when a run is
    interrupted (Ctrl-C, SIGTERM): calling again resumes where it stopped. ``run_options``
    go to :func:`tunebook.execution.runner.run` (``max_attempts``, ``progress``...).
    """
    proc = make_procedure(proc) if isinstance(proc, str) else proc
    owned = not isinstance(store, Store)
    opened = (store if isinstance(store, Store) else Store(store) if isinstance(store, str)
              else Store.at_root(root))
    try:
        outcomes: list[Outcome] = []
        stage = proc.plan(base)
        while stage:
            for exp in stage:
                result = run(exp, root=root, store=opened, workers=workers, **run_options)
                if result.interrupted:
                    return None
                outcomes.append(Outcome(exp, result, tuple(opened.trials(result.experiment_id)),
                                        opened.best_trial(result.experiment_id,
                                                          exp.objective.goal),
                                        opened))
            stage = proc.more(base, outcomes)
        rec = proc.conclude(base, outcomes)
        opened.add_recommendation(base.name, proc.name, rec.as_dict())
        out = Path(root) / "reports" / f"{slug(base.name)}--{slug(proc.name)}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(rec.markdown(), encoding="utf-8")
        return rec
    finally:
        if owned:
            opened.close()
