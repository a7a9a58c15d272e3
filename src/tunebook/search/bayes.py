"""The ``bayesian`` designer: Gaussian-process Bayesian optimisation that understands divergence.

Registered as ``search.algorithm: bayesian`` (see :class:`BayesianDesigner`); the model lives in
:mod:`tunebook.search.gp`, imported (with NumPy and SciPy) only when the designer is built, so
``import tunebook`` stays light.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tunebook.search.designers import Designer, Observation, OptionError, _halton, designer
from tunebook.search.rng import derive_seed
from tunebook.search.space import SearchSpace, Value

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from tunebook.search.gp import FeasibilityClassifier, GaussianProcess

    Array = npt.NDArray[np.float64]

__all__ = ["BayesianDesigner"]

ACQUISITIONS = ("ei", "pi")
INSTALL_HINT = "the bayesian designer needs SciPy: pip install 'tunebook[bayes]'"
# Acquisition search: uniform candidates, Gaussian steps around the best trials, then two
# rounds of smaller steps around the best candidates. Fixed sizes keep it deterministic and
# under the time target (about 3,000 posterior evaluations per suggestion).
_UNIFORM, _AROUND_BEST, _LOCAL = 1024, 128, 128
_STEPS = (0.1, 0.03, 0.01)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@designer("bayesian")
class BayesianDesigner(Designer):
    """Gaussian-process Bayesian optimisation with a feasibility model.

    The first ``initial`` trials are the quasi-random designer's points. Then trials come in
    batches of ``batch``: a batch starts once every earlier trial has finished, and its points
    depend only on the seed and those trials' outcomes (never on which worker finished first),
    so a run killed and resumed suggests what an uninterrupted one would.

    Model: a GP over the search space's unit cube (log and one-minus-log scales as the space
    maps them; an int or discrete value at the centre of its slice, a categorical one-hot with
    one lengthscale) with Matérn-5/2 ARD lengthscales, signal and noise variance fitted to the
    standardised feasible values (minimised; ``goal: maximize`` is negated). Infeasible and
    failed trials never enter the regression: a GP classifier trained on feasible vs
    infeasible-or-failed trials gives each point's probability of feasibility, which multiplies
    the acquisition (Gelbart, Snoek & Adams 2014); with no infeasible trial it is 1. Within a
    batch each chosen point is added to the regression at its predicted mean (the kriging
    believer), so the batch's points are distinct and spread out. Before any trial is feasible
    the designer goes on with quasi-random points.

    Options (``search.options``):
        initial: quasi-random trials before the model (an integer >= 1). Default
            ``max(5, 2 * d)`` for ``d`` hyperparameters (Ax's default: enough points for the d
            lengthscales), at most half the budget (at least 1) so a small budget still gets
            model-based trials.
        acquisition: ``ei`` (expected improvement, the default) or ``pi`` (probability of
            improvement), each times the probability of feasibility.
        batch: trials suggested together (an integer >= 1, default 1: each suggestion sees
            every earlier result). Set it to the number of workers, else workers wait.
    """

    adaptive = True

    @classmethod
    def parallel(cls, options: Mapping[str, Any]) -> int | None:
        """``batch``: a batch waits for every earlier trial."""
        batch = options.get("batch", 1)
        return batch if _is_int(batch) else 1

    def __init__(self, space: SearchSpace, seed: int, trials: int = 20,
                 goal: str = "minimize", options: Mapping[str, Any] | None = None,
                 variant: str = "") -> None:
        super().__init__(space, seed, trials, goal, options, variant)
        try:
            import scipy  # noqa: F401
        except ImportError:
            raise ImportError(INSTALL_HINT) from None
        default = min(max(5, 2 * len(space)), max(1, trials // 2))
        self.initial = int(self.options.get("initial", default))
        self.acquisition = str(self.options.get("acquisition", "ei"))
        self.batch = int(self.options.get("batch", 1))
        self._units: list[list[float]] = []  # every point computed, handed out or not
        self._given = 0  # how many of them were handed out
        self._observed: dict[int, tuple[str, float | None]] = {}

    @classmethod
    def check_options(cls, options: Mapping[str, Any], space: SearchSpace,
                      variant: str = "") -> None:
        """``initial`` and ``batch``: integers >= 1; ``acquisition``: ei or pi."""
        for key, value in options.items():
            if key in ("initial", "batch"):
                if not _is_int(value) or value < 1:
                    raise OptionError(key, f"must be an integer >= 1, got {value!r}")
            elif key == "acquisition":
                if value not in ACQUISITIONS:
                    raise OptionError(key, f"must be one of {', '.join(ACQUISITIONS)}, "
                                           f"got {value!r}")
            else:
                raise OptionError(str(key), "unknown option for 'bayesian'; one of initial, "
                                            "acquisition, batch")

    # ------------------------------------------------------------------ the designer seam
    def suggest(self, indices: Sequence[int]) -> list[dict[str, Value]]:
        """The next trials up to the end of the current batch (none until it can start)."""
        out = []
        for i in indices:
            if i != self._given:
                raise ValueError(f"bayesian suggests trials in order: expected index "
                                 f"{self._given}, got {i}")
            if i >= len(self._units):  # a new batch begins at i
                if (i >= self.initial and len(self.space)
                        and any(j not in self._observed for j in range(i))):
                    break  # a model batch waits for every earlier trial
                self._units.extend(self._plan(i))
            self._given += 1
            out.append(self.space.from_unit(self._units[i]))
        return out

    def observe(self, observations: Sequence[Observation]) -> None:
        """Remember each trial's outcome; only feasible ones keep a value."""
        for o in observations:
            self._observed[o.index] = (o.status, o.value if o.feasible else None)

    def state(self) -> dict[str, Any]:
        """The points computed, how many were handed out, and every observation."""
        return {"units": self._units, "given": self._given,
                "observed": [[i, s, v] for i, (s, v) in sorted(self._observed.items())]}

    def restore(self, state: dict[str, Any]) -> None:
        """Back to what :meth:`state` saved."""
        self._units = [list(map(float, u)) for u in state.get("units", [])]
        self._given = int(state.get("given", len(self._units)))
        self._observed = {int(i): (str(s), None if v is None else float(v))
                          for i, s, v in state.get("observed", [])}

    # ------------------------------------------------------------------ planning a batch
    def _plan(self, start: int) -> list[list[float]]:
        """The unit points of the batch that begins at ``start``."""
        end = min(self.trials, self.initial if start < self.initial else start + self.batch)
        end = max(end, start + 1)  # past the budget (a study extended): one at a time
        indices = list(range(start, end))
        feasible = start >= self.initial and any(
            self._observed[i][1] is not None for i in range(start))
        if not len(self.space) or not feasible:
            return _halton(self.seed, len(self.space), indices)
        with _one_blas_thread():
            return self._model_batch(start, len(indices))

    def _model_batch(self, start: int, size: int) -> list[list[float]]:
        import numpy as np

        from tunebook.search.gp import FeasibilityClassifier, GaussianProcess, half_rank_warp

        encoder = _Encoder(self.space)
        done = list(range(start))
        feats = encoder.features(np.array([self._units[i] for i in done]))
        ok = np.array([self._observed[i][1] is not None for i in done])
        sign = -1.0 if self.goal == "maximize" else 1.0
        y = np.array([sign * float(self._observed[i][1] or 0.0) for i in done])[ok]
        gp = GaussianProcess(encoder.groups).fit(feats[ok], half_rank_warp(y))
        classifier = None
        if not ok.all():
            classifier = FeasibilityClassifier(encoder.groups).fit(feats, ok)
        acquisition = _Acquisition(encoder, gp, classifier, float(gp.y.min()), self.acquisition)
        order = np.argsort(gp.y, kind="stable")
        anchors = np.array([self._units[i] for i in done])[ok][order[:4]]
        for k in range(size):
            rng = np.random.default_rng(derive_seed("bayesian", self.seed, start, k))
            u = _maximise(acquisition, rng, anchors, len(self.space))
            acquisition.pick(u)
            anchors = np.vstack([anchors, u[None, :]])
        return acquisition.picked


