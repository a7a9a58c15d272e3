"""Reading an experiment: YAML text to plain data, plain data to an Experiment's fields.

Reading only converts (numbers written as ``1e-4``, a command line split into arguments, the
hyperparameter definitions built into their kinds) and checks what the conversion needs (the
document's shape, required and unknown keys); the rules about the values are checked once, when
the Experiment is built (:func:`tunebook.experiment.checks.check_experiment`).

:data:`TOP_KEYS` lists the keys an experiment document may hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tunebook.errors import ConfigError
from tunebook.experiment.checks import (
    BOOL_HINT,
    MAX_DEPTH,
    MAX_INT_BOUND,
    Reader,
    as_number,
    as_scalar,
    got,
    nearest,
    show,
)
from tunebook.experiment.conditional import parse_conditional
from tunebook.experiment.listed import parse_configs
from tunebook.experiment.resources import parse_resources
from tunebook.objective import parse_goal
from tunebook.search.space import (
    Categorical,
    Discrete,
    Float,
    Hyperparameter,
    HyperparameterError,
    Int,
    SearchSpace,
)

__all__ = ["TOP_KEYS", "DocumentReader", "parse_document", "read_yaml"]

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
    "configs",
    "nuisance",
    "nuisance_for",
    "fixed",
    "trial_timeout",
    "checks",
    "follows",
    "checkpoint_root",
    "resources",
)
"""The keys an experiment document may hold at its top level."""
# Keys written at the top level that belong one level down.
_MOVED = {"trials": "search.trials", "seed": "search.seed", "algorithm": "search.algorithm",
          "metric": "objective.metric", "timeout": "trial_timeout"}


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


class DocumentReader(Reader):
    """Reads the parts of an experiment document, raising ConfigError with source and key."""

    def mapping(self, key: str, value: object, allowed: tuple[str, ...]) -> dict[str, Any]:
        """``value`` as a dict with string keys; with ``allowed``, no other key."""
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a mapping, got {show(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, {got(k)}")
            if allowed and k not in allowed:
                where = f"{key}.{k}" if key else k
                hint = (f" (did you mean {_MOVED[k]!r}?)" if not key and k in _MOVED
                        else nearest(k, allowed))
                raise self.fail(self.key(where), f"unknown key {show(k)}{hint}")
        return dict(value)

    def hyperparameter(self, key: str, value: object) -> Hyperparameter:
        """One nuisance hyperparameter's definition, built into its kind."""
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
                raise self.fail(f"{key}.values", f"must be a list, got {show(values)}")
            if kind == "discrete":
                nums = tuple(self.number(f"{key}.values[{i}]", v) for i, v in enumerate(values))
                return Discrete(nums)
            return Categorical(
                tuple(self.scalar(f"{key}.values[{i}]", v) for i, v in enumerate(values)))
        except HyperparameterError as exc:
            # The space module's own checks (low >= high, log with low <= 0, ...).
            raise self.fail(f"{key}.{exc.field}", str(exc)) from None


def read_yaml(path: str | Path) -> tuple[object, str]:
    """The plain data of an experiment file and the folder it lies in; errors name the file,
    the line and what is wrong."""
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
        raise ConfigError(source, "", f"cannot read a value: {show(str(exc))}") from None
    return data, str(p.resolve().parent)


def parse_document(data: object, source: str) -> dict[str, Any]:
    """The fields of an Experiment from a plain mapping with the YAML format's keys.

    ``objective`` comes back as ``(metric, goal)`` and ``search`` as a dict of
    :class:`~tunebook.experiment.Search`'s fields; the values are checked when the Experiment
    is built.
    """
    r = DocumentReader(source)
    if data is None:
        raise ConfigError(source, "", "the experiment description is empty")
    if not isinstance(data, Mapping):
        raise ConfigError(source, "", "must be a mapping of keys (name, objective, ...), "
                          f"got {show(data)}")
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
                                       f"{got(obj.get('goal'))}")
    search = r.mapping("search", doc.get("search") or {},
                       ("algorithm", "trials", "seed", "seeds", "options"))
    options: dict[str, Any] = {}
    for k, v in r.mapping("search.options", search.get("options") or {}, ()).items():
        items = v if isinstance(v, list) else [v]
        if not all(x is None or isinstance(x, str | int | float | bool) for x in items):
            raise r.fail(f"search.options.{r.key(k)}",
                         f"must be a number, a string, a boolean or a list of them, {got(v)}")
        options[str(k)] = [as_scalar(x) for x in v] if isinstance(v, list) else as_scalar(v)
    if "seeds" in search:  # study variance: the search repeated with each seed
        if not isinstance(search["seeds"], list) or not search["seeds"]:
            raise r.fail("search.seeds", f"must be a list of integers, {got(search['seeds'])}")
        if "seed" in search and search["seed"] != search["seeds"][0]:
            raise r.fail("search.seed", f"the first of search.seeds is the primary search's "
                         f"seed: give one of them, got seed {show(search['seed'])} and seeds "
                         f"{show(search['seeds'])}")
    nuisance = {k: r.hyperparameter(f"nuisance.{r.key(k)}", v)
                for k, v in r.mapping("nuisance", doc["nuisance"] or {}, ()).items()}
    scientific = {k: tuple(as_scalar(x) for x in (v if isinstance(v, list) else [v]))
                  for k, v in r.mapping("scientific", doc.get("scientific") or {}, ()).items()}
    fixed = {k: as_scalar(v) for k, v in r.mapping("fixed", doc.get("fixed") or {}, ()).items()}
    command = doc.get("command")
    if command is not None:
        if isinstance(command, list) and all(isinstance(c, str) for c in command):
            command = tuple(command)
        elif not isinstance(command, str) or not command.strip():
            raise r.fail("command", f"must be a string or a list of strings, {got(command)}")
    name = doc["name"]
    if isinstance(name, int | float) and not isinstance(name, bool):
        name = str(name)  # `name: 2024` is a fine name
    goal_text = doc.get("goal")
    timeout = doc.get("trial_timeout")
    follows = doc.get("follows")
    if isinstance(follows, int | float) and not isinstance(follows, bool):
        follows = str(follows)
    checks = {}
    for family, values in r.mapping("checks", doc.get("checks") or {}, ()).items():
        checks[family] = {k: as_scalar(v)
                          for k, v in r.mapping(f"checks.{r.key(family)}", values, ()).items()}
    return {
        "name": name,
        "goal": "" if goal_text is None else goal_text,
        "workload": doc.get("workload"),
        "command": command,
        "objective": (obj["metric"], goal),
        "max_train_steps": doc["max_train_steps"],
        "eval_every": doc["eval_every"],
        "search": {"algorithm": search.get("algorithm", "quasi_random"),
                   "trials": search.get("trials", 20), "seed": search.get("seed", 0),
                   **({"seeds": tuple(search["seeds"])} if "seeds" in search else {}),
                   **({"options": options} if options else {})},
        "scientific": scientific,
        "configs": parse_configs(r, doc.get("configs")),
        "nuisance": SearchSpace(nuisance),
        "nuisance_for": parse_conditional(r, doc.get("nuisance_for")),
        "fixed": fixed,
        "trial_timeout": None if timeout is None else as_number(timeout),
        "checks": checks,
        "follows": follows,
        "checkpoint_root": doc.get("checkpoint_root"),
        "resources": parse_resources(r, doc.get("resources")),
    }
