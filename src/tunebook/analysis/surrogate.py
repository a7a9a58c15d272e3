"""A small model of the whole search space: how the objective depends on each nuisance
hyperparameter *after accounting for the others*.

The boundary and no-effect checks ask "where along this hyperparameter is the objective best,
and is the effect real?". Reading that off the best few trials confuses the hyperparameter's
effect with the luck of the other coordinates (the 4th best trial may sit at an edge because
its learning rate was good). This module fits one additive model to every feasible trial:

    y = intercept[study] + sum_j f_j(u_j) + noise

* ``y`` is the objective made loss-like (multiplied by ``data.objective.sign``: lower is
  better), clipped per study at the upper Tukey fence ``Q3 + 1.5 IQR`` so that a few
  near-diverged trials do not decide the shape of a curve (their leverage is limited, their
  direction kept).
* ``u_j`` is the trial's value in the hyperparameter's scaled coordinate (``hp.to_unit``: 0 at
  the low bound, 1 at the high one, log scales in log space).
* ``f_j`` is a polynomial in ``u_j`` (shifted Legendre polynomials on [0, 1]) for an ordered
  hyperparameter, one dummy per value but the first for a categorical one. Its degree (1 to 3,
  the same for every hyperparameter, at most the number of distinct values tried less one) is
  the one with the smallest leave-one-point-out error among those that leave ``MIN_DOF``
  degrees of freedom: a straight trend stays a line, a bowl a quadratic, and a curve that is
  steep at one end and still falling at the other gets a cubic.
* Studies share the nuisance points (the same quasi-random sequence), so one curve per
  hyperparameter is fitted across studies, each study with its own intercept.
* Conditional hyperparameters (``nuisance_for``: searched by some studies only) are left out
  (``left_out``): the model covers the hyperparameters every study searches, over every trial.
* A small ridge penalty (``ridge * n`` on every non-intercept coefficient) keeps the fit
  defined when the trials are few or two columns are nearly collinear.

Significance of each hyperparameter is a seeded Freedman–Lane permutation test: fit the model
without the hyperparameter, permute its residuals ``permutations`` times, and compare how much
adding the hyperparameter's columns reduces the residual sum of squares on the permuted data
with the reduction on the real data. ``p = (1 + #{permuted >= observed}) / (1 + permutations)``.
All permutations are fitted at once (the model's smoother is fixed; only ``y`` changes), so
200 permutations for 4 hyperparameters over 200 trials take a few milliseconds.

NumPy only. :func:`surrogate` computes the model once per data (:meth:`ExperimentData.memo`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from tunebook.search.space import position

if TYPE_CHECKING:
    from tunebook.analysis.data import ExperimentData, TrialData

__all__ = ["Effect", "Surrogate", "fit", "surrogate"]

Array = npt.NDArray[np.float64]
Side = Literal["low", "high"]

#: Permutations of the significance test: p-values resolve to 0.005, enough to tell 0.01 from
#: 0.05 from 0.1 (the grades the checks use).
PERMUTATIONS = 200
#: Fixed seed: the same data always gives the same p-values.
SEED = 0
#: Ridge penalty per trial on every non-intercept coefficient: shrinks a well-determined
#: effect by ~3% (a Legendre column's mean square is about 1/3), enough to keep the normal
#: equations well conditioned with few trials.
RIDGE = 0.01
#: Upper Tukey fence multiplier for clipping bad outliers (the usual 1.5 IQR).
FENCE = 1.5
#: The richest effect curve the choice of degree considers: a cubic.
MAX_DEGREE = 3
#: Residual degrees of freedom the fit must keep, counted on both the trials and the distinct
#: nuisance points (else fewer columns, or no model).
MIN_DOF = 3
#: A hyperparameter enters the model only if at least this share of the trials have a usable
#: value for it (the others are left out rather than imputed).
MIN_VALID = 0.8
#: Points of the [0, 1] grid the effect curves are evaluated on.
GRID = 101


@dataclass(frozen=True)
class Effect:
    """How the objective depends on one hyperparameter, the others held fixed.

    Values are loss-like (lower is better) in the objective's units.

    Attributes:
        name: the hyperparameter.
        ordered: True for a hyperparameter with a scaled coordinate (float, int, discrete).
        grid: where :attr:`curve` is evaluated: unit coordinates on [0, 1] (ordered), or the
            values seen (categorical).
        curve: the fitted effect on :attr:`grid`, relative to its best point (its minimum is 0).
        minimiser: the grid point where the fitted effect is best (a unit coordinate, or a
            categorical value).
        size: ``max(curve)``: how much the objective moves over the whole range.
        p_value: the permutation test's p-value (small: the hyperparameter matters).
        units: each fitted trial's coordinate (same order as :attr:`Surrogate.trials`;
            empty for a categorical hyperparameter).
        coef: the fitted coefficients of the Legendre basis (ordered only).
    """

    name: str
    ordered: bool
    grid: tuple[Any, ...]
    curve: tuple[float, ...]
    minimiser: Any
    size: float
    p_value: float
    units: tuple[float, ...] = ()
    coef: tuple[float, ...] = ()

    def at(self, u: float) -> float:
        """The fitted effect at unit coordinate ``u`` (ordered only), on :attr:`curve`'s scale."""
        return float(self.values([u])[0])

    def values(self, units: Sequence[float]) -> Array:
        """:meth:`at` for many coordinates at once."""
        coef = np.asarray(self.coef)
        fitted = _legendre(np.asarray(units, dtype=np.float64), len(coef)) @ coef
        # The curve is stored relative to its best point: min(curve) == 0.
        return np.asarray(fitted - (self.curve_min if self.coef else 0.0), dtype=np.float64)

    @cached_property
    def curve_min(self) -> float:
        """The raw fitted effect's minimum over the grid (what :attr:`curve` is relative to)."""
        base = _legendre(np.asarray(self.grid, dtype=np.float64), len(self.coef))
        return float(np.min(base @ np.asarray(self.coef)))

    def in_slab(self, side: Side, fraction: float) -> list[int]:
        """Indices (into :attr:`Surrogate.trials`) of the trials in the outer ``fraction`` of
        the range at ``side``."""
        if side == "low":
            return [i for i, u in enumerate(self.units) if u < fraction]
        return [i for i, u in enumerate(self.units) if u > 1.0 - fraction]


