"""The rules an experiment follows, checked once, when an Experiment is built.

Limits, checked here so that bad input is refused before anything is written, whatever the store:

- names (experiment, studies, hyperparameters) hold at most 255 characters, metric names 128, and
  no control characters (newline, tab, NUL, terminal escapes);
- ``max_train_steps`` and ``eval_every`` are at most 2**31 - 1, ``search.seed`` at most 2**63 - 1;
- an experiment holds at most :data:`MAX_TRIALS` (100,000) trials in all, studies times trials
  per study (or grid points): every trial is written to the store when a run starts;
- numbers are finite (no ``.nan``, ``.inf``), a float range's width too; ``int`` bounds are
  within +-2**53; ``trial_timeout`` is at most 1e9 seconds;
- a YAML document is nested at most :data:`MAX_DEPTH` (64) levels.

:func:`algorithms` lists the names ``search.algorithm`` accepts (the registered designers);
:func:`check_experiment` holds every rule about an experiment's values.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import reprlib
import shlex
import unicodedata
from typing import TYPE_CHECKING

from tunebook.core.limits import MAX_METRIC_LENGTH, MAX_NAME_LENGTH, MAX_SEED, MAX_STEP
from tunebook.core.numeric import finite
from tunebook.errors import ConfigError
from tunebook.search.space import Value

if TYPE_CHECKING:
    from tunebook.experiment import Experiment, StudySpec

__all__ = [
    "BOOL_HINT",
    "MAX_DEPTH",
    "MAX_INT_BOUND",
    "MAX_METRIC_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_SEED",
    "MAX_STEP",
    "MAX_TRIALS",
    "MAX_TRIAL_TIMEOUT",
    "Reader",
    "algorithms",
    "as_number",
    "as_scalar",
    "bad_char",
    "check_experiment",
    "got",
    "nearest",
    "show",
]

# Every trial of an experiment is written to the store (and held in memory) when a run starts,
# a few hundred bytes each: 100,000 trials is already far beyond what the playbook's
# exploration rounds need.
MAX_TRIALS = 100_000
MAX_TRIAL_TIMEOUT = 1e9  # seconds (about 31 years); larger values overflow OS timers
# Integer hyperparameters are sampled through floats: beyond 2**53 not every integer exists.
MAX_INT_BOUND = 2**53
MAX_DEPTH = 64  # nesting levels of a YAML document (an experiment needs 4)
BOOL_HINT = " (YAML reads unquoted yes/no/on/off as booleans: quote it)"
_EXP_RE = re.compile(r"^[+-]?\d+(\.\d*)?[eE][+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 100
_REPR.maxlong = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def show(value: object) -> str:
    """``repr(value)``, shortened: error messages stay one readable line whatever the input
    (a megabyte string, a list nested 10,000 deep, a billion-laughs alias structure)."""
    return _REPR.repr(value)


def got(value: object) -> str:
    """``got VALUE`` for a message where a string was expected, with the YAML 1.1 hint."""
    return f"got {show(value)}" + (BOOL_HINT if isinstance(value, bool) else "")


def bad_char(text: str, names: bool) -> str | None:
    """The first character a string may not hold: lone surrogates (they cannot be written as
    UTF-8) and NUL everywhere; in names also every other control character (newline, tab,
    terminal escapes) and the line/paragraph separators."""
    for c in text:
        cat = unicodedata.category(c)
        if cat == "Cs" or c == "\0" or (names and cat in ("Cc", "Zl", "Zp")):
            return c
    return None


def nearest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """`` (did you mean X?)`` for the choice closest to ``word``, or nothing."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def algorithms() -> tuple[str, ...]:
    """The names ``search.algorithm`` accepts: the registered search designers (imported late:
    validation needs only their names)."""
    from tunebook.search.designers import designer_names

    return designer_names()


def as_number(value: object) -> object:
    """A number field's value: PyYAML reads 1e-4 (no dot) as a string, so numeric strings are
    numbers; anything else is returned as it is."""
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    return value


def as_scalar(value: object) -> object:
    """A hyperparameter value: PyYAML (YAML 1.1) reads 1e-4, without a dot, as a string; it is
    a number. Other strings (``"1.5"`` quoted on purpose) stay strings."""
    if isinstance(value, str) and _EXP_RE.match(value.strip()):
        return float(value)
    return value


