"""Setup checks: how the experiment is set up, before any result is read.

- ``batch_size_tuned``: the batch size searched as a nuisance hyperparameter or compared as a
  scientific one ("The batch size should not be treated as a tunable hyperparameter for
  validation set performance").
- ``too_few_trials``: too few trials per study for the number of nuisance hyperparameters, with
  the playbook's budget guidance for Adam.

Both judge the experiment's configuration (roles, search space, planned trials), so they can
fire before a trial has run; the trials they name are the studies' best ones, whose selection
rests on that configuration.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from tunebook.analysis.checks import common as c
from tunebook.analysis.checks.registry import check, finding, resolves
from tunebook.analysis.data import ExperimentData
from tunebook.analysis.findings import Finding, Severity

__all__ = ["SetupThresholds", "adam_plan", "adam_role", "check_batch_size_tuned",
           "check_too_few_trials", "is_batch_size", "is_learning_rate"]

SEC_BATCH = "Choosing the batch size"
SEC_TRIALS = "How many trials are needed to get good results with quasi-random search?"
SEC_ADAM = "How should Adam's hyperparameters be tuned?"

#: Optimizer names the Adam guidance applies to.
ADAM_NAMES = frozenset({"adam", "adamw", "nadam"})


@dataclass(frozen=True)
class SetupThresholds:
    """Thresholds of the setup checks (``checks: {setup: {...}}``)."""

    family: ClassVar[str] = "setup"

    #: Fewer than 5 planned trials per nuisance hyperparameter is too few: the playbook's
    #: Figure 3 shows how widely the best of 6 trials varies even in a handful of dimensions,
    #: and its Adam guidance keeps to 1 hyperparameter below 10 trials, 2 up to 25.
    min_trials_per_hp: int = 5
    #: The playbook's Adam budgets: below 10 trials tune only the learning rate ...
    adam_beta1_trials: int = 10
    #: ... from 10, the learning rate and beta1; from 25, epsilon too ...
    adam_epsilon_trials: int = 25
    #: ... and beta2 only with "substantially more than 25": twice as many.
    adam_beta2_trials: int = 50


DEFAULTS = SetupThresholds()

_EVAL_PREFIXES = ("eval_", "val_", "valid_", "test_", "predict_")


def is_batch_size(name: str) -> bool:
    """Whether ``name`` names the training batch size: lowercased, ``batch_size``,
    ``batchsize`` or ``batch``, or ending with ``_batch_size`` / ``_batchsize``
    (``train_batch_size``), unless it starts with ``eval_``, ``val_``, ``valid_``, ``test_``
    or ``predict_`` (an evaluation batch size does not change training)."""
    n = name.lower()
    if n.startswith(_EVAL_PREFIXES):
        return False
    return n in ("batch_size", "batchsize", "batch") or n.endswith(("_batch_size",
                                                                    "_batchsize"))


def is_learning_rate(name: str) -> bool:
    """Whether ``name`` names a learning rate: ``lr`` or ``learning_rate``, alone or as a
    ``_``-separated part (``base_lr``, ``peak_learning_rate``), case-insensitive."""
    return re.search(r"(^|_)(lr|learning_rate)($|_)", name.lower()) is not None


def adam_role(name: str) -> str | None:
    """Which of Adam's hyperparameters ``name`` is: ``learning_rate``, ``beta1``, ``beta2``,
    ``epsilon`` (``beta1``, ``beta_1``, ``one_minus_beta1``, ``adam_beta1``, ``eps``,
    ``adam_epsilon``..., case-insensitive), or None."""
    if is_learning_rate(name):
        return "learning_rate"
    n = name.lower()
    for role, pattern in (("beta1", r"beta_?1"), ("beta2", r"beta_?2"),
                          ("epsilon", r"eps(ilon)?")):
        if re.search(rf"(^|_){pattern}$", n):
            return role
    return None


def _uses_adam(data: ExperimentData) -> bool:
    """Adam (or AdamW, NAdam) as a fixed or scientific ``optimizer`` value, or Adam's beta1,
    beta2 or epsilon among the nuisance hyperparameters."""
    exp = data.experiment
    for name, values in [*((k, (v,)) for k, v in exp.fixed.items()),
                         *exp.scientific_values.items()]:
        if name.lower().endswith(("optimizer", "opt")) and any(
                str(v).lower() in ADAM_NAMES for v in values):
            return True
    return any(adam_role(n) in ("beta1", "beta2", "epsilon") for n in data.varied())


def _best_refs(data: ExperimentData) -> list[dict[str, Any]]:
    return [c.trial_ref(t) for _, t, _ in c.study_bests(data)]


@check("batch_size_tuned", playbook_section=SEC_BATCH, thresholds=SetupThresholds)
def check_batch_size_tuned(data: ExperimentData,
                           th: SetupThresholds = DEFAULTS) -> list[Finding]:
    """The batch size (a name :func:`is_batch_size` accepts) is searched or compared.

    - Nuisance: ``warning``: each study picks it by validation performance, which the playbook
      says it must not be; pick it for throughput and keep it fixed. Advice
      ``range:NAME: fix``, ``choose:NAME: by_cost``.
    - Scientific: ``info`` (legitimate to study training speed or cost, but other
      hyperparameters must be re-tuned per batch size and validation differences are not a
      reason to pick one), ``warning`` when no nuisance hyperparameter is a learning rate
      (:func:`is_learning_rate`): then the studies differ by an un-tuned learning rate, not by
      the batch size. Advice ``choose:NAME: by_cost``.

    One finding per such hyperparameter; fixed batch sizes are fine.
    """
    out = []
    refs = _best_refs(data)
    for name, hp in data.varied().items():
        if not is_batch_size(name):
            continue
        best = {s: c.jsonable(t.params.get(name)) for s, t, _ in c.study_bests(data)}
        where = f"searched over {hp.describe()}"
        chosen = (f"; the best trials use {', '.join(sorted({str(v) for v in best.values()}))}"
                  if best else "")
        out.append(finding(
            check="batch_size_tuned", severity="warning",
            message=(f"{name} is a nuisance hyperparameter ({where}{chosen}): each study picks "
                     "it by validation performance, which the playbook says it must not be."),
            action=(f"Choose {name} for training speed (often the largest that fits in memory) "
                    "and keep it fixed: once the optimizer and regularization hyperparameters "
                    "are tuned for each batch size, validation performance does not depend on "
                    "it. Changing it later means re-tuning those hyperparameters."),
            evidence={"role": "nuisance", "search_space": hp.to_json(), "best_values": best},
            hyperparameter=name, trials=refs,
            advice={f"range:{name}": "fix", f"choose:{name}": "by_cost"}))
    for name, values in data.experiment.scientific_values.items():
        if not is_batch_size(name):
            continue
        tuned = [n for n in data.varied() if is_learning_rate(n)]
        severity: Severity = "info" if tuned else "warning"
        extra = (f" The nuisance hyperparameters include {', '.join(tuned)}, re-tuned per "
                 "batch size." if tuned else
                 " No learning rate is among the nuisance hyperparameters: the studies differ by "
                 "a learning rate tuned for none of them, not by the batch size.")
        out.append(finding(
            check="batch_size_tuned", severity=severity,
            message=(f"{name} is a scientific hyperparameter ({', '.join(map(str, values))}): "
                     "fine for comparing training speed or cost, but a difference in validation "
                     f"performance between batch sizes is not a reason to pick one.{extra}"),
            action=("Compare the batch sizes by training time or cost to reach a target: "
                    "re-tune the optimizer hyperparameters (learning rate, momentum) and the "
                    "regularization as nuisance hyperparameters for each batch size, and "
                    "adjust the number of training steps; then the best validation results "
                    "typically match."),
            evidence={"role": "scientific", "values": [c.jsonable(v) for v in values],
                      "tuned_learning_rates": tuned},
            hyperparameter=name, trials=refs, advice={f"choose:{name}": "by_cost"}))
    return out


def _adam_plan(budget: int, th: SetupThresholds) -> tuple[str, ...]:
    """Which of Adam's hyperparameters the playbook tunes with ``budget`` trials per study."""
    if budget < th.adam_beta1_trials:
        return ("learning_rate",)
    if budget < th.adam_epsilon_trials:
        return ("learning_rate", "beta1")
    if budget < th.adam_beta2_trials:
        return ("learning_rate", "beta1", "epsilon")
    return ("learning_rate", "beta1", "epsilon", "beta2")


