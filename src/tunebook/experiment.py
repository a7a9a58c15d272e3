"""Experiments: one round of the playbook's incremental tuning strategy, as data.

An :class:`Experiment` names a goal, an objective, the scientific hyperparameters (one study per
value, or per combination of values), the nuisance search space (optimised away inside each study)
and the fixed values. It is built from YAML (:meth:`Experiment.from_yaml`), from a plain dict
(:meth:`Experiment.from_dict`) or directly in Python; every path validates the same way and every
error names the source, the key and the bad value.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tunebook.errors import ConfigError
from tunebook.space import Categorical, Discrete, Float, Hyperparameter, Int, SearchSpace, Value

__all__ = ["Experiment", "Objective", "Search", "StudySpec"]

ALGORITHMS = ("quasi_random", "random", "grid")
TOP_KEYS = (
    "name",
    "goal",
    "workload",
    "command",
    "objective",
    "max_train_steps",
    "eval_every",
    "search",
    "scientific",
    "nuisance",
    "fixed",
    "trial_timeout",
)
_EXP_RE = re.compile(r"^[+-]?\d+(\.\d*)?[eE][+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int, first_line: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise _DuplicateKey(str(key), line, seen[key])
            if isinstance(key, str | int | float | bool):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class Objective:
    """The metric a study optimises and its direction.

    It can be changed after trials have run: every metric is stored at every evaluation.
    """

    metric: str
    goal: Literal["minimize", "maximize"] = "minimize"

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b`` under this objective."""
        return a < b if self.goal == "minimize" else a > b


@dataclass(frozen=True)
class Search:
    """How each study samples the nuisance space: algorithm, trials per study, seed."""

    algorithm: Literal["quasi_random", "random", "grid"] = "quasi_random"
    trials: int = 20
    seed: int = 0


@dataclass(frozen=True)
class StudySpec:
    """One study of an experiment: a name and the scientific values it holds fixed."""

    name: str
    position: int
    scientific: dict[str, Value]


def _nearest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