class Reader:
    """Checks values of one experiment and raises ConfigError naming the source and key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.source, key, message)

    def key(self, text: object) -> str:
        """A key path as shown in messages: control characters escaped, long names cut."""
        if not isinstance(text, str):
            return show(text)
        if len(text) <= 80 and bad_char(text, names=True) is None:
            return text
        return show(text[:80])[1:-1] + ("..." if len(text) > 80 else "")

    def text(self, key: str, value: str, names: bool = False) -> str:
        bad = bad_char(value, names)
        if bad is not None:
            what = "a lone surrogate" if unicodedata.category(bad) == "Cs" else (
                "the control character")
            raise self.fail(key, f"contains {what} {bad!r}, got {show(value)}")
        return value

    def string(self, key: str, value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, {got(value)}")
        return self.text(key, value)

    def name(self, key: str, value: object, limit: int = MAX_NAME_LENGTH) -> str:
        """A name the store keeps in a column (or that becomes a folder name): one line, no
        control characters, at most ``limit`` characters."""
        text = self.text(key, self.string(key, value), names=True)
        if len(text) > limit:
            raise self.fail(key, f"is {len(text)} characters long, at most {limit} are allowed"
                                 f", got {show(text)}")
        return text

    def integer(self, key: str, value: object, minimum: int | None = None,
                maximum: int | None = None, why: str = "") -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {show(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {show(value)}")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be <= {maximum}{why}, got {show(value)}")
        return value

    def number(self, key: str, value: object) -> float | int:
        value = as_number(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, got {show(value)}")
        if finite(value) is None:
            raise self.fail(key, f"must be finite, got {show(value)}")
        return value

    def scalar(self, key: str, value: object) -> Value:
        value = as_scalar(value)
        if not isinstance(value, str | int | float | bool):
            raise self.fail(key, f"must be a string, number or boolean, got {show(value)}")
        if isinstance(value, float) and finite(value) is None:
            raise self.fail(key, f"must be finite, got {show(value)}")
        if isinstance(value, str):
            self.text(key, value)
        return value

    def choice(self, key: str, value: object, choices: tuple[str, ...], what: str) -> str:
        if not isinstance(value, str) or value not in choices:
            raise self.fail(key, f"unknown {what} {show(value)}"
                                 f"{BOOL_HINT if isinstance(value, bool) else ''}"
                                 f"{nearest(str(value), choices)}"
                                 f"; one of {', '.join(choices)}")
        return value

    def command(self, command: str) -> tuple[str, ...]:
        """A command line split into arguments the way a POSIX shell would."""
        try:
            return tuple(shlex.split(command))
        except ValueError as exc:  # an unbalanced quote, a trailing backslash
            raise self.fail("command", f"cannot be split into arguments ({exc}), "
                                       f"got {show(command)}") from None


def check_experiment(exp: Experiment) -> None:
    """Check every rule an experiment must follow; raise ConfigError on the first broken one.

    Called once, when an :class:`~tunebook.experiment.Experiment` is built (from a file, a dict
    or Python): reading a document only converts it, the rules live here.
    """
    r = Reader(exp.source)
    _check_program(exp, r)
    _check_lengths(exp, r)
    _check_search(exp, r)
    _check_values(exp, r)
    _check_size(exp, r)
    # Imported here: they import this module's Reader.
    from tunebook.experiment.conditional import check_conditional
    from tunebook.experiment.listed import check_configs
    from tunebook.experiment.resources import check_resources

    check_configs(exp, r)
    check_resources(exp, r)
    check_conditional(exp, r)
    _check_studies(exp, r)
    _check_search_seeds(exp, r)


def _check_program(exp: Experiment, r: Reader) -> None:
    """The name, what a trial runs, the objective and the goal text."""
    r.name("name", exp.name)
    if (exp.workload is None) == (exp.command is None):
        raise r.fail("workload",
                     "give exactly one of 'workload' (module:function) or 'command'")
    if exp.workload is not None:
        r.string("workload", exp.workload)
        module, _, func = exp.workload.partition(":")
        if not module or not func:
            raise r.fail("workload", f"must be 'module:function', got {show(exp.workload)}")
    if exp.command is not None:
        if not exp.command:
            raise r.fail("command", "must not be empty")
        for i, part in enumerate(exp.command):
            if not isinstance(part, str):
                raise r.fail(f"command[{i}]", f"must be a string, {got(part)}")
            r.text(f"command[{i}]", part)
    r.name("objective.metric", exp.objective.metric, MAX_METRIC_LENGTH)
    if exp.objective.goal not in ("minimize", "maximize"):
        raise r.fail("objective.goal",
                     f"must be minimize or maximize, {got(exp.objective.goal)}")
    if not isinstance(exp.goal, str):
        raise r.fail("goal", f"must be a string, {got(exp.goal)}")
    r.text("goal", exp.goal)
    if exp.follows is not None and (not isinstance(exp.follows, str) or not exp.follows.strip()
                                    or exp.follows == exp.name):
        raise r.fail("follows", "must name another experiment (the one this round follows), "
                                f"{got(exp.follows)}")
    if exp.checkpoint_root is not None:
        from tunebook.core.storage import storage_location_problem

        if (problem := storage_location_problem(exp.checkpoint_root)) is not None:
            raise r.fail("checkpoint_root", problem)


def _check_lengths(exp: Experiment, r: Reader) -> None:
    """Training length, evaluation period and the trial timeout."""
    steps_why = " (the store keeps steps as 32-bit integers)"
    r.integer("max_train_steps", exp.max_train_steps, 1, MAX_STEP, steps_why)
    if exp.trial_timeout is not None:
        timeout = r.number("trial_timeout", exp.trial_timeout)
        if timeout <= 0:
            raise r.fail("trial_timeout", f"must be > 0 seconds, got {show(timeout)}")
        if timeout > MAX_TRIAL_TIMEOUT:
            raise r.fail("trial_timeout", f"must be <= {MAX_TRIAL_TIMEOUT:.0e} seconds "
                                          f"(about 31 years), got {show(timeout)}")
    r.integer("eval_every", exp.eval_every, 1, MAX_STEP, steps_why)
    if exp.eval_every > exp.max_train_steps:
        raise r.fail("eval_every", f"must be <= max_train_steps ({exp.max_train_steps}), "
                     f"got {exp.eval_every}")


def _check_search(exp: Experiment, r: Reader) -> None:
    """The search: a registered algorithm, the trials, the seed, the space, the options."""
    from tunebook.search.designers import OptionError, designer_class

    try:
        cls, variant = designer_class(exp.search.algorithm)
    except ValueError:
        r.choice("search.algorithm", exp.search.algorithm, algorithms(), "algorithm")
        raise
    try:
        cls.check_options(exp.search.options, exp.nuisance, variant)
    except OptionError as exc:
        key = "search.algorithm" if exc.key == "" else f"search.options.{r.key(exc.key)}"
        raise r.fail(key, exc.message) from None
    r.integer("search.trials", exp.search.trials, 1, MAX_TRIALS,
              " (an experiment holds at most that many trials, all written to the store "
              "when a run starts)")
    r.integer("search.seed", exp.search.seed, 0, MAX_SEED,
              " (the store keeps seeds as 64-bit integers)")
    if exp.search.algorithm == "grid" and len(exp.nuisance) > 2:
        raise r.fail("search.algorithm", f"grid search only suits 1-2 nuisance hyperparameters"
                     f" (the playbook), got {len(exp.nuisance)}: use quasi_random")


def _check_values(exp: Experiment, r: Reader) -> None:
    """Hyperparameter names, and the scientific and fixed values."""
    for role, names in (("scientific", exp.scientific), ("nuisance", exp.nuisance),
                        ("fixed", exp.fixed)):
        for name in names:
            r.name(f"{role}.{r.key(name)}", name)
    for name, values in exp.scientific.items():
        if not values:
            raise r.fail(f"scientific.{name}", "must list at least one value")
        for i, v in enumerate(values):
            r.scalar(f"scientific.{name}[{i}]", v)
            label = f"{name}={v}"
            if bad_char(label, names=True) is not None:
                # A study's name is made of its scientific values.
                r.text(f"scientific.{name}[{i}]", str(v), names=True)
        if len(set(values)) != len(values):
            raise r.fail(f"scientific.{name}",
                         f"values must be distinct, got {show(list(values))}")
    for name, v in exp.fixed.items():
        r.scalar(f"fixed.{name}", v)
    for family, overrides in exp.checks.items():
        key = f"checks.{r.key(family)}"
        for k, v in overrides.items():
            r.scalar(f"{key}.{r.key(k)}", v)


def _check_studies(exp: Experiment, r: Reader) -> None:
    """Every study's name fits and is its own; every hyperparameter has one role."""
    seen: dict[str, StudySpec] = {}
    for spec in exp.studies():
        if len(spec.name) > MAX_NAME_LENGTH:
            raise r.fail("configs" if exp.configs else "scientific",
                         f"gives the study name {show(spec.name)} of {len(spec.name)} "
                         f"characters, at most {MAX_NAME_LENGTH} are allowed: shorten the "
                         "scientific names or values")
        if spec.name in seen:
            first, second = seen[spec.name].scientific, spec.scientific
            key = next(k for k in first if first[k] != second[k] or
                       type(first[k]) is not type(second[k]))
            raise r.fail(f"scientific.{key}", f"values {first[key]!r} and {second[key]!r} "
                         f"give the same study name {spec.name!r}; make them distinct")
        seen[spec.name] = spec
    roles = {"scientific": set(exp.scientific_values), "nuisance": set(exp.nuisance),
             "fixed": set(exp.fixed)}
    for (ra, a), (rb, b) in itertools.combinations(roles.items(), 2):
        both = sorted(a & b)
        if both:
            raise r.fail(f"{rb}.{both[0]}", f"{both[0]!r} is both {ra} and {rb}; "
                         "a hyperparameter has exactly one role")


