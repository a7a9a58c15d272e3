"""How the curve and training-length findings combine when their advice points both ways.

:func:`~tunebook.analysis.checks.registry.reconcile` calls :func:`resolve_training_length`
(registered with :func:`~tunebook.analysis.checks.registry.resolves` for the pairs below) on
two findings about the same study (or one about the whole experiment) that give opposite
``training_length`` advice. Such a pair is not a contradiction in the data: the two findings
are about *different trials* — the best trials overfit while slower ones peak late, the best
trial is still improving while most trials peaked early. It returns ONE finding that names
each group of trials and gives one piece of advice, by one rule:

    the ``training_length`` direction is the one of the group that holds the study's best
    trial (the best trials are the ones being compared); when the best trial is in groups of
    both directions, or in none, the finding gives no ``training_length`` direction.

Pairs: ``overfitting`` (shorter: stop at the best step) with ``still_improving`` or a late
``best_step_position`` (longer); ``saturated_early`` (shorter) with a late
``best_step_position``; ``still_improving`` with an early ``best_step_position`` (shorter).
``saturated_early`` and ``still_improving`` never fire on the same trial (see
:mod:`tunebook.analysis.checks.training_length`), so they need no resolver.

The combined finding keeps the check name, study, hyperparameter and evidence of the first
finding (``overfitting`` when one of the two is), lists the second's trials after its own,
takes the more severe severity, and records the second finding under
``evidence["combined_with"]`` and every group under ``evidence["groups"]``. A combined finding
can absorb another one later (its groups are read back from its evidence).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import resolves
from tunebook.analysis.data import ExperimentData
from tunebook.analysis.findings import SEVERITIES, Finding, trials_text

__all__ = ["Group", "follow_best", "groups", "resolve_training_length"]

_KNOB = "training_length"


@dataclass(frozen=True)
class Group:
    """The trials one curve/training-length rule flagged, and the direction it gives.

    Attributes:
        check: the rule's check.
        direction: its ``training_length`` direction (``longer`` / ``shorter``), or None.
        trials: the trials it flagged (``{"id", "label"}``).
        evidence: the rule's evidence (its numbers, for the message).
    """

    check: str
    direction: str | None
    trials: list[dict[str, Any]]
    evidence: dict[str, Any]


def _own(check: str, evidence: dict[str, Any], trials: Sequence[dict[str, Any]]) -> Group:
    """The group of one (not combined) finding's own rule."""
    refs: list[dict[str, Any]]
    if check == "overfitting":
        direction: str | None = "shorter"
        refs = [{"id": t["id"], "label": t["label"]} for t in evidence.get("trials", [])]
    elif check == "best_step_position":
        direction = "longer" if evidence.get("verdict") == "train_longer" else "shorter"
        refs = list(evidence.get("flagged", []))
    elif check in ("still_improving", "saturated_early"):
        direction = "longer" if check == "still_improving" else "shorter"
        refs = ([{"id": evidence["id"], "label": evidence.get("label", str(evidence["id"]))}]
                if "id" in evidence else list(trials))
    else:
        direction, refs = None, list(trials)
    own = {k: v for k, v in evidence.items() if k not in ("combined_with", "groups")}
    return Group(check, direction, refs, own)


def _groups(check: str, evidence: dict[str, Any], trials: Sequence[dict[str, Any]]
            ) -> list[Group]:
    out = [_own(check, evidence, trials)]
    for absorbed in evidence.get("combined_with", []):
        out += _groups(absorbed["check"], absorbed["evidence"], [])
    return out


def groups(f: Finding) -> list[Group]:
    """The groups behind ``f``: its own rule's, then those of every finding it absorbed."""
    return _groups(f.check, f.evidence, f.trials)


def follow_best(best: dict[str, Any] | None, among: Sequence[Group]) -> str | None:
    """The ``training_length`` direction of the groups holding ``best`` (a trial ref); None when
    they hold it with different directions, or none holds it."""
    if best is None:
        return None
    hits = {g.direction for g in among
            if g.direction is not None and best["id"] in {t.get("id") for t in g.trials}}
    return hits.pop() if len(hits) == 1 else None


def _describe(g: Group, named: set[Any]) -> str:
    """One clause for a group, naming the trials not already ``named``."""
    ev = g.evidence
    fresh = [t for t in g.trials if t.get("id") not in named]
    listed = f" ({trials_text(fresh)})" if fresh else ""
    if g.check == "overfitting":
        first = ev["trials"][0]
        examples = f" ({first['examples']})" if first.get("examples") else ""
        train = first.get("train")
        falling = (f", while its {train['metric']} keeps falling" if train and train["falling"]
                   else "")
        many = len(g.trials) > 1
        whose = (("its best trials" if many else "its best trial")
                 if ev.get("best_trial_overfits") else "trials")
        return (f"{ev.get('metric', 'the objective')} rises after the best step in {whose} "
                f"{trials_text(g.trials)} (e.g. {first['label']}: best "
                f"{c.fmt(first['best_value'])} at step {first['best_step']}, worse by "
                f"{c.fmt(first['rise'])}{examples} over steps {first['tail_from_step']}–"
                f"{first['last_step']}{falling})")
    if g.check == "still_improving":
        examples = f" ({ev['examples']})" if ev.get("examples") else ""
        return (f"the best trial {ev.get('label')} is still improving at step "
                f"{ev.get('best_step')} of {ev.get('max_train_steps')} (by "
                f"{c.fmt(float(ev.get('improvement', 0.0)))}{examples} over its last "
                f"{ev.get('tail_points')} evaluations)")
    if g.check == "saturated_early":
        return (f"the best trial {ev.get('label')} reached its best {ev.get('metric')} "
                f"({c.fmt(float(ev.get('best_value', 0.0)))}) by step "
                f"{ev.get('first_within_tol_step')} of {ev.get('max_train_steps')}")
    if g.check == "best_step_position" and g.direction == "longer":
        return (f"{len(g.trials)} of {ev.get('n_trials')} trials reach their best only in the "
                f"last {c.pct(1 - float(ev.get('late_fraction', 0.75)))} of training{listed}")
    if g.check == "best_step_position":
        return (f"the median trial reached its best by "
                f"{c.pct(float(ev.get('median_fraction', 0.0)))} of training{listed}")
    return f"{g.check}{listed}"