class _Reader:
    """Validates one experiment document and raises ConfigError with source and key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.source, key, message)

    def mapping(self, key: str, value: object, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a mapping, got {value!r}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {k!r}")
            if allowed and k not in allowed:
                where = f"{key}.{k}" if key else k
                raise self.fail(where, f"unknown key {k!r}{_nearest(k, allowed)}")
        return dict(value)

    def string(self, key: str, value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def integer(self, key: str, value: object, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value!r}")
        return value

    def number(self, key: str, value: object) -> float | int:
        # PyYAML reads 1e-4 (no dot) as a string: accept numeric strings for number fields.
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise self.fail(key, f"must be finite, got {value!r}")
        return value

    def scalar(self, key: str, value: object) -> Value:
        # PyYAML (YAML 1.1) reads 1e-4, without a dot, as a string: it is a number.
        if isinstance(value, str) and _EXP_RE.match(value.strip()):
            return float(value)
        if not isinstance(value, str | int | float | bool):
            raise self.fail(key, f"must be a string, number or boolean, got {value!r}")
        return value

    def hyperparameter(self, key: str, value: object) -> Hyperparameter:
        if isinstance(value, list):  # shorthand: a list of choices
            value = {"type": "categorical", "values": value}
        spec = self.mapping(key, value, ("type", "low", "high", "scale", "values"))
        kind = spec.get("type")
        kinds = ("float", "int", "discrete", "categorical")
        if kind is None:
            raise self.fail(f"{key}.type", f"missing; one of {', '.join(kinds)}")
        if kind not in kinds:
            raise self.fail(f"{key}.type", f"unknown type {kind!r}{_nearest(str(kind), kinds)}")
        allowed = ("type", "values") if kind in ("discrete", "categorical") else (
            "type", "low", "high", "scale")
        for k in spec:
            if k not in allowed:
                raise self.fail(f"{key}.{k}",
                                f"not used by type {kind!r} (allowed: {', '.join(allowed)})")
        try:
            if kind in ("float", "int"):
                for bound in ("low", "high"):
                    if bound not in spec:
                        raise self.fail(f"{key}.{bound}", f"missing for type {kind!r}")
                scale = spec.get("scale", "linear")
                scales: tuple[str, ...] = ("linear", "log")
                if kind == "float":
                    scales = (*scales, "one_minus_log")
                if scale not in scales:
                    raise self.fail(f"{key}.scale",
                                    f"unknown scale {scale!r}{_nearest(str(scale), scales)}")
                if kind == "float":
                    low, high = (self.number(f"{key}.{b}", spec[b]) for b in ("low", "high"))
                    return Float(float(low), float(high), scale)
                low_i = self.integer(f"{key}.low", spec["low"])
                high_i = self.integer(f"{key}.high", spec["high"])
                return Int(low_i, high_i, scale)
            values = spec.get("values")
            if not isinstance(values, list):
                raise self.fail(f"{key}.values", f"must be a list, got {values!r}")
            if kind == "discrete":
                nums = tuple(self.number(f"{key}.values[{i}]", v) for i, v in enumerate(values))
                return Discrete(nums)
            return Categorical(
                tuple(self.scalar(f"{key}.values[{i}]", v) for i, v in enumerate(values)))
        except ValueError as exc:
            # The space module's own checks (low >= high, log with low <= 0, ...).
            msg = str(exc)
            sub = msg.split(" ", 1)[0]
            if sub in ("low", "high", "scale", "values"):
                raise self.fail(f"{key}.{sub}", msg) from None
            raise self.fail(key, msg) from None


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
    source: str = "<python>"
    base_dir: str = "."

    def __post_init__(self) -> None:
        if not isinstance(self.nuisance, SearchSpace):
            object.__setattr__(self, "nuisance", SearchSpace(self.nuisance))
        if isinstance(self.command, str):
            object.__setattr__(self, "command", tuple(shlex.split(self.command)))
        object.__setattr__(
            self, "scientific", {k: tuple(v) for k, v in sorted(self.scientific.items())})
        object.__setattr__(self, "fixed", dict(self.fixed))
        self._validate()

    # ----------------------------------------------------------------- validation
    def _validate(self) -> None:
        r = _Reader(self.source)
        r.string("name", self.name)
        if "\n" in self.name:
            raise r.fail("name", f"must be one line, got {self.name!r}")
        if (self.workload is None) == (self.command is None):
            raise r.fail("workload",
                         "give exactly one of 'workload' (module:function) or 'command'")
        if self.workload is not None:
            r.string("workload", self.workload)
            module, _, func = self.workload.partition(":")
            if not module or not func:
                raise r.fail("workload", f"must be 'module:function', got {self.workload!r}")
        if self.command is not None and not self.command:
            raise r.fail("command", "must not be empty")
        r.string("objective.metric", self.objective.metric)
        if self.objective.goal not in ("minimize", "maximize"):
            raise r.fail("objective.goal",
                         f"must be minimize or maximize, got {self.objective.goal!r}")
        r.integer("max_train_steps", self.max_train_steps, minimum=1)
        if self.trial_timeout is not None:
            timeout = r.number("trial_timeout", self.trial_timeout)
            if timeout <= 0:
                raise r.fail("trial_timeout", f"must be > 0 seconds, got {timeout!r}")
        r.integer("eval_every", self.eval_every, minimum=1)
        if self.eval_every > self.max_train_steps:
            raise r.fail("eval_every", f"must be <= max_train_steps ({self.max_train_steps}), "
                         f"got {self.eval_every}")
        if self.search.algorithm not in ALGORITHMS:
            raise r.fail("search.algorithm", f"unknown algorithm {self.search.algorithm!r}"
                         f"{_nearest(str(self.search.algorithm), ALGORITHMS)}")
        r.integer("search.trials", self.search.trials, minimum=1)
        r.integer("search.seed", self.search.seed, minimum=0)
        if len(self.nuisance) == 0:
            raise r.fail("nuisance", "the search space is empty: a study needs at least one "
                         "nuisance hyperparameter to optimise away")
        if self.search.algorithm == "grid" and len(self.nuisance) > 2:
            raise r.fail("search.algorithm", f"grid search only suits 1-2 nuisance hyperparameters"
                         f" (the playbook), got {len(self.nuisance)}: use quasi_random")
        for name, values in self.scientific.items():
            if not values:
                raise r.fail(f"scientific.{name}", "must list at least one value")
            for i, v in enumerate(values):
                r.scalar(f"scientific.{name}[{i}]", v)
            if len(set(values)) != len(values):
                raise r.fail(f"scientific.{name}", f"values must be distinct, got {list(values)!r}")
        for name, v in self.fixed.items():
            r.scalar(f"fixed.{name}", v)
        seen: dict[str, StudySpec] = {}
        for spec in self.studies():
            if spec.name in seen:
                first, second = seen[spec.name].scientific, spec.scientific
                key = next(k for k in first if first[k] != second[k] or
                           type(first[k]) is not type(second[k]))
                raise r.fail(f"scientific.{key}", f"values {first[key]!r} and {second[key]!r} "
                             f"give the same study name {spec.name!r}; make them distinct")
            seen[spec.name] = spec
        roles = {"scientific": set(self.scientific), "nuisance": set(self.nuisance),
                 "fixed": set(self.fixed)}
        for (ra, a), (rb, b) in itertools.combinations(roles.items(), 2):
            both = sorted(a & b)
            if both:
                raise r.fail(f"{rb}.{both[0]}", f"{both[0]!r} is both {ra} and {rb}; "
                             "a hyperparameter has exactly one role")

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_yaml(cls, path: str | Path) -> Experiment:
        """Load and validate an experiment file; errors name the file, key and value."""
        p = Path(path)
        source = str(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(source, "", f"cannot read file: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            msg = f"not UTF-8 text: {exc.reason} at byte {exc.start}"
            raise ConfigError(source, "", msg) from None
        try:
            data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
        except _DuplicateKey as exc:
            raise ConfigError(source, exc.key, f"duplicate key {exc.key!r} at line {exc.line} "
                              f"(first at line {exc.first_line})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
            context = getattr(exc, "context", None)
            cmark = getattr(exc, "context_mark", None)
            opened = (f" ({context} at line {cmark.line + 1})"
                      if context and cmark is not None and mark is not None
                      and cmark.line != mark.line else "")
            raise ConfigError(source, "",
                              f"YAML syntax error at {where}: {problem}{opened}") from None
        return cls.from_dict(data, source=source, base_dir=str(p.resolve().parent))

    @classmethod
    def from_dict(cls, data: object, source: str = "<dict>", base_dir: str = ".") -> Experiment:
        """Build from a plain mapping with the same keys as the YAML format."""
        r = _Reader(source)
        if data is None:
            raise ConfigError(source, "", "the experiment description is empty")
        doc = r.mapping("", data, TOP_KEYS)
        for key in ("name", "objective", "max_train_steps", "eval_every", "nuisance"):
            if key not in doc:
                raise r.fail(key, "missing (required)")
        obj = r.mapping("objective", doc["objective"], ("metric", "goal"))
        if "metric" not in obj:
            raise r.fail("objective.metric", "missing (required)")
        goal = obj.get("goal", "minimize")
        aliases = {"min": "minimize", "max": "maximize"}
        goal = aliases.get(goal, goal) if isinstance(goal, str) else goal
        if goal not in ("minimize", "maximize"):
            raise r.fail("objective.goal", f"must be minimize or maximize, got {obj.get('goal')!r}")
        search_doc = r.mapping("search", doc.get("search", {}), ("algorithm", "trials", "seed"))
        search = Search(
            algorithm=search_doc.get("algorithm", "quasi_random"),
            trials=r.integer("search.trials", search_doc.get("trials", 20), minimum=1),
            seed=r.integer("search.seed", search_doc.get("seed", 0), minimum=0),
        )
        nuisance_doc = r.mapping("nuisance", doc["nuisance"] or {}, ())
        nuisance = {k: r.hyperparameter(f"nuisance.{k}", v) for k, v in nuisance_doc.items()}
        sci_doc = r.mapping("scientific", doc.get("scientific") or {}, ())
        scientific: dict[str, tuple[Value, ...]] = {}
        for k, v in sci_doc.items():
            values = v if isinstance(v, list) else [v]
            scientific[k] = tuple(r.scalar(f"scientific.{k}[{i}]", x) for i, x in enumerate(values))
        fixed_doc = r.mapping("fixed", doc.get("fixed") or {}, ())
        command = doc.get("command")
        if command is not None:
            if isinstance(command, list) and all(isinstance(c, str) for c in command):
                command = tuple(command)
            elif isinstance(command, str) and command.strip():
                command = tuple(shlex.split(command))
            else:
                raise r.fail("command", f"must be a string or a list of strings, got {command!r}")
        workload = doc.get("workload")
        if workload is not None:
            workload = r.string("workload", workload)
        name = doc["name"]
        if isinstance(name, int | float) and not isinstance(name, bool):
            name = str(name)  # `name: 2024` is a fine name
        goal_text = doc.get("goal")
        if goal_text is not None and not isinstance(goal_text, str):
            raise r.fail("goal", f"must be a string, got {goal_text!r}")
        return cls(
            name=r.string("name", name),
            goal=goal_text or "",
            workload=workload,
            command=command,
            objective=Objective(r.string("objective.metric", obj["metric"]),
                                "maximize" if goal == "maximize" else "minimize"),
            max_train_steps=r.integer("max_train_steps", doc["max_train_steps"], minimum=1),
            eval_every=r.integer("eval_every", doc["eval_every"], minimum=1),
            search=search,
            scientific=scientific,
            nuisance=SearchSpace(nuisance),
            fixed={k: r.scalar(f"fixed.{k}", v) for k, v in fixed_doc.items()},
            trial_timeout=(None if doc.get("trial_timeout") is None
                           else float(r.number("trial_timeout", doc["trial_timeout"]))),
            source=source,
            base_dir=base_dir,
        )

    # ----------------------------------------------------------------- derived
    def studies(self) -> list[StudySpec]:
        """One study per combination of scientific values, in a stable order."""
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
        nuisance: dict[str, Any] = {}
        for name, hp in self.nuisance.items():
            if isinstance(hp, Float):
                nuisance[name] = {"type": "float", "low": hp.low, "high": hp.high,
                                  "scale": hp.scale}
            elif isinstance(hp, Int):
                nuisance[name] = {"type": "int", "low": hp.low, "high": hp.high, "scale": hp.scale}
            elif isinstance(hp, Discrete):
                nuisance[name] = {"type": "discrete", "values": list(hp.values)}
            else:
                nuisance[name] = {"type": "categorical", "values": list(hp.values)}
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
        if self.trial_timeout is not None:
            out["trial_timeout"] = self.trial_timeout
        return out

    def identity(self) -> str:
        """Hash of everything that decides which trials run and how they train.

        The objective, the goal text, the trial budget and the trial timeout are left out: the
        objective can be changed after the fact, a study can be extended because trial ``i``
        does not depend on how many trials there are, and a timeout only decides when to give
        up on a trial, not what it computes.
        """
        d = self.to_dict()
        for key in ("objective", "goal", "name"):
            d.pop(key)
        d.pop("trial_timeout", None)
        d["search"].pop("trials")
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