@dataclass(frozen=True)
class Surrogate:
    """The fitted model.

    Attributes:
        trials: the trials fitted (feasible, finite objective, usable values), best first.
        effects: one :class:`Effect` per hyperparameter in the model.
        sigma: the residual standard deviation (``sqrt(RSS / (n - columns))``).
        columns: the number of fitted coefficients (intercepts included).
        permutations, seed: of the significance test.
        clipped: how many trials' values were clipped at their study's upper fence.
        left_out: hyperparameters not modelled, with why.
        residuals: each fitted trial's (loss-like, clipped) objective less the model's fit.
        points: the number of distinct nuisance points among the trials (studies share them).
        intercepts: the number of per-study intercepts among :attr:`columns`.
        degree: the degree of the ordered hyperparameters' curves (0: no model).
    """

    trials: tuple[TrialData, ...]
    effects: dict[str, Effect]
    sigma: float
    columns: int
    permutations: int
    seed: int
    clipped: int = 0
    left_out: dict[str, str] = field(default_factory=dict)
    residuals: tuple[float, ...] = ()
    points: int = 0
    intercepts: int = 0
    degree: int = 0

    def partial_residuals(self, name: str) -> list[float]:
        """For ordered hyperparameter ``name``: each trial's objective less its study's
        intercept and the other hyperparameters' effects (on :attr:`Effect.curve`'s scale),
        i.e. ``name``'s effect plus the trial's noise: what an axis plot of ``name`` would show
        with the rest of the space accounted for."""
        e = self.effects[name]
        return [float(v) for v in np.asarray(self.residuals) + e.values(e.units)]


def _legendre(u: Array, degree: int) -> Array:
    """Columns P1..P_degree of the shifted Legendre polynomials at ``u`` (orthogonal on
    [0, 1]: a linear and a quadratic coefficient barely trade off)."""
    t = 2.0 * u - 1.0
    cols = [t, 1.5 * t * t - 0.5, 2.5 * t ** 3 - 1.5 * t][:degree]
    return np.stack(cols, axis=1) if cols else np.zeros((len(u), 0))


def _clip(y: Array, groups: Array) -> tuple[Array, int]:
    """``y`` with each group's values above its upper Tukey fence set to the fence."""
    out = y.copy()
    clipped = 0
    for g in np.unique(groups):
        mask = groups == g
        if mask.sum() < 4:
            continue
        q1, q3 = np.percentile(y[mask], [25, 75])
        fence = q3 + FENCE * (q3 - q1)
        over = mask & (y > fence)
        clipped += int(over.sum())
        out[over] = fence
    return out, clipped