def adam_plan(budget: int, th: SetupThresholds = DEFAULTS) -> tuple[str, ...]:
    """Which of Adam's hyperparameters (``learning_rate``, ``beta1``, ``epsilon``, ``beta2``,
    in that order) the playbook tunes with ``budget`` trials per study: the rule of
    ``too_few_trials`` (``tunebook init`` writes its search spaces from it)."""
    return _adam_plan(budget, th)


@check("too_few_trials", playbook_section=SEC_TRIALS, thresholds=SetupThresholds)
def check_too_few_trials(data: ExperimentData, th: SetupThresholds = DEFAULTS) -> list[Finding]:
    """Too few trials per study for the number of nuisance hyperparameters.

    Judged on the planned budget (``search.trials``, the trials each study samples); the
    trials finished so far (completed or infeasible, smallest study) are reported beside it.
    Fires (``warning``) when either:

    - the budget is below ``min_trials_per_hp`` (5) times the number of nuisance
      hyperparameters (6 trials for 6 hyperparameters: 30 would be needed; with
      ``nuisance_for``, those of the study that searches the most); or
    - the optimizer is Adam (a fixed or scientific ``optimizer`` adam/adamw/nadam, or beta1,
      beta2 or epsilon among the nuisance names, :func:`adam_role`) and the nuisance space
      holds one of Adam's hyperparameters that the playbook does not tune at this budget:
      below ``adam_beta1_trials`` (10) only the learning rate; below ``adam_epsilon_trials``
      (25) the learning rate and beta1; below ``adam_beta2_trials`` (50) also epsilon; beta2
      only from 50.

    Advice: ``trials: more``, and ``range:NAME: fix`` for each Adam hyperparameter the
    playbook would not tune at this budget.
    """
    # With conditional hyperparameters (nuisance_for) the largest study's space counts.
    varied = max((dict(data.experiment.study_space(s)) for s in data.experiment.studies()),
                 key=len, default={})
    k = len(varied)
    if not k:
        return []
    budget = data.experiment.search.trials
    needed = th.min_trials_per_hp * k
    adam = _uses_adam(data)
    plan = _adam_plan(budget, th) if adam else ()
    excess = [n for n in data.varied() if adam and (r := adam_role(n)) is not None
              and r not in plan]
    if budget >= needed and not excess:
        return []
    finished = [sum(1 for t in data.trials if t.study == s and t.status in
                    ("completed", "infeasible")) for s in c.studies(data)]
    done = min((n for n in finished if n), default=0)
    parts = []
    if budget < needed:
        parts.append(f"Each study plans {budget} trials for {k} nuisance hyperparameters "
                     f"({', '.join(varied)}): fewer than {th.min_trials_per_hp} per "
                     f"hyperparameter ({needed} would be)")
    if excess:
        tuned = " and ".join(plan).replace("learning_rate", "the learning rate")
        parts.append(f"with Adam and {budget} trials per study the playbook tunes only {tuned}, "
                     f"but {', '.join(excess)} {'is' if len(excess) == 1 else 'are'} searched too")
    message = "; ".join(parts)
    message = message[0].upper() + message[1:]
    if 0 < done < budget:
        message += f" (so far {done} finished in the smallest study)"
    action = ("Run more trials per study, or fix the least important nuisance hyperparameters "
              "(a good fixed value is better than a poorly sampled range): with few trials the "
              "best of each study is largely luck, and studies cannot be compared.")
    if excess:
        action = (f"Fix {', '.join(excess)} (e.g. at the optimizer's defaults) until each study "
                  f"can run enough trials (playbook: < {th.adam_beta1_trials} trials: the "
                  f"learning rate only; {th.adam_beta1_trials}-{th.adam_epsilon_trials}: add "
                  f"beta1; {th.adam_epsilon_trials}+: add epsilon; substantially more: add "
                  "beta2). " + action)
    return [finding(
        check="too_few_trials", severity="warning", message=message + ".", action=action,
        evidence={"planned_trials": budget, "finished_trials": done, "n_nuisance": k,
                  "nuisance": list(varied), "needed": needed,
                  "per_hyperparameter": th.min_trials_per_hp, "adam": adam,
                  "adam_tunes": list(plan), "adam_excess": excess},
        hyperparameter=excess[0] if len(excess) == 1 else None, trials=_best_refs(data),
        advice={"trials": "more", **{f"range:{n}": "fix" for n in excess}})]


