"""``search.algorithm: optuna:<Sampler>``: Optuna's samplers on tunebook's store and runner.

For users who want TPE, CMA-ES or Optuna's GP (and to compare them with tunebook's own designers
inside one tool). The designer keeps an in-memory Optuna study that it asks for new trials and
tells the finished ones; the tunebook store stays the source of truth (trials, values, statuses),
and the designer's saved state is the log of what it asked and was told.

The mapping of the search space to Optuna's distributions:

- ``float`` linear or log: ``FloatDistribution(low, high, log=...)``;
- ``float`` with ``scale: one_minus_log``: Optuna has no such scale, so the sampler works on
  ``1 - value`` with ``FloatDistribution(1 - high, 1 - low, log=True)``, which is exactly the
  log(1 - value) scale tunebook searches (the trial's value is ``1 - x``);
- ``int`` linear or log: ``IntDistribution(low, high, log=...)``;
- ``discrete`` (ordered numbers): the position in the list, ``IntDistribution(0, k - 1)``, so
  the sampler keeps the order (not the spacing), as tunebook's unit cube does;
- ``categorical``: ``CategoricalDistribution(values)``.

Failed and infeasible trials (and a completed trial without a finite value) are told to Optuna as
``TrialState.FAIL``: Optuna's own handling, in which its samplers (TPE, GP, CMA-ES in Optuna 4-5)
leave failed trials out of their models. They learn nothing about where trials diverge and may
propose there again, unlike ``bayesian``. Trials asked but not finished are ``RUNNING`` in the
study, which TPE (``constant_liar``, default in Optuna 5) and the GP sampler take into account
for parallel workers.

Resume: :meth:`OptunaDesigner.state` is the ordered log of asks (with the parameters Optuna
gave) and tells; :meth:`OptunaDesigner.restore` builds a fresh study with a fresh sampler of the
same seed and replays that log, asking the sampler again. Optuna's samplers are deterministic for
a seed and a sequence of asks and tells (TPE, GP, CMA-ES, random and QMC: tested in
tests/search/test_optuna_designer.py), so a resumed run suggests exactly the trials an
uninterrupted run would, given the same observations (the same Optuna, NumPy and PyTorch
versions). If a replayed ask gives other parameters than the log (another version), the study is
rebuilt with the logged parameters forced (``enqueue_trial``), the store's trials stay what they
are, and only the suggestions after the resume differ from the uninterrupted run (a warning says
so). Replaying costs one ask per trial: for the GP sampler about as long again as the asks took.
Which trials have finished when a suggestion is asked depends on the workers' timing, as in
Optuna itself: serial runs are reproducible, parallel runs are not.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tunebook.search.designers import Designer, Observation, OptionError, designer
from tunebook.search.rng import derive_seed
from tunebook.search.space import Float, Hyperparameter, SearchSpace, Value

__all__ = ["SAMPLERS", "OptunaDesigner", "optuna_distributions"]

# Optuna's single-objective samplers that need no Python object to build.
SAMPLERS: tuple[str, ...] = ("TPESampler", "GPSampler", "CmaEsSampler", "RandomSampler",
                             "QMCSampler")
DEFAULT = "TPESampler"  # Optuna's default sampler: what ``optuna:`` alone means
_INSTALL = "pip install 'tunebook[optuna]'"
_OWN = ("seed",)  # keyword arguments the adapter sets itself
# Annotations of keyword arguments that take a Python object (a callable, another sampler, a
# mapping), which an experiment file cannot give.
_OBJECT_HINTS = ("Callable", "Sampler", "dict[", "Mapping")
# What Optuna imports only when such a sampler first samples: checked up front instead.
_NEEDS = {"GPSampler": ("torch", "scipy"), "CmaEsSampler": ("cmaes",)}


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ModuleNotFoundError(f"search.algorithm optuna:... needs Optuna: {_INSTALL}"
                                  ) from exc
    return optuna


@contextlib.contextmanager
def _quiet(optuna: Any) -> Iterator[None]:
    """Optuna logs every tell at INFO and warns that some samplers are experimental: the run
    has its own progress lines, and the user chose the sampler."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _flips(hp: Hyperparameter) -> bool:
    return isinstance(hp, Float) and hp.scale == "one_minus_log"