class _Acquisition:
    """Log EI (or PI) plus the log probability of feasibility, over unit points; ``pick``
    takes a point into the batch (the kriging believer: it counts as observed at its
    predicted mean, and is never picked again)."""

    def __init__(self, encoder: _Encoder, gp: GaussianProcess,
                 classifier: FeasibilityClassifier | None, best: float, kind: str) -> None:
        self.encoder, self.gp, self.classifier = encoder, gp, classifier
        self.best, self.kind = best, kind
        self.picked: list[list[float]] = []
        self._picked_features: list[Array] = []

    def __call__(self, units: Array) -> Array:
        import numpy as np

        from tunebook.search.gp import log_expected_improvement, log_probability_of_improvement

        f = self.encoder.features(units)
        mean, sd = self.gp.predict(f)
        acq = (log_expected_improvement(mean, sd, self.best) if self.kind == "ei"
               else log_probability_of_improvement(mean, sd, self.best))
        if self.classifier is not None:
            acq = acq + self.classifier.log_predict(f)
        for p in self._picked_features:  # the same values twice in one batch: never
            acq[np.all(np.abs(f - p) < 1e-9, axis=1)] = -np.inf
        return acq

    def pick(self, u: Array) -> None:
        f = self.encoder.features(u[None, :])
        believed = float(self.gp.predict(f)[0][0])
        self.gp.add(f[0], believed)
        self.best = min(self.best, believed)
        self.picked.append(u.tolist())
        self._picked_features.append(f[0])