def _solve(x: Array, penalty: Array, y: Array) -> Array:
    """Ridge coefficients for one or many right-hand sides ``y`` (n or n x B)."""
    a = x.T @ x + np.diag(penalty)
    return np.asarray(np.linalg.lstsq(a, x.T @ y, rcond=None)[0], dtype=np.float64)


def _rss(x: Array, penalty: Array, y: Array) -> Array:
    r = y - x @ _solve(x, penalty, y)
    return np.asarray(np.sum(r * r, axis=0), dtype=np.float64)


def fit(data: ExperimentData, *, permutations: int = PERMUTATIONS, seed: int = SEED
        ) -> Surrogate:
    """Fit the model to ``data``'s feasible trials (see the module docstring)."""
    trials = data.ranked()
    space = data.varied()
    left_out: dict[str, str] = {}
    # Each hyperparameter's column values: unit coordinates, or categorical values.
    raw: dict[str, list[Any]] = {}
    for name, hp in space.items():
        if name not in data.experiment.nuisance:
            # Conditional (nuisance_for): searched by some studies only. The model is fit over
            # the hyperparameters every study searches; the others' axis plots still show them.
            left_out[name] = "searched by some studies only (nuisance_for)"
            continue
        if hp.ordered:
            vals: list[Any] = [position(hp, t.params.get(name)) for t in trials]
        else:
            vals = [v if (v := t.params.get(name)) in (hp.choices or ()) else None
                    for t in trials]
        if trials and sum(v is not None for v in vals) < MIN_VALID * len(trials):
            left_out[name] = "too few trials with a usable value"
            continue
        raw[name] = vals
    keep = [i for i in range(len(trials)) if all(v[i] is not None for v in raw.values())]
    trials = [trials[i] for i in keep]
    raw = {k: [v[i] for i in keep] for k, v in raw.items()}
    n = len(trials)
    empty = Surrogate(tuple(trials), {}, math.nan, 0, permutations, seed, 0, left_out)
    if n == 0:
        return empty
    study_names = sorted({t.study for t in trials})
    groups = np.asarray([study_names.index(t.study) for t in trials], dtype=np.float64)
    y0 = np.asarray([data.value(t) for t in trials], dtype=np.float64) * data.objective.sign
    y, clipped = _clip(y0, groups)

    def blocks(max_degree: int) -> dict[str, tuple[Array, Any]]:
        out: dict[str, tuple[Array, Any]] = {}
        for name, vals in raw.items():
            if space[name].ordered:
                u = np.asarray(vals, dtype=np.float64)
                degree = min(max_degree, len(np.unique(u)) - 1)
                if degree >= 1:
                    out[name] = (_legendre(u, degree), degree)
            else:
                levels = sorted(set(vals), key=str)
                if len(levels) >= 2:
                    cols = [[1.0 if v == lv else 0.0 for v in vals] for lv in levels[1:]]
                    out[name] = (np.asarray(cols, dtype=np.float64).T, levels)
        return out

    intercepts = np.stack([(groups == g).astype(np.float64) for g in range(len(study_names))],
                          axis=1)
    # Studies share the nuisance points: the effects are estimated from the distinct points
    # (their number, less one for the common level, bounds the effect columns), the noise from
    # every trial.
    distinct = len({tuple(map(repr, row)) for row in zip(*raw.values(), strict=True)}) if raw \
        else 1
    room = min(n - intercepts.shape[1], distinct - 1)
    ridge = RIDGE * n
    point_of: dict[tuple[str, ...], list[int]] = {}
    for i, row in enumerate(zip(*raw.values(), strict=True)):
        point_of.setdefault(tuple(map(repr, row)), []).append(i)
    # The curves' degree (the same for every hyperparameter): the one with the smallest
    # leave-one-point-out error among those the points allow, so a straight trend stays a line
    # and a curve that is steep at one end and still falling at the other gets a cubic.
    best: tuple[float, dict[str, tuple[Array, Any]], int] | None = None
    for degree in range(1, MAX_DEGREE + 1):
        trial_cols = blocks(degree)
        if room - sum(b.shape[1] for b, _ in trial_cols.values()) < MIN_DOF:
            break
        xd = np.concatenate([intercepts, *(b for b, _ in trial_cols.values())], axis=1)
        pen = np.concatenate([np.zeros(intercepts.shape[1]),
                              np.full(xd.shape[1] - intercepts.shape[1], ridge)])
        err = _cv_error(xd, pen, y, list(point_of.values()))
        if best is None or err < best[0]:
            best = (err, trial_cols, degree)
    if best is None:
        left_out.update({k: "too few trials for a model" for k in raw})
        return Surrogate(tuple(trials), {}, math.nan, 0, permutations, seed, clipped, left_out,
                         points=distinct)
    cols = best[1]
    for name in raw:
        if name not in cols:
            left_out[name] = "a single value tried"

    names = list(cols)
    x = np.concatenate([intercepts, *(cols[k][0] for k in names)], axis=1)
    penalty = np.concatenate([np.zeros(intercepts.shape[1]),
                              np.full(x.shape[1] - intercepts.shape[1], ridge)])
    beta = _solve(x, penalty, y)
    resid = y - x @ beta
    rss_full = float(resid @ resid)
    sigma = math.sqrt(rss_full / (n - x.shape[1]))
    rng = np.random.default_rng(seed)
    perms = rng.permuted(np.tile(np.arange(n), (permutations, 1)), axis=1)

    effects: dict[str, Effect] = {}
    start = intercepts.shape[1]
    for name in names:
        width = cols[name][0].shape[1]
        idx = np.arange(start, start + width)
        start += width
        p = _p_value(x, penalty, y, idx, perms, rss_full)
        coef = beta[idx]
        if space[name].ordered:
            grid = np.linspace(0.0, 1.0, GRID)
            curve = _legendre(grid, width) @ coef
            u_fit = tuple(float(v) for v in raw[name])
            effects[name] = Effect(
                name, True, tuple(float(g) for g in grid), tuple(float(v) for v in
                                                                 curve - curve.min()),
                float(grid[int(np.argmin(curve))]), float(curve.max() - curve.min()), p,
                u_fit, tuple(float(c) for c in coef))
        else:
            levels = cols[name][1]
            curve = np.concatenate([[0.0], coef])
            effects[name] = Effect(
                name, False, tuple(levels), tuple(float(v) for v in curve - curve.min()),
                levels[int(np.argmin(curve))], float(curve.max() - curve.min()), p)
    return Surrogate(tuple(trials), effects, sigma, x.shape[1], permutations, seed, clipped,
                     left_out, tuple(float(r) for r in resid), distinct, intercepts.shape[1],
                     best[2])