def optuna_distributions(space: SearchSpace) -> dict[str, Any]:
    """Optuna's distribution for each hyperparameter of ``space`` (see the module docstring)."""
    d = _optuna().distributions
    out: dict[str, Any] = {}
    for name, hp in space.items():
        if hp.choices is not None:
            out[name] = (d.IntDistribution(0, len(hp.choices) - 1) if hp.ordered
                         else d.CategoricalDistribution(list(hp.choices)))
        elif _flips(hp):
            out[name] = d.FloatDistribution(1 - hp.bounds[1], 1 - hp.bounds[0], log=True)
        elif hp.integer:
            out[name] = d.IntDistribution(int(hp.low), int(hp.high), log=hp.scale == "log")
        else:
            out[name] = d.FloatDistribution(hp.low, hp.high, log=hp.scale == "log")
    return out


def _value(hp: Hyperparameter, raw: Any) -> Value:
    """The hyperparameter's value for Optuna's parameter ``raw``."""
    if hp.choices is not None:
        return hp.choices[int(raw)] if hp.ordered else raw
    if hp.integer:
        return int(raw)
    low, high = hp.bounds
    return min(max(1 - float(raw) if _flips(hp) else float(raw), low), high)


def _raw(hp: Hyperparameter, value: Value) -> Any:
    """Optuna's parameter for the value ``value`` (the inverse of :func:`_value`)."""
    if hp.choices is not None:
        return hp.choices.index(value) if hp.ordered else value
    if hp.integer:
        return int(value)
    return 1 - float(value) if _flips(hp) else float(value)


