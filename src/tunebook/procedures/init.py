"""Budget-aware search spaces for a new experiment (``tunebook init``).

The playbook ("How should Adam's hyperparameters be tuned?") chooses which optimizer
hyperparameters to search from the number of trials a study can afford: with Adam, fewer than
10 trials tune only the learning rate; 10-25 add beta1; 25 and more add epsilon; substantially
more (50, as the ``too_few_trials`` check reads it) add beta2. Its equivalent for SGD with
momentum (heavy-ball or Nesterov) tunes the learning rate and, from 10 trials, the momentum;
plain SGD has only the learning rate. The thresholds are those of the ``too_few_trials`` check
(:func:`tunebook.analysis.checks.setup.adam_plan`, :class:`~tunebook.analysis.checks.setup.
SetupThresholds`), so a file written here never makes that check fire.

Scales: the learning rate and epsilon on a log scale; beta1, beta2 and the momentum on the
``one_minus_log`` scale (uniform in ``log(1 - value)``, so 0.9, 0.99 and 0.999 are equally far
apart). The hyperparameters that are not searched stay at the optimizer's defaults.

:func:`interview` asks for the same answers as the command's flags, one question at a time
(``tunebook init --interactive``), with the same validation (:func:`parse_workload`,
:func:`parse_metric`, :func:`parse_trials`, :func:`parse_optimizer`: a ``ValueError`` whose
message the command prefixes with the flag's name), and shows the budget advice before the
file is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import yaml

from tunebook.analysis.checks.setup import DEFAULTS, SetupThresholds, adam_plan

__all__ = ["BUILT_IN_WORKLOADS", "OPTIMIZERS", "Answers", "InitPlan", "experiment_yaml",
           "interview", "parse_metric", "parse_optimizer", "parse_trials", "parse_workload",
           "plan_search"]

#: Short names of the built-in workloads (README's table), accepted wherever a workload is.
BUILT_IN_WORKLOADS = {
    "digits": "tunebook.workloads.digits:train_mlp",
    "mnist1d-mlp": "tunebook.workloads.mnist1d:train_mlp",
    "mnist1d-cnn": "tunebook.workloads.mnist1d:train_cnn",
    "text": "tunebook.workloads.text:train_transformer",
    "synthetic": "tunebook.workloads.synthetic:quadratic",
}

#: The optimizers ``tunebook init`` knows, as the built-in workloads name them.
OPTIMIZERS = ("adam", "sgd", "momentum", "nesterov")

#: The search range and scale of each optimizer hyperparameter, by optimizer family: several
#: orders of magnitude around the built-in defaults (1e-3 for Adam, 0.01 for SGD), so that
#: the best trial lands inside the range (the boundary check says when it does not).
RANGES: dict[str, dict[str, dict[str, Any]]] = {
    "adam": {
        "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-1, "scale": "log"},
        "beta1": {"type": "float", "low": 0.5, "high": 0.999, "scale": "one_minus_log"},
        "epsilon": {"type": "float", "low": 1e-10, "high": 1e-2, "scale": "log"},
        "beta2": {"type": "float", "low": 0.9, "high": 0.9999, "scale": "one_minus_log"},
    },
    "sgd": {
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1.0, "scale": "log"},
        "momentum": {"type": "float", "low": 0.5, "high": 0.999, "scale": "one_minus_log"},
    },
}
#: Defaults of the hyperparameters left out of the search (those of the built-in workloads).
DEFAULT_VALUES = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "momentum": 0.9}


@dataclass(frozen=True)
class InitPlan:
    """What ``tunebook init`` searches for a budget.

    Attributes:
        optimizer: ``adam``, ``sgd``, ``momentum`` or ``nesterov``.
        trials: the planned trials per study.
        searched: the nuisance hyperparameters, with their ranges, in the playbook's order.
        kept: the optimizer hyperparameters left at their defaults, with those defaults.
        why: one sentence per choice, for the file's comments and the command's output.
    """

    optimizer: str
    trials: int
    searched: dict[str, dict[str, Any]]
    kept: dict[str, float] = field(default_factory=dict)
    why: list[str] = field(default_factory=list)


def plan_search(optimizer: str, trials: int, th: SetupThresholds = DEFAULTS) -> InitPlan:
    """The nuisance space the playbook's budget guidance gives ``optimizer`` at ``trials``
    trials per study.

    Raises:
        ValueError: for an unknown optimizer or fewer than 1 trial.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; one of {', '.join(OPTIMIZERS)}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if optimizer == "adam":
        names = list(adam_plan(trials, th))
        every: tuple[str, ...] = ("learning_rate", "beta1", "epsilon", "beta2")
        ranges = RANGES["adam"]
        why = [f"Adam with {trials} trials per study: the playbook tunes "
               f"{', '.join(names)} (< {th.adam_beta1_trials} trials: the learning rate only; "
               f"{th.adam_beta1_trials}-{th.adam_epsilon_trials}: and beta1; "
               f"{th.adam_epsilon_trials}+: and epsilon; {th.adam_beta2_trials}+: and beta2)."]
    else:
        every = ("learning_rate", "momentum") if optimizer != "sgd" else ("learning_rate",)
        names = ["learning_rate"]
        if optimizer != "sgd" and trials >= th.adam_beta1_trials:
            names.append("momentum")
        ranges = RANGES["sgd"]
        if optimizer == "sgd":
            why = [f"sgd with {trials} trials per study: the learning rate, its only "
                   "optimizer hyperparameter."]
        elif "momentum" in names:
            why = [f"{optimizer} with {trials} trials per study: the learning rate and the "
                   f"momentum (from {th.adam_beta1_trials} trials, as beta1 for Adam)."]
        else:
            why = [f"{optimizer} with {trials} trials per study: the learning rate only (the "
                   f"momentum too from {th.adam_beta1_trials} trials, as beta1 for Adam)."]
    kept = {n: DEFAULT_VALUES[n] for n in every if n not in names}
    if kept:
        why.append("Kept at the defaults: " + ", ".join(f"{n}={v:g}" for n, v in kept.items())
                   + " (a good fixed value beats a poorly sampled range).")
    if trials < th.min_trials_per_hp * len(names):
        why.append(f"{trials} trials are few even for {len(names)} hyperparameter(s): the best "
                   "of so few is largely luck; plan more if you can.")
    return InitPlan(optimizer=optimizer, trials=trials,
                    searched={n: dict(ranges[n]) for n in names}, kept=kept, why=why)


