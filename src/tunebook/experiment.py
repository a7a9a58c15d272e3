"""Experiments: one round of the playbook's incremental tuning strategy, as data.

An :class:`Experiment` names a goal, an objective, the scientific hyperparameters (one study per
value, or per combination of values), the nuisance search space (optimised away inside each study)
and the fixed values. It is built from YAML (:meth:`Experiment.from_yaml`), from a plain dict
(:meth:`Experiment.from_dict`) or directly in Python; every path validates the same way and every
error names the source, the key and the bad value.

Limits, checked here so that bad input is refused before anything is written, whatever the store:

- names (experiment, studies, hyperparameters) hold at most 255 characters, metric names 128, and
  no control characters (newline, tab, NUL, terminal escapes);
- ``max_train_steps`` and ``eval_every`` are at most 2**31 - 1, ``search.seed`` at most 2**63 - 1;
- an experiment holds at most :data:`MAX_TRIALS` (100,000) trials in all, studies times trials
  per study (or grid points): every trial is written to the store when a run starts;
- numbers are finite (no ``.nan``, ``.inf``), a float range's width too; ``int`` bounds are
  within +-2**53; ``trial_timeout`` is at most 1e9 seconds;
- a YAML document is nested at most :data:`MAX_DEPTH` (64) levels.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import re
import reprlib
import shlex
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunebook.errors import ConfigError
from tunebook.numeric import finite
from tunebook.objective import Objective, parse_goal
from tunebook.space import (
    Categorical,
    Discrete,
    Float,
    Hyperparameter,
    HyperparameterError,
    Int,
    SearchSpace,
    Value,
)

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

# Limits of the store's columns, enforced here so that bad input is refused before anything is
# written, the same way on every backend (SQLite does not enforce column sizes, PostgreSQL does).
# store.py holds the same values; keep them in step.
MAX_NAME_LENGTH = 255  # experiment, study and hyperparameter names (characters)
MAX_METRIC_LENGTH = 128  # metric names (characters)
MAX_STEP = 2**31 - 1  # steps are 32-bit integers in the store
MAX_SEED = 2**63 - 1  # seeds are 64-bit signed integers in the store
# Every trial of an experiment is written to the store (and held in memory) when a run starts,
# a few hundred bytes each: 100,000 trials is already far beyond what the playbook's
# exploration rounds need.
MAX_TRIALS = 100_000
MAX_TRIAL_TIMEOUT = 1e9  # seconds (about 31 years); larger values overflow OS timers
# Integer hyperparameters are sampled through floats: beyond 2**53 not every integer exists.
MAX_INT_BOUND = 2**53
MAX_DEPTH = 64  # nesting levels of a YAML document (an experiment needs 4)
BOOL_HINT = " (YAML reads unquoted yes/no/on/off as booleans: quote it)"


def _algorithms() -> tuple[str, ...]:
    """The registered search designers (imported late: validation needs only their names)."""
    from tunebook.search import designer_names

    return designer_names()


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
    "checks",
)
# Keys written at the top level that belong one level down.
_MOVED = {"trials": "search.trials", "seed": "search.seed", "algorithm": "search.algorithm",
          "metric": "objective.metric", "timeout": "trial_timeout"}
_EXP_RE = re.compile(r"^[+-]?\d+(\.\d*)?[eE][+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 100
_REPR.maxlong = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def _show(value: object) -> str:
    """``repr(value)``, shortened: error messages stay one readable line whatever the input
    (a megabyte string, a list nested 10,000 deep, a billion-laughs alias structure)."""
    return _REPR.repr(value)


def _got(value: object) -> str:
    """``got VALUE`` for a message where a string was expected, with the YAML 1.1 hint."""
    return f"got {_show(value)}" + (BOOL_HINT if isinstance(value, bool) else "")


def _bad_char(text: str, names: bool) -> str | None:
    """The first character a string may not hold: lone surrogates (they cannot be written as
    UTF-8) and NUL everywhere; in names also every other control character (newline, tab,
    terminal escapes) and the line/paragraph separators."""
    for c in text:
        cat = unicodedata.category(c)
        if cat == "Cs" or c == "\0" or (names and cat in ("Cc", "Zl", "Zp")):
            return c
    return None


class _TooDeep(yaml.YAMLError):
    def __init__(self, line: int) -> None:
        super().__init__(f"nested deeper than {MAX_DEPTH} levels")
        self.line = line


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int, first_line: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one) and documents
    nested deeper than :data:`MAX_DEPTH` (PyYAML composes recursively: 20,000 levels exhaust
    Python's stack)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise _TooDeep(event.start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

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
class Search:
    """How each study samples the nuisance space: algorithm, trials per study, seed."""

    algorithm: str = "quasi_random"
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
            raise self.fail(key, f"must be a mapping, got {_show(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, {_got(k)}")
            if allowed and k not in allowed:
                where = f"{key}.{k}" if key else k
                hint = (f" (did you mean {_MOVED[k]!r}?)" if not key and k in _MOVED
                        else _nearest(k, allowed))
                raise self.fail(self.key(where), f"unknown key {_show(k)}{hint}")
        return dict(value)

    def key(self, text: object) -> str:
        """A key path as shown in messages: control characters escaped, long names cut."""
        if not isinstance(text, str):
            return _show(text)
        if len(text) <= 80 and _bad_char(text, names=True) is None:
            return text
        return _show(text[:80])[1:-1] + ("..." if len(text) > 80 else "")

    def text(self, key: str, value: str, names: bool = False) -> str:
        bad = _bad_char(value, names)
        if bad is not None:
            what = "a lone surrogate" if unicodedata.category(bad) == "Cs" else (
                "the control character")
            raise self.fail(key, f"contains {what} {bad!r}, got {_show(value)}")
        return value

    def string(self, key: str, value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, {_got(value)}")
        return self.text(key, value)

    def name(self, key: str, value: object, limit: int = MAX_NAME_LENGTH) -> str:
        """A name the store keeps in a column (or that becomes a folder name): one line, no
        control characters, at most ``limit`` characters."""
        text = self.text(key, self.string(key, value), names=True)
        if len(text) > limit:
            raise self.fail(key, f"is {len(text)} characters long, at most {limit} are allowed"
                                 f", got {_show(text)}")
        return text

    def integer(self, key: str, value: object, minimum: int | None = None,
                maximum: int | None = None, why: str = "") -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {_show(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {_show(value)}")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be <= {maximum}{why}, got {_show(value)}")
        return value

    def number(self, key: str, value: object) -> float | int:
        # PyYAML reads 1e-4 (no dot) as a string: accept numeric strings for number fields.
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, got {_show(value)}")
        if finite(value) is None:
            raise self.fail(key, f"must be finite, got {_show(value)}")
        return value

    def scalar(self, key: str, value: object) -> Value:
        # PyYAML (YAML 1.1) reads 1e-4, without a dot, as a string: it is a number.
        if isinstance(value, str) and _EXP_RE.match(value.strip()):
            value = float(value)
        if not isinstance(value, str | int | float | bool):
            raise self.fail(key, f"must be a string, number or boolean, got {_show(value)}")
        if isinstance(value, float) and finite(value) is None:
            raise self.fail(key, f"must be finite, got {_show(value)}")
        if isinstance(value, str):
            self.text(key, value)
        return value

    def choice(self, key: str, value: object, choices: tuple[str, ...], what: str) -> str:
        if not isinstance(value, str) or value not in choices:
            raise self.fail(key, f"unknown {what} {_show(value)}"
                                 f"{BOOL_HINT if isinstance(value, bool) else ''}"
                                 f"{_nearest(str(value), choices)}"
                                 f"; one of {', '.join(choices)}")
        return value

    def hyperparameter(self, key: str, value: object) -> Hyperparameter:
        if isinstance(value, list):  # shorthand: a list of choices
            value = {"type": "categorical", "values": value}
        spec = self.mapping(key, value, ("type", "low", "high", "scale", "values"))
        kind = spec.get("type")
        kinds = ("float", "int", "discrete", "categorical")
        if kind is None:
            raise self.fail(f"{key}.type", f"missing; one of {', '.join(kinds)}")
        kind = self.choice(f"{key}.type", kind, kinds, "type")
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
                if kind == "int" and scale == "one_minus_log":
                    raise self.fail(f"{key}.scale", "'one_minus_log' is only for type float "
                                    "(values just below 1, like momentum); int takes linear "
                                    "or log")
                scales: tuple[str, ...] = ("linear", "log")
                if kind == "float":
                    scales = (*scales, "one_minus_log")
                scale = self.choice(f"{key}.scale", scale, scales, "scale")
                if kind == "float":
                    low, high = (self.number(f"{key}.{b}", spec[b]) for b in ("low", "high"))
                    return Float(float(low), float(high), scale)  # type: ignore[arg-type]
                bounds = []
                for b in ("low", "high"):
                    bounds.append(self.integer(
                        f"{key}.{b}", spec[b], -MAX_INT_BOUND, MAX_INT_BOUND,
                        " (integers are sampled through floats, exact up to 2**53)"))
                return Int(bounds[0], bounds[1], scale)  # type: ignore[arg-type]
            values = spec.get("values")
            if not isinstance(values, list):
                raise self.fail(f"{key}.values", f"must be a list, got {_show(values)}")
            if kind == "discrete":
                nums = tuple(self.number(f"{key}.values[{i}]", v) for i, v in enumerate(values))
                return Discrete(nums)
            return Categorical(
                tuple(self.scalar(f"{key}.values[{i}]", v) for i, v in enumerate(values)))
        except HyperparameterError as exc:
            # The space module's own checks (low >= high, log with low <= 0, ...).
            raise self.fail(f"{key}.{exc.field}", str(exc)) from None


def _split_command(r: _Reader, command: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(command))
    except ValueError as exc:  # an unbalanced quote, a trailing backslash
        raise r.fail("command", f"cannot be split into arguments ({exc}), "
                                f"got {_show(command)}") from None


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
    source: str = "<python>"
    base_dir: str = "."

    def __post_init__(self) -> None:
        if not isinstance(self.nuisance, SearchSpace):
            object.__setattr__(self, "nuisance", SearchSpace(self.nuisance))
        if isinstance(self.command, str):
            object.__setattr__(self, "command", _split_command(_Reader(self.source),
                                                               self.command))
        object.__setattr__(
            self, "scientific", {k: tuple(v) for k, v in sorted(self.scientific.items())})
        object.__setattr__(self, "fixed", dict(self.fixed))
        object.__setattr__(self, "checks", {k: dict(v) for k, v in self.checks.items()})
        self._validate()

    # ----------------------------------------------------------------- validation
    def _validate(self) -> None:
        r = _Reader(self.source)
        if isinstance(self.name, str) and "\n" in self.name:
            raise r.fail("name", f"must be one line, got {_show(self.name)}")
        r.name("name", self.name)
        if (self.workload is None) == (self.command is None):
            raise r.fail("workload",
                         "give exactly one of 'workload' (module:function) or 'command'")
        if self.workload is not None:
            r.string("workload", self.workload)
            module, _, func = self.workload.partition(":")
            if not module or not func:
                raise r.fail("workload", f"must be 'module:function', got {_show(self.workload)}")
        if self.command is not None:
            if not self.command:
                raise r.fail("command", "must not be empty")
            for i, part in enumerate(self.command):
                if not isinstance(part, str):
                    raise r.fail(f"command[{i}]", f"must be a string, {_got(part)}")
                r.text(f"command[{i}]", part)
        r.name("objective.metric", self.objective.metric, MAX_METRIC_LENGTH)
        if self.objective.goal not in ("minimize", "maximize"):
            raise r.fail("objective.goal",
                         f"must be minimize or maximize, {_got(self.objective.goal)}")
        if not isinstance(self.goal, str):
            raise r.fail("goal", f"must be a string, {_got(self.goal)}")
        r.text("goal", self.goal)
        steps_why = " (the store keeps steps as 32-bit integers)"
        r.integer("max_train_steps", self.max_train_steps, 1, MAX_STEP, steps_why)
        if self.trial_timeout is not None:
            timeout = r.number("trial_timeout", self.trial_timeout)
            if timeout <= 0:
                raise r.fail("trial_timeout", f"must be > 0 seconds, got {_show(timeout)}")
            if timeout > MAX_TRIAL_TIMEOUT:
                raise r.fail("trial_timeout", f"must be <= {MAX_TRIAL_TIMEOUT:.0e} seconds "
                                              f"(about 31 years), got {_show(timeout)}")
        r.integer("eval_every", self.eval_every, 1, MAX_STEP, steps_why)
        if self.eval_every > self.max_train_steps:
            raise r.fail("eval_every", f"must be <= max_train_steps ({self.max_train_steps}), "
                         f"got {self.eval_every}")
        r.choice("search.algorithm", self.search.algorithm, _algorithms(), "algorithm")
        r.integer("search.trials", self.search.trials, 1, MAX_TRIALS,
                  " (an experiment holds at most that many trials, all written to the store "
                  "when a run starts)")
        r.integer("search.seed", self.search.seed, 0, MAX_SEED,
                  " (the store keeps seeds as 64-bit integers)")
        if len(self.nuisance) == 0:
            raise r.fail("nuisance", "the search space is empty: a study needs at least one "
                         "nuisance hyperparameter to optimise away")
        for role, names in (("scientific", self.scientific), ("nuisance", self.nuisance),
                            ("fixed", self.fixed)):
            for name in names:
                r.name(f"{role}.{r.key(name)}", name)
        if self.search.algorithm == "grid" and len(self.nuisance) > 2:
            raise r.fail("search.algorithm", f"grid search only suits 1-2 nuisance hyperparameters"
                         f" (the playbook), got {len(self.nuisance)}: use quasi_random")
        for name, values in self.scientific.items():
            if not values:
                raise r.fail(f"scientific.{name}", "must list at least one value")
            for i, v in enumerate(values):
                r.scalar(f"scientific.{name}[{i}]", v)
                label = f"{name}={v}"
                if _bad_char(label, names=True) is not None:
                    # A study's name is made of its scientific values.
                    r.text(f"scientific.{name}[{i}]", str(v), names=True)
            if len(set(values)) != len(values):
                raise r.fail(f"scientific.{name}",
                             f"values must be distinct, got {_show(list(values))}")
        for name, v in self.fixed.items():
            r.scalar(f"fixed.{name}", v)
        self._check_size(r)
        seen: dict[str, StudySpec] = {}
        for spec in self.studies():
            if len(spec.name) > MAX_NAME_LENGTH:
                raise r.fail("scientific", f"gives the study name {_show(spec.name)} of "
                             f"{len(spec.name)} characters, at most {MAX_NAME_LENGTH} are "
                             "allowed: shorten the scientific names or values")
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

    def _check_size(self, r: _Reader) -> None:
        """At most :data:`MAX_TRIALS` trials in all: every one is materialised up front."""
        studies = math.prod(len(v) for v in self.scientific.values())
        if studies > MAX_TRIALS:
            raise r.fail("scientific", f"{studies:,} combinations of scientific values, i.e. "
                         f"{studies:,} studies; an experiment holds at most {MAX_TRIALS:,} "
                         "trials: split it into several experiments")
        budget, key = self.search.trials, "search.trials"
        if self.search.algorithm == "grid":
            from tunebook.search import GridDesigner

            budget, key = GridDesigner(self.nuisance, self.search.seed,
                                       self.search.trials).capacity(), "nuisance"
        total = studies * budget
        if total > MAX_TRIALS:
            what = "grid points" if key == "nuisance" else "trials"
            raise r.fail(key, f"{studies:,} stud{'y' if studies == 1 else 'ies'} x {budget:,} "
                         f"{what} = {total:,} trials; an "
                         f"experiment holds at most {MAX_TRIALS:,} (every trial is written to "
                         "the store when a run starts): lower search.trials, use fewer values, "
                         "or split the experiment")

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
            hint = BOOL_HINT if exc.key in ("True", "False") else ""
            raise ConfigError(source, exc.key, f"duplicate key {exc.key!r} at line {exc.line} "
                              f"(first at line {exc.first_line}){hint}") from None
        except _TooDeep as exc:
            raise ConfigError(source, "", f"YAML nested deeper than {MAX_DEPTH} levels at line "
                              f"{exc.line}: an experiment file needs 4") from None
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
        except (ValueError, OverflowError, RecursionError, MemoryError) as exc:
            # PyYAML's own conversions: an integer of more than 4300 digits, for one.
            raise ConfigError(source, "", f"cannot read a value: {_show(str(exc))}") from None
        return cls.from_dict(data, source=source, base_dir=str(p.resolve().parent))

    @classmethod
    def from_dict(cls, data: object, source: str = "<dict>", base_dir: str = ".") -> Experiment:
        """Build from a plain mapping with the same keys as the YAML format."""
        r = _Reader(source)
        if data is None:
            raise ConfigError(source, "", "the experiment description is empty")
        if not isinstance(data, Mapping):
            raise ConfigError(source, "", "must be a mapping of keys (name, objective, ...), "
                              f"got {_show(data)}")
        doc = r.mapping("", data, TOP_KEYS)
        for key in ("name", "objective", "max_train_steps", "eval_every", "nuisance"):
            if key not in doc:
                raise r.fail(key, "missing (required)")
        obj = r.mapping("objective", doc["objective"], ("metric", "goal"))
        if "metric" not in obj:
            raise r.fail("objective.metric", "missing (required)")
        goal = parse_goal(obj.get("goal", "minimize"))
        if goal is None:
            raise r.fail("objective.goal", f"must be minimize or maximize (or min, max), "
                                           f"{_got(obj.get('goal'))}")
        search_doc = r.mapping("search", doc.get("search") or {}, ("algorithm", "trials", "seed"))
        search = Search(
            algorithm=r.choice("search.algorithm", search_doc.get("algorithm", "quasi_random"),
                               _algorithms(), "algorithm"),
            trials=r.integer("search.trials", search_doc.get("trials", 20), minimum=1),
            seed=r.integer("search.seed", search_doc.get("seed", 0), minimum=0),
        )
        nuisance_doc = r.mapping("nuisance", doc["nuisance"] or {}, ())
        nuisance = {}
        for k, v in nuisance_doc.items():
            key = f"nuisance.{r.key(k)}"
            r.name(key, k)
            nuisance[k] = r.hyperparameter(key, v)
        sci_doc = r.mapping("scientific", doc.get("scientific") or {}, ())
        scientific: dict[str, tuple[Value, ...]] = {}
        for k, v in sci_doc.items():
            r.name(f"scientific.{r.key(k)}", k)
            values = v if isinstance(v, list) else [v]
            scientific[k] = tuple(r.scalar(f"scientific.{k}[{i}]", x) for i, x in enumerate(values))
        fixed_doc = r.mapping("fixed", doc.get("fixed") or {}, ())
        for k in fixed_doc:
            r.name(f"fixed.{r.key(k)}", k)
        command = doc.get("command")
        if command is not None:
            if isinstance(command, list) and all(isinstance(c, str) for c in command):
                command = tuple(command)
            elif isinstance(command, str) and command.strip():
                command = _split_command(r, command)
            else:
                raise r.fail("command", f"must be a string or a list of strings, {_got(command)}")
        workload = doc.get("workload")
        if workload is not None:
            workload = r.string("workload", workload)
        name = doc["name"]
        if isinstance(name, int | float) and not isinstance(name, bool):
            name = str(name)  # `name: 2024` is a fine name
        goal_text = doc.get("goal")
        if goal_text is not None and not isinstance(goal_text, str):
            raise r.fail("goal", f"must be a string, {_got(goal_text)}")
        timeout = doc.get("trial_timeout")
        checks = {}
        for family, values in r.mapping("checks", doc.get("checks") or {}, ()).items():
            key = f"checks.{r.key(family)}"
            checks[family] = {k: r.scalar(f"{key}.{r.key(k)}", v)
                              for k, v in r.mapping(key, values, ()).items()}
        return cls(
            name=r.name("name", name),
            goal=goal_text or "",
            workload=workload,
            command=command,
            objective=Objective(r.name("objective.metric", obj["metric"], MAX_METRIC_LENGTH),
                                goal),
            max_train_steps=r.integer("max_train_steps", doc["max_train_steps"], minimum=1),
            eval_every=r.integer("eval_every", doc["eval_every"], minimum=1),
            search=search,
            scientific=scientific,
            nuisance=SearchSpace(nuisance),
            fixed={k: r.scalar(f"fixed.{k}", v) for k, v in fixed_doc.items()},
            trial_timeout=None if timeout is None else r.number("trial_timeout", timeout),
            checks=checks,
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
        if self.trial_timeout is not None:
            out["trial_timeout"] = self.trial_timeout
        if self.checks:
            out["checks"] = {k: dict(v) for k, v in self.checks.items()}
        return out

    def identity(self) -> str:
        """Hash of everything that decides which trials run and how they train.

        The objective, the goal text, the trial budget, the trial timeout and the checks'
        thresholds are left out: the objective can be changed after the fact, a study can be
        extended because trial ``i`` does not depend on how many trials there are, a timeout
        only decides when to give up on a trial, not what it computes, and thresholds only
        change how the results are read.
        """
        d = self.to_dict()
        for key in ("objective", "goal", "name"):
            d.pop(key)
        d.pop("trial_timeout", None)
        d.pop("checks", None)  # thresholds of the analysis: they change no trial
        d["search"].pop("trials")
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