def _cv_error(x: Array, penalty: Array, y: Array, groups: list[list[int]]) -> float:
    """Leave-one-point-out squared error of the ridge fit: each group of trials (one nuisance
    point, shared by studies) predicted by the fit without it (exact deletion formula, from
    the rows of the smoother ``x (x'x + penalty)^-1 x'``)."""
    xa = x @ np.linalg.pinv(x.T @ x + np.diag(penalty))
    r = y - xa @ (x.T @ y)
    single = np.asarray([g[0] for g in groups if len(g) == 1], dtype=np.int64)
    d = 1.0 - np.einsum("ij,ij->i", xa[single], x[single])
    if np.any(d <= 1e-12):
        return math.inf
    total = float(np.sum((r[single] / d) ** 2))
    for g in (g for g in groups if len(g) > 1):
        m = np.eye(len(g)) - xa[g] @ x[g].T
        e = np.linalg.lstsq(m, r[g], rcond=None)[0]
        total += float(e @ e)
    return total


def _p_value(x: Array, penalty: Array, y: Array, idx: Array, perms: npt.NDArray[np.int64],
             rss_full: float) -> float:
    """Freedman–Lane permutation p-value of the columns ``idx`` of ``x``."""
    other = np.setdiff1d(np.arange(x.shape[1]), idx)
    z, zpen = x[:, other], penalty[other]
    fitted = z @ _solve(z, zpen, y)
    resid = y - fitted
    observed = float(np.sum(resid * resid)) - rss_full
    ystar = fitted[:, None] + resid[perms].T  # n x B
    permuted = _rss(z, zpen, ystar) - _rss(x, penalty, ystar)
    # Rounding: a permuted reduction equal to the observed one counts as "as large".
    tol = 1e-9 * max(float(np.sum(resid * resid)), 1e-300)
    return float((1 + np.sum(permuted >= observed - tol)) / (1 + len(perms)))


def surrogate(data: ExperimentData) -> Surrogate:
    """:func:`fit` with the default settings, computed once per data."""
    return data.memo(("surrogate", PERMUTATIONS, SEED), lambda: fit(data))