def experiment_yaml(plan: InitPlan, *, name: str, workload: str | None = None,
                    command: str | None = None, metric: str = "val_error",
                    goal: str = "minimize", max_train_steps: int = 1000) -> str:
    """The experiment file for ``plan``, with the reasons as comments (loads with
    :meth:`tunebook.experiment.Experiment.from_yaml`). Exactly one of ``workload`` and
    ``command``. The optimizer and the kept defaults are ``fixed`` (a command workload
    receives them as flags)."""
    if (workload is None) == (command is None):
        raise ValueError("give exactly one of workload and command")
    doc: dict[str, Any] = {
        "name": name,
        "goal": "Tune the optimizer for this workload (edit: the question this experiment asks)",
        **({"workload": workload} if workload is not None else {"command": command}),
        "objective": {"metric": metric, "goal": goal},
        "max_train_steps": max_train_steps,
        "eval_every": max(1, max_train_steps // 10),
        "search": {"algorithm": "quasi_random", "trials": plan.trials, "seed": 0},
        "nuisance": plan.searched,
        "fixed": {"optimizer": plan.optimizer, **plan.kept},
    }
    head = "\n".join(f"# {line}" for line in (
        "Written by `tunebook init`: the nuisance space follows the playbook's budget guidance.",
        *plan.why,
        "Add the scientific hyperparameters (scientific: {name: [values]}) and set",
        "max_train_steps for the workload (`tunebook steps` estimates it)."))
    return head + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


def parse_workload(text: str) -> str:
    """``MODULE:FUNCTION``, or a built-in workload's short name (:data:`BUILT_IN_WORKLOADS`)
    as its ``MODULE:FUNCTION``.

    Raises:
        ValueError: for anything else (the message names the choices).
    """
    name = text.strip()
    if name in BUILT_IN_WORKLOADS:
        return BUILT_IN_WORKLOADS[name]
    module, colon, function = name.partition(":")
    if not colon or not module or not function or any(c.isspace() for c in name):
        raise ValueError(f"must be MODULE:FUNCTION or a built-in workload "
                         f"({', '.join(BUILT_IN_WORKLOADS)}), got {text!r}")
    return name


def parse_metric(text: str) -> str:
    """A metric name: not empty, no spaces.

    Raises:
        ValueError: otherwise.
    """
    name = text.strip()
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"must be a metric name (no spaces), got {text!r}")
    return name