def _check_size(exp: Experiment, r: Reader) -> None:
    """At most :data:`MAX_TRIALS` trials in all: every one is materialised up front."""
    studies = (len(exp.configs) if exp.configs
               else math.prod(len(v) for v in exp.scientific.values()))
    if studies > MAX_TRIALS:
        raise r.fail("scientific", f"{studies:,} combinations of scientific values, i.e. "
                     f"{studies:,} studies; an experiment holds at most {MAX_TRIALS:,} "
                     "trials: split it into several experiments")
    budget, key = exp.search.trials, "search.trials"
    if exp.search.algorithm == "grid":
        from tunebook.search.designers import GridDesigner

        budget, key = GridDesigner(exp.nuisance, exp.search.seed,
                                   exp.search.trials).capacity(), "nuisance"
    total = studies * budget
    if total > MAX_TRIALS:
        what = "grid points" if key == "nuisance" else "trials"
        raise r.fail(key, f"{studies:,} stud{'y' if studies == 1 else 'ies'} x {budget:,} "
                     f"{what} = {total:,} trials; an "
                     f"experiment holds at most {MAX_TRIALS:,} (every trial is written to "
                     "the store when a run starts): lower search.trials, use fewer values, "
                     "or split the experiment")


#: The most search seeds an experiment may repeat its studies with (study variance).
MAX_SEARCH_SEEDS = 100