def _conclusion(among: Sequence[Group], direction: str | None,
                best: dict[str, Any] | None) -> tuple[str, str]:
    """(the end of the message, the action) for these groups and the chosen direction."""
    overfits = any(g.check == "overfitting" for g in among)
    name = best["label"] if best else "the best trial"
    if overfits and direction == "shorter":
        return ("regularise, or stop earlier; the trials that would use more steps are not the "
                "best ones",
                "Add regularization (dropout, label smoothing, weight decay) or tune it better "
                "before comparing the scientific values. Trials that peak late are slower, "
                "worse configurations: they are no reason to train the overfitting ones "
                "longer (retrospective checkpoint selection already stops those at their best "
                "step).")
    if overfits and direction == "longer":
        return (f"regularise the overfitting configurations (more regularization usually "
                f"moves the best step later) and train longer: {name} still gains from the "
                f"steps",
                "Add regularization (dropout, label smoothing, weight decay) or tune it better "
                "before comparing the scientific values, and increase max_train_steps for the "
                "next round (re-tuning the decay schedule with it).")
    if overfits:
        return ("regularise first, then judge the training length again",
                "Add regularization (dropout, label smoothing, weight decay) or tune it better "
                "before comparing the scientific values; the curves give no clear answer on "
                "max_train_steps until the best trials stop overfitting.")
    if direction == "shorter":
        return ("the trials that peak late are slower, worse configurations; the best one "
                "does not need the extra steps, so max_train_steps can probably be reduced "
                "once they are ruled out",
                "Keep one max_train_steps for all trials and choose it for the configurations "
                "that compete for the best result, not for slow ones (e.g. learning rates too "
                "small), which the playbook warns can make long training look necessary.")
    if direction == "longer":
        return (f"the trials that peaked early are other, worse configurations: train longer "
                f"for {name}",
                "Choose max_train_steps for the configurations that compete for the best "
                "result: when in doubt, err on the side of training longer (and re-tune the "
                "decay schedule with it).")
    return ("judge the training length on the best trials after the next round",
            "Keep max_train_steps for now: the best trials give no clear direction.")


_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@resolves("overfitting", "still_improving")
@resolves("overfitting", "best_step_position")
@resolves("saturated_early", "best_step_position")
@resolves("still_improving", "best_step_position")
def resolve_training_length(a: Finding, b: Finding, data: ExperimentData) -> list[Finding]:
    """One finding for ``a`` and ``b`` (opposite ``training_length`` advice about one scope):
    ``a``'s check, study and evidence, the groups of both named, and the direction of the
    group holding the study's best trial (see the module docstring)."""
    study = a.study if a.study is not None else b.study
    ranked = data.ranked(study)
    best = c.trial_ref(ranked[0]) if ranked else None
    among = [*groups(a), *groups(b)]
    direction = follow_best(best, among)
    named: set[Any] = set()
    clauses = []
    for g in among:
        clauses.append(_describe(g, named))
        named |= {t.get("id") for t in g.trials}
    end, action = _conclusion(among, direction, best)
    head = f"Study {study}: " if study is not None else ""
    joined = clauses[0] + "".join(f", while {x}" if i == 0 else f"; and {x}"
                                  for i, x in enumerate(clauses[1:]))
    message = f"{head}{joined}: {end}."
    seen = {t.get("id") for t in a.trials}
    trials = [*a.trials, *[t for t in b.trials if t.get("id") not in seen]]
    advice = {k: v for k, v in {**b.advice, **a.advice}.items() if k != _KNOB}
    if direction is not None:
        advice[_KNOB] = direction
    absorbed = {"check": b.check, "severity": b.severity, "message": b.message,
                "advice": b.advice, "evidence": b.evidence}
    evidence = {**a.evidence,
                "combined_with": [*a.evidence.get("combined_with", []), absorbed],
                "groups": [{"check": g.check, "direction": g.direction, "trials": g.trials}
                           for g in among],
                "best_trial": best, "training_length": direction}
    severity = min(a.severity, b.severity, key=lambda s: _RANK.get(s, len(_RANK)))
    return [dataclasses.replace(a, severity=severity, message=message, action=action,
                                study=study, evidence=evidence, trials=trials, advice=advice)]