def _sampler_parameters(variant: str) -> dict[str, inspect.Parameter]:
    cls = getattr(_optuna().samplers, variant)
    return {n: p for n, p in inspect.signature(cls.__init__).parameters.items()
            if n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def _kind(p: inspect.Parameter) -> type | None:
    """The plain type a sampler's keyword argument takes: its default's, else the first of
    bool, int, float, str its annotation names."""
    if isinstance(p.default, bool | int | float | str):
        return type(p.default)
    annotation = str(p.annotation)
    return next((t for t in (bool, int, float, str) if t.__name__ in annotation), None)


def _fits(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _dry_run(variant: str, options: Mapping[str, Any], space: SearchSpace) -> None:
    """Build the sampler and ask it twice on a scratch study of ``space``."""
    optuna = _optuna()
    dists = optuna_distributions(space)
    with _quiet(optuna):
        study = optuna.create_study(sampler=_sampler(variant, options, 0))
        for _ in range(2):
            study.tell(study.ask(dists), 0.0)


def _sampler(variant: str, options: Mapping[str, Any], seed: int) -> Any:
    optuna = _optuna()
    with _quiet(optuna):
        return getattr(optuna.samplers, variant)(**options, seed=seed)


@designer("optuna:")
class OptunaDesigner(Designer):
    """One of Optuna's samplers (``optuna:TPESampler``, ...; ``optuna:`` alone is TPE, Optuna's
    default), asked and told trial by trial.

    ``search.options`` are the sampler's keyword arguments (``n_startup_trials``,
    ``multivariate``, ...), checked against its signature; the sampler's seed is derived from
    the study's seed. See the module docstring for the space mapping, failed trials and resume.
    """

    adaptive = True

    def __init__(self, space: SearchSpace, seed: int, trials: int = 20,
                 goal: str = "minimize", options: Mapping[str, Any] | None = None,
                 variant: str = "") -> None:
        # "optuna:" alone is Optuna's default sampler, TPE.
        super().__init__(space, seed, trials, goal, options, variant or DEFAULT)
        self._optuna = _optuna()
        self._dists = optuna_distributions(space)
        # ["ask", index, params] | ["tell", index, status, value] | ["add", index, params,
        # status, value], in the order they happened; params as Optuna holds them.
        self._events: list[list[Any]] = []
        self._numbers: dict[int, int] = {}  # index -> Optuna trial number, asked not told
        self._known: set[int] = set()  # indices the study holds (asked or added)
        self._next = 0
        self._study = self._new_study()

    @classmethod
    def check_options(cls, options: Mapping[str, Any], space: SearchSpace,
                      variant: str = "") -> None:
        """The variant is one of :data:`SAMPLERS` (and its packages are installed); each option
        is one of the sampler's keyword arguments that takes a plain value, of the type of its
        default (counts ``n_*`` not negative), and the sampler accepts them when built and
        asked its first two trials (a value it only rejects later fails the run then)."""
        variant = variant or DEFAULT
        if variant not in SAMPLERS:
            raise OptionError("", f"unknown Optuna sampler {variant!r}; one of "
                                  f"{', '.join('optuna:' + s for s in SAMPLERS)}")
        try:
            _optuna()
        except ModuleNotFoundError as exc:
            raise OptionError("", str(exc)) from None
        missing = [m for m in _NEEDS.get(variant, ()) if importlib.util.find_spec(m) is None]
        if missing:
            raise OptionError("", f"optuna:{variant} needs {' and '.join(missing)}: "
                                  f"pip install {' '.join(missing)}")
        params = _sampler_parameters(variant)
        takes = [n for n, p in params.items()
                 if n not in _OWN and not any(h in str(p.annotation) for h in _OBJECT_HINTS)]
        for key, value in options.items():
            if key in _OWN:
                raise OptionError(key, "the sampler's seed comes from search.seed")
            if key not in takes:
                what = ("takes a Python object, which an experiment file cannot give"
                        if key in params else f"is not an option of {variant}")
                known = (f"its options: {', '.join(takes)}" if takes else
                         "it takes none besides the seed")
                raise OptionError(key, f"{key!r} {what}; {known}")
            kind = _kind(params[key])
            if kind is not None and not _fits(value, kind):
                raise OptionError(key, f"{variant}'s {key} must be {kind.__name__}, "
                                       f"got {value!r}")
            if key.startswith("n_") and isinstance(value, int) and value < 0:
                raise OptionError(key, f"{variant}'s {key} is a count, got {value!r}")
        # What the sampler itself refuses, when built or in its first asks: each option alone
        # (to name the culprit), then all together.
        for trying in [*({k: v} for k, v in options.items()), dict(options)]:
            try:
                _dry_run(variant, trying, space)
            except (TypeError, ValueError) as exc:
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                key = next(iter(trying)) if len(trying) == 1 else ""
                raise OptionError(key, f"{variant} refused search.options {trying}: "
                                       f"{message}") from None

    def _new_study(self) -> Any:
        seed = derive_seed("optuna", self.seed, self.variant) % 2**32
        sampler = _sampler(self.variant, self.options, seed)
        direction = "maximize" if self.goal == "maximize" else "minimize"
        with _quiet(self._optuna):
            return self._optuna.create_study(sampler=sampler, direction=direction)

    def _params(self, trial: Any) -> dict[str, Any]:
        """A trial's parameters as JSON keeps them exactly (plain ints, floats, choices)."""
        out: dict[str, Any] = {}
        for name, raw in trial.params.items():
            dist = self._dists[name]
            if isinstance(dist, self._optuna.distributions.IntDistribution):
                out[name] = int(raw)
            elif isinstance(dist, self._optuna.distributions.FloatDistribution):
                out[name] = float(raw)
            else:
                out[name] = raw
        return out

    def _values(self, params: Mapping[str, Any]) -> dict[str, Value]:
        return {name: _value(self.space[name], params[name]) for name in self.space}

    def suggest(self, indices: Sequence[int]) -> list[dict[str, Value]]:
        """Ask the study for one trial per index (Optuna never waits for results)."""
        out = []
        for i in indices:
            if i != self._next:
                raise ValueError(f"optuna:{self.variant} suggests trials in order: expected "
                                 f"index {self._next}, got {i}")
            self._numbers[i], params = self._ask(None)
            self._known.add(i)
            self._events.append(["ask", i, params])
            self._next += 1
            out.append(self._values(params))
        return out

    def _ask(self, forced: Mapping[str, Any] | None) -> tuple[int, dict[str, Any]]:
        with _quiet(self._optuna):
            if forced is not None:
                self._study.enqueue_trial(dict(forced), skip_if_exists=False)
            trial = self._study.ask(self._dists)
        return int(trial.number), self._params(trial)

    def observe(self, observations: Sequence[Observation]) -> None:
        """Tell the study each finished trial: its value if feasible, else ``FAIL``."""
        for o in observations:
            value = float(o.value) if o.feasible and o.value is not None else None
            if o.index in self._numbers:
                self._tell(o.index, o.status, value)
                self._events.append(["tell", o.index, o.status, value])
                continue
            if o.index in self._known:  # told already: the runner shows each trial once
                continue
            # A trial this designer did not suggest (its state was lost): the store is the
            # source of truth, so the study learns it too when its values fit the space.
            try:
                params = {n: _raw(hp, o.params[n]) for n, hp in self.space.items()}
            except (KeyError, ValueError):
                continue
            if self._add(params, o.status, value):
                self._known.add(o.index)
                self._events.append(["add", o.index, params, o.status, value])
                self._next = max(self._next, o.index + 1)

    def _tell(self, index: int, status: str, value: float | None) -> None:
        number = self._numbers.pop(index)
        with _quiet(self._optuna):
            if value is None:
                self._study.tell(number, state=self._optuna.trial.TrialState.FAIL)
            else:
                self._study.tell(number, value)

    def _add(self, params: Mapping[str, Any], status: str, value: float | None) -> bool:
        state = self._optuna.trial.TrialState
        try:
            trial = self._optuna.trial.create_trial(
                params=dict(params), distributions=self._dists, value=value,
                state=state.FAIL if value is None else state.COMPLETE)
        except ValueError:  # outside the distributions: a trial of another space
            return False
        with _quiet(self._optuna):
            self._study.add_trial(trial)
        return True

    def state(self) -> dict[str, Any]:
        """The ordered log of asks, tells and added trials."""
        return {"events": self._events}

    def restore(self, state: dict[str, Any]) -> None:
        """Replay the log on a fresh study and sampler; force the logged parameters if a
        replayed ask differs (see the module docstring)."""
        events = [list(e) for e in state.get("events", [])]
        if not self._replay(events, forced=False):
            warnings.warn(f"optuna:{self.variant}: replaying the saved trials gave other "
                          "parameters (another Optuna version?); the study was rebuilt from "
                          "the saved trials, and suggestions from now on differ from an "
                          "uninterrupted run", RuntimeWarning, stacklevel=2)
            self._replay(events, forced=True)

    def _replay(self, events: list[list[Any]], forced: bool) -> bool:
        self._study = self._new_study()
        self._numbers, self._known, self._next, self._events = {}, set(), 0, []
        for event in events:
            kind, index = str(event[0]), int(event[1])
            if kind == "ask":
                logged = dict(event[2])
                number, params = self._ask(logged if forced else None)
                if not forced and json.dumps(params, sort_keys=True) != json.dumps(
                        logged, sort_keys=True):
                    return False
                self._numbers[index] = number
                self._known.add(index)
                self._next = index + 1
            elif kind == "tell":
                self._tell(index, str(event[2]), None if event[3] is None else float(event[3]))
            else:
                self._add(dict(event[2]), str(event[3]),
                          None if event[4] is None else float(event[4]))
                self._known.add(index)
                self._next = max(self._next, index + 1)
            self._events.append(event)
        return True

