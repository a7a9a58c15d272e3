"""A finding: one of the playbook's checks, fired, with its evidence and the suggested action.

Besides the sentence for a person, a finding carries its advice in a form a program can compare:
:attr:`Finding.advice` maps a *knob* to a direction. Two findings about the same scope (the same
study, or one of them about the whole experiment) whose advice sets one knob to opposite
directions contradict each other (:func:`contradictions`); :func:`tunebook.analysis.checks.
run_checks` resolves every such pair before a user sees it, and the scenario tests assert it.

Knobs and directions in use (add new ones here, with their opposites):

============================  =======================================================
knob                          directions
============================  =======================================================
``training_length``           ``longer`` / ``shorter`` (max_train_steps, or when to stop)
``regularization``            ``more`` / ``less``
``trials``                    ``more`` (more trials per study)
``studies``                   ``differ`` / ``within_spread`` (the isolation verdict)
``range:NAME``                ``widen_low``, ``widen_high`` / ``fix`` (NAME's search range),
                              ``narrow_low`` / ``widen_low``, ``narrow_high`` / ``widen_high``
``batch_size``                ``larger`` / ``smaller`` / ``keep``
``grad_clip``                 ``higher`` / ``lower`` (the clipping threshold)
``stability``                 ``improve`` (learning rate warmup, gradient clipping)
``search_space``              ``adjust`` (avoid the infeasible region)
``failed_trials``             ``retry`` (fix the cause, re-run them)
``choose:NAME``               ``by_cost`` (pick NAME for training speed or cost, never
                              for validation performance)
``step_noise``                ``reduce`` (bigger batch, more validation data, decay, averaging)
``eval_data``                 ``per_class`` (look at per-class counts, weigh classes),
                              ``resample`` / ``enlarge`` (the periodic evaluation subset)
``data_order``                ``shuffle`` (shuffle the training data, remove eval overlap)
``input_pipeline``            ``speed_up`` (the steps wait for data)
============================  =======================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["OPPOSITE", "SEVERITIES", "Finding", "Severity", "contradictions", "same_scope",
           "trials_text"]

Severity = Literal["info", "warning", "problem"]
SEVERITIES: tuple[Severity, ...] = ("problem", "warning", "info")

#: Pairs of directions that contradict each other when given for the same knob and scope.
OPPOSITE: frozenset[frozenset[str]] = frozenset(frozenset(p) for p in (
    ("longer", "shorter"),
    ("more", "less"),
    ("differ", "within_spread"),
    ("widen_low", "fix"),
    ("widen_high", "fix"),
    ("widen_low", "narrow_low"),
    ("widen_high", "narrow_high"),
    ("larger", "smaller"),
    ("larger", "keep"),
    ("smaller", "keep"),
    ("higher", "lower"),
))


@dataclass(frozen=True)
class Finding:
    """The result of one check that fired.

    Attributes:
        check: a stable identifier (``boundary``, ``overfitting``, ...), for scripts.
        severity: ``problem`` (conclusions are at risk), ``warning`` or ``info``.
        message: one sentence for a person.
        evidence: the numbers behind it (trial ids, values, steps), JSON-serialisable.
        section: the playbook section the check comes from.
        action: what the playbook suggests doing about it.
        hyperparameter: the hyperparameter concerned, when there is one.
        study: the study concerned, when there is one (None: the whole experiment).
        trials: the trials it is about, as ``{"id": ..., "label": "study #index"}``.
        advice: the action as ``{knob: direction}`` (see the module docstring), so that
            contradicting advice can be found by a program.
    """

    check: str
    severity: Severity
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    section: str = ""
    action: str = ""
    hyperparameter: str | None = None
    study: str | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    advice: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the ``tunebook findings --format json`` schema)."""
        return asdict(self)


def trials_text(trials: Sequence[dict[str, Any]], limit: int = 8) -> str:
    """The trials of a finding for a person: ``"a #3, a #7 and 2 more"``."""
    names = [str(t.get("label", t.get("id", "?"))) for t in trials]
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def same_scope(a: Finding, b: Finding) -> bool:
    """Whether ``a`` and ``b`` talk about the same thing: the same study, or one of them about
    the whole experiment (``study`` None)."""
    return a.study is None or b.study is None or a.study == b.study


def opposite(x: str, y: str) -> bool:
    """Whether directions ``x`` and ``y`` contradict each other."""
    return frozenset((x, y)) in OPPOSITE


def contradictions(findings: Sequence[Finding] | Iterable[Finding]
                   ) -> list[tuple[Finding, Finding, str]]:
    """Every pair of findings giving opposite advice on one knob in the same scope, with the
    knob: ``[(a, b, knob), ...]`` (empty when the findings are coherent)."""
    items = list(findings)
    out = []
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            if not same_scope(a, b):
                continue
            for knob, direction in a.advice.items():
                other = b.advice.get(knob)
                if other is not None and opposite(direction, other):
                    out.append((a, b, knob))
    return out