def _one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """BLAS on one thread while the model works: its matrices are small (a few hundred rows),
    where OpenBLAS's threads only cost, up to 25x on a loaded 2-core machine (1.7 s instead
    of 65 ms per suggestion at 100 trials), and one thread gives the same sums on every
    machine, so a run resumed elsewhere suggests the same points."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:  # optional: the same suggestions, only slower where cores are busy
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")  # type: ignore[no-any-return]


def _maximise(score: Callable[[Array], Array], rng: np.random.Generator, anchors: Array,
              dims: int) -> Array:
    """The best unit point found: uniform candidates and steps around ``anchors``, then
    smaller steps around the best candidates."""
    import numpy as np

    def reflect(x: Array) -> Array:
        # Steps past a bound come back in (clipping would pile candidates on the bounds).
        out: Array = np.minimum(1.0 - np.abs(1.0 - np.abs(x)), 1.0 - 1e-12)
        return np.maximum(out, 0.0)

    cand = [rng.random((_UNIFORM, dims))]
    for a in anchors:
        cand.append(reflect(a + rng.normal(0.0, _STEPS[0], (_AROUND_BEST, dims))))
    points = np.vstack(cand)
    values = score(points)
    for step in _STEPS[1:]:
        lead = points[np.argsort(-values, kind="stable")[:4]]
        moves = np.vstack([reflect(p + rng.normal(0.0, step, (_LOCAL // 4, dims)))
                           for p in lead])
        points = np.vstack([points, moves])
        values = np.concatenate([values, score(moves)])
    best: Array = points[int(np.argmax(values))]
    return best


class _Encoder:
    """Unit points -> the model's features: a range or discrete value at the centre of what
    the space maps it to (so the model sees the value a trial runs), a categorical one-hot."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.groups: list[int] = []
        for h, hp in enumerate(space.values()):
            width = len(hp.choices) if hp.choices is not None and not hp.ordered else 1
            self.groups.extend([h] * width)

    def features(self, units: Array) -> Array:
        import numpy as np

        cols = []
        for j, hp in enumerate(self.space.values()):
            u = np.clip(units[:, j], 0.0, 1.0 - 1e-12)
            if hp.choices is not None:
                k = len(hp.choices)
                idx = np.minimum((u * k).astype(int), k - 1)
                if hp.ordered:
                    cols.append(((idx + 0.5) / k)[:, None])
                else:
                    cols.append(np.eye(k)[idx])
            elif hp.integer:
                snap = np.frompyfunc(lambda x, hp=hp: hp.to_unit(hp.from_unit(x)), 1, 1)
                cols.append(snap(u).astype(float)[:, None])
            else:
                cols.append(u[:, None])
        out: Array = np.hstack(cols) if cols else np.zeros((len(units), 0))
        return out