def parse_trials(text: str) -> int:
    """The trial budget: an integer >= 1 (the ``--trials`` flag's rule and messages).

    Raises:
        ValueError: otherwise.
    """
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise ValueError(f"must be >= 1, got {value}")
    return value


def parse_optimizer(text: str) -> str:
    """One of :data:`OPTIMIZERS` (the ``--optimizer`` flag's message when not).

    Raises:
        ValueError: otherwise.
    """
    name = text.strip()
    if name not in OPTIMIZERS:
        raise ValueError(f"invalid choice: {name!r} (choose from "
                         f"{', '.join(repr(o) for o in OPTIMIZERS)})")
    return name


@dataclass(frozen=True)
class Answers:
    """What ``tunebook init`` needs to know: the workload (``MODULE:FUNCTION``; None with a
    command workload), the metric to optimise, the trials per study and the optimizer."""

    workload: str | None
    metric: str
    trials: int
    optimizer: str


T = TypeVar("T")


def interview(defaults: Answers, ask: Callable[[str], str], say: Callable[[str], None],
              complain: Callable[[str], None], *, command: bool = False
              ) -> tuple[Answers, InitPlan] | None:
    """Ask for each answer (an empty answer keeps the default shown in brackets; the workload
    has none unless ``defaults.workload`` is set, and is not asked for a ``command``
    workload), then show the playbook's budget advice for the answers and ask whether to
    write the file.

    ``ask(prompt)`` returns one line (``input``: EOFError and KeyboardInterrupt go through to
    the caller, who writes nothing); ``say`` prints a line; ``complain`` prints an invalid
    answer's error (``--trials: must be >= 1, got 0``) before the question is asked again.
    Returns the answers and their plan, or None when the user declines to write.
    """

    def question(flag: str, prompt: str, default: T | None, parse: Callable[[str], T]) -> T:
        shown = "" if default is None else f" [{default}]"
        while True:
            text = ask(f"{prompt}{shown}: ").strip()
            if not text and default is not None:
                return default
            if not text:
                complain(f"{flag}: an answer is needed")
                continue
            try:
                return parse(text)
            except ValueError as exc:
                complain(f"{flag}: {exc}")

    answers = defaults
    if not command:
        say("Workload: MODULE:FUNCTION, or a built-in one: " + ", ".join(
            f"{k} ({v})" for k, v in BUILT_IN_WORKLOADS.items()))
        answers = replace(answers, workload=question(
            "--workload", "workload", defaults.workload, parse_workload))
    answers = replace(answers, metric=question(
        "--objective", "metric to optimise", defaults.metric, parse_metric))
    answers = replace(answers, trials=question(
        "--trials", "trials per study (the budget)", defaults.trials, parse_trials))
    answers = replace(answers, optimizer=question(
        "--optimizer", f"optimizer ({', '.join(OPTIMIZERS)})", defaults.optimizer,
        parse_optimizer))
    plan = plan_search(answers.optimizer, answers.trials)
    say("The playbook's advice for this budget:")
    for line in plan.why:
        say(f"  {line}")
    say(f"  searching: {', '.join(plan.searched)}")
    while True:
        reply = ask("write the file? [Y/n]: ").strip().lower()
        if reply in ("", "y", "yes"):
            return answers, plan
        if reply in ("n", "no"):
            return None
        complain(f"answer y or n, got {reply!r}")