def _check_search_seeds(exp: Experiment, r: Reader) -> None:
    """``search.seeds``: empty, or 2 to :data:`MAX_SEARCH_SEEDS` distinct seeds in
    ``[0, MAX_SEED]`` (one seed is ``search.seed``); not with a grid search nor an empty
    nuisance space (no luck of the sampling to measure); at most ``MAX_TRIALS`` trials over
    every seed."""
    seeds = exp.search.seeds
    if not seeds:
        return
    if len(seeds) < 2 or len(seeds) > MAX_SEARCH_SEEDS:
        raise r.fail("search.seeds", f"must list 2 to {MAX_SEARCH_SEEDS} seeds (one search is "
                     f"search.seed), got {len(seeds)}")
    for i, seed in enumerate(seeds):
        r.integer(f"search.seeds[{i}]", seed, 0, MAX_SEED,
                  " (the store keeps seeds as 64-bit integers)")
    if len(exp.nuisance) == 0:
        raise r.fail("search.seeds", "the nuisance space is empty: there is no search to "
                     "repeat (replicates already differ only by their training seeds)")
    if exp.search.algorithm == "grid":
        raise r.fail("search.seeds", "a grid search gives the same points under every seed: "
                     "study variance needs quasi_random, random or an adaptive algorithm")
    if len(set(seeds)) != len(seeds):
        dup = next(s for i, s in enumerate(seeds) if s in seeds[:i])
        raise r.fail("search.seeds", f"seeds must differ (the same seed repeats the same "
                     f"search), got {dup} twice")
    if exp.search.trials * len(seeds) * len(exp.studies()) > MAX_TRIALS:
        raise r.fail("search.seeds", f"{len(seeds)} seeds x {len(exp.studies())} studies x "
                     f"{exp.search.trials} trials is more than {MAX_TRIALS} trials")