def _set_aside(keep: Finding, drop: Finding, why: str) -> list[Finding]:
    """``keep``, with ``drop`` recorded in its evidence and ``why`` appended to its message."""
    superseded = [*keep.evidence.get("superseded", []),
                  {"check": drop.check, "severity": drop.severity, "message": drop.message}]
    return [dataclasses.replace(keep, message=f"{keep.message} {why}",
                                evidence={**keep.evidence, "superseded": superseded})]


@resolves("batch_size_tuned", "boundary")
def batch_size_at_an_edge(batch: Finding, boundary: Finding,
                          data: ExperimentData) -> list[Finding]:
    """The best trials sit at an edge of the batch size range: widening it would tune the
    batch size further for validation performance. Keep the batch size finding."""
    return _set_aside(batch, boundary, "(The boundary finding on it is set aside: the batch "
                      "size should not be widened or narrowed for validation performance.)")


@resolves("too_few_trials", "boundary")
def too_few_trials_at_an_edge(few: Finding, boundary: Finding,
                              data: ExperimentData) -> list[Finding]:
    """A boundary finding on an Adam hyperparameter the playbook would fix at this budget:
    with so few trials the edge is weak evidence. Keep the budget finding."""
    name = boundary.hyperparameter or "it"
    return _set_aside(few, boundary, f"(The boundary finding on {name} is set aside: at this "
                      "budget the playbook fixes it rather than widening its range.)")
