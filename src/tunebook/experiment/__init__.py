"""Experiments: one round of the playbook's incremental tuning strategy, as data.

An :class:`Experiment` names a goal, an objective, the scientific hyperparameters (one study per
value, or per combination of values; or ``configs``, a hand-written list of configurations, one
study each: :mod:`tunebook.experiment.listed`), the nuisance search space (optimised away inside
each study; empty: every trial of a study is a replicate, the same configuration with its own
training seed; ``nuisance_for`` adds hyperparameters only the studies of one scientific value
search: :mod:`tunebook.experiment.conditional`) and the fixed values. It is built from YAML
(:meth:`Experiment.from_yaml`), from a plain dict (:meth:`Experiment.from_dict`) or directly in
Python; every path validates the same way, once, when the Experiment is built, and every error
names the source, the key and the bad value.

Reading a document is :mod:`tunebook.experiment.parse` (the keys it may hold: ``TOP_KEYS``);
the rules and limits are :mod:`tunebook.experiment.checks` (``check_experiment``;
``search.algorithm`` is one of the registered designers, ``algorithms()``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tunebook.experiment.checks import (
    MAX_DEPTH,
    MAX_INT_BOUND,
    MAX_METRIC_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SEED,
    MAX_STEP,
    MAX_TRIAL_TIMEOUT,
    MAX_TRIALS,
    Reader,
    check_experiment,
)
from tunebook.experiment.conditional import study_space
from tunebook.experiment.listed import config_label, config_values, scientific_values
from tunebook.experiment.parse import parse_document, read_yaml
from tunebook.objective import Objective
from tunebook.search.space import SearchSpace, Value

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_BOUND",
    "MAX_METRIC_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_SEED",
    "MAX_STEP",
    "MAX_TRIALS",
    "MAX_TRIAL_TIMEOUT",
    "Experiment",
    "Objective",
    "Search",
    "StudySpec",
]


@dataclass(frozen=True)
class Search:
    """How each study samples the nuisance space: algorithm, trials per study, seed.

    ``seeds`` (study variance): repeat every study's search with each of these seeds; the first
    is ``seed`` (see :mod:`tunebook.experiment.seeds`). Empty: one search, with ``seed``.
    ``options``: the algorithm's own settings (``search.options``), validated by its designer
    (:meth:`tunebook.search.designers.Designer.check_options`).
    """

    algorithm: str = "quasi_random"
    trials: int = 20
    seed: int = 0
    seeds: tuple[int, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.seeds, list | tuple):
            object.__setattr__(self, "seeds", tuple(self.seeds))
            if self.seeds and isinstance(self.seeds[0], int):
                object.__setattr__(self, "seed", self.seeds[0])  # the primary search


@dataclass(frozen=True)
class StudySpec:
    """One study of an experiment: a name and the scientific values it holds fixed."""

    name: str
    position: int
    scientific: dict[str, Value]


@dataclass(frozen=True)
class Experiment:
    """One round of experiments: a goal, an objective, roles for every hyperparameter.

    Exactly one of ``workload`` (``"module:function"``) and ``command`` (a program) is set.
    Construct with keyword arguments, :meth:`from_dict` or :meth:`from_yaml`; all validate.
    """

    name: str
    objective: Objective
    max_train_steps: int
    eval_every: int
    nuisance: SearchSpace
    workload: str | None = None
    command: tuple[str, ...] | None = None
    goal: str = ""
    search: Search = field(default_factory=Search)
    scientific: Mapping[str, tuple[Value, ...]] = field(default_factory=dict)
    fixed: Mapping[str, Value] = field(default_factory=dict)
    trial_timeout: float | None = None
    #: Threshold overrides for the analysis checks, ``{family: {threshold: value}}`` (the
    #: ``checks:`` section); names and types are validated by ``tunebook.analysis.checks``,
    #: which owns them, when the checks run.
    checks: Mapping[str, Mapping[str, Value]] = field(default_factory=dict)
    #: The experiment this one follows (the previous round, or the search a retrain repeats):
    #: a link for the project page, not part of the experiment's identity.
    follows: str | None = None
    #: Studies from a hand-written list instead of ``scientific``: one per entry, an optional
    #: ``name`` and the hyperparameter values the study holds fixed (rules:
    #: :mod:`tunebook.experiment.listed`).
    configs: tuple[Mapping[str, Value], ...] = ()
    #: Conditional nuisance hyperparameters: ``{"NAME=VALUE": space}``, searched (on top of
    #: ``nuisance``) by the studies holding that scientific value (rules:
    #: :mod:`tunebook.experiment.conditional`).
    nuisance_for: Mapping[str, SearchSpace] = field(default_factory=dict)
    #: Where trial checkpoints are also published, for a trial to resume on any machine: a
    #: shared-mount path or an fsspec URL (``s3://bucket/prefix``); a relative path is relative
    #: to the experiment file's folder. Not part of the identity (where checkpoints live
    #: changes no trial); ``--checkpoint-root`` overrides it.
    checkpoint_root: str | None = None
    #: What one trial needs from a cluster scheduler (``num_cpus``, ``num_gpus``, ``memory``,
    #: ``custom``; rules: :mod:`tunebook.experiment.resources`): used by the Ray executor, not
    #: part of the identity.
    resources: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<python>"
    base_dir: str = "."

    def __post_init__(self) -> None:
        if not isinstance(self.nuisance, SearchSpace):
            object.__setattr__(self, "nuisance", SearchSpace(self.nuisance))
        if isinstance(self.command, str):
            object.__setattr__(self, "command", Reader(self.source).command(self.command))
        object.__setattr__(
            self, "scientific", {k: tuple(v) for k, v in sorted(self.scientific.items())})
        object.__setattr__(self, "fixed", dict(self.fixed))
        object.__setattr__(self, "nuisance_for", {
            k: v if isinstance(v, SearchSpace) or not isinstance(v, Mapping) else SearchSpace(v)
            for k, v in sorted(self.nuisance_for.items(), key=lambda kv: str(kv[0]))})
        object.__setattr__(self, "configs", tuple(
            dict(c) if isinstance(c, Mapping) else c for c in self.configs))
        object.__setattr__(self, "checks", {k: dict(v) for k, v in self.checks.items()})
        if isinstance(self.resources, Mapping):
            object.__setattr__(self, "resources", {
                k: dict(v) if isinstance(v, Mapping) else v for k, v in self.resources.items()})
        check_experiment(self)

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_yaml(cls, path: str | Path) -> Experiment:
        """Load and validate an experiment file; errors name the file, key and value."""
        data, base_dir = read_yaml(path)
        return cls.from_dict(data, source=str(path), base_dir=base_dir)

    @classmethod
    def from_dict(cls, data: object, source: str = "<dict>", base_dir: str = ".") -> Experiment:
        """Build from a plain mapping with the same keys as the YAML format."""
        fields = parse_document(data, source)
        metric, goal = fields.pop("objective")
        return cls(objective=Objective(metric, goal), search=Search(**fields.pop("search")),
                   **fields, source=source, base_dir=base_dir)

    # ----------------------------------------------------------------- derived
    @property
    def replicates(self) -> bool:
        """True when no study searches a nuisance hyperparameter: every trial of a study runs
        the same configuration, each with its own training seed (``search.trials`` seeds)."""
        return len(self.nuisance) == 0 and not self.nuisance_for

    @property
    def searched(self) -> SearchSpace:
        """Every nuisance hyperparameter some study searches: ``nuisance`` and the blocks of
        ``nuisance_for`` (a name in several blocks has one definition)."""
        if not self.nuisance_for:
            return self.nuisance
        union = dict(self.nuisance)
        for block in self.nuisance_for.values():
            union.update(block)
        return SearchSpace(union)

    def study_space(self, study: StudySpec) -> SearchSpace:
        """What ``study`` searches: ``nuisance`` (first: trial ``i`` of every study has the same
        shared point) and the ``nuisance_for`` blocks its scientific values select."""
        return study_space(self, study.scientific)

    @cached_property
    def scientific_values(self) -> dict[str, tuple[Value, ...]]:
        """Every hyperparameter that tells the studies apart, with its values: ``scientific``
        itself, or with ``configs`` every key of the entries with its distinct values (an entry
        may leave a key out)."""
        if not self.configs:
            return dict(self.scientific)
        return scientific_values([config_values(c) for c in self.configs])

    def studies(self) -> list[StudySpec]:
        """One study per combination of scientific values (or per ``configs`` entry, in the
        listed order), in a stable order."""
        if self.configs:
            return [StudySpec(config_label(c), pos, config_values(c))
                    for pos, c in enumerate(self.configs)]
        if not self.scientific:
            return [StudySpec("main", 0, {})]
        names = list(self.scientific)
        out = []
        for pos, combo in enumerate(itertools.product(*(self.scientific[n] for n in names))):
            values = dict(zip(names, combo, strict=True))
            label = ",".join(f"{k}={v}" for k, v in values.items())
            out.append(StudySpec(label, pos, values))
        return out

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON- and YAML-serialisable description that :meth:`from_dict` accepts."""
        nuisance = {name: hp.to_json() for name, hp in self.nuisance.items()}
        out: dict[str, Any] = {"name": self.name, "goal": self.goal}
        if self.workload is not None:
            out["workload"] = self.workload
        else:
            out["command"] = list(self.command or ())
        out.update({
            "objective": {"metric": self.objective.metric, "goal": self.objective.goal},
            "max_train_steps": self.max_train_steps,
            "eval_every": self.eval_every,
            "search": {"algorithm": self.search.algorithm, "trials": self.search.trials,
                       "seed": self.search.seed},
            "scientific": {k: list(v) for k, v in self.scientific.items()},
            "nuisance": nuisance,
            "fixed": dict(self.fixed),
        })
        if self.search.seeds:  # only when set: older experiments keep their identity
            out["search"]["seeds"] = list(self.search.seeds)
        if self.search.options:  # likewise
            out["search"]["options"] = dict(self.search.options)
        if self.configs:  # only when given: the identity of other experiments is unchanged
            out["configs"] = [dict(c) for c in self.configs]
        if self.nuisance_for:  # likewise
            out["nuisance_for"] = {cond: {name: hp.to_json() for name, hp in block.items()}
                                   for cond, block in self.nuisance_for.items()}
        if self.trial_timeout is not None:
            out["trial_timeout"] = self.trial_timeout
        if self.checks:
            out["checks"] = {k: dict(v) for k, v in self.checks.items()}
        if self.follows is not None:
            out["follows"] = self.follows
        if self.checkpoint_root is not None:
            out["checkpoint_root"] = self.checkpoint_root
        if self.resources:
            out["resources"] = {k: dict(v) if isinstance(v, Mapping) else v
                                for k, v in self.resources.items()}
        return out

    def identity(self) -> str:
        """Hash of everything that decides which trials run and how they train.

        The objective, the goal text, the trial budget, the trial timeout, the checks'
        thresholds, the ``follows`` link, ``checkpoint_root`` and ``resources`` are left out:
        the objective can be changed after the fact, a study can be extended because trial
        ``i`` does not depend on how many trials there are, a timeout only decides when to give
        up on a trial, not what it computes, thresholds only change how the results are read,
        and neither a link between rounds, where checkpoints are kept nor the resources a trial
        asks a scheduler for change any trial.
        """
        d = self.to_dict()
        for key in ("objective", "goal", "name"):
            d.pop(key)
        d.pop("trial_timeout", None)
        d.pop("checks", None)  # thresholds of the analysis: they change no trial
        d.pop("follows", None)  # a link between rounds: it changes no trial
        d.pop("checkpoint_root", None)  # where checkpoints live: it changes no trial
        d.pop("resources", None)  # where a trial runs: it changes no trial
        d["search"].pop("trials")
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
