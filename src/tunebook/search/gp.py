"""A small Gaussian-process toolkit for the ``bayesian`` designer (NumPy, SciPy for the fit).

* :class:`GaussianProcess`: regression with a Matérn-5/2 kernel, one lengthscale per
  hyperparameter (a categorical's one-hot columns share one), signal and noise variance fitted
  by maximising the marginal likelihood times log-normal priors (L-BFGS-B with the analytic
  gradient), on standardised outputs.
* :class:`FeasibilityClassifier`: a GP classifier (least squares on +-1 labels, probit
  link) giving the probability that a point is feasible, as Gelbart, Snoek & Adams (2014)
  multiply into the acquisition.
* :func:`log_expected_improvement` and :func:`log_probability_of_improvement` for
  minimisation, in logs so that they still rank points where they underflow.

Inputs are rows of features in ``[0, 1]`` (``groups[c]`` names the hyperparameter column ``c``
belongs to). Everything is deterministic: the fit starts from fixed values, so the same data
give the same model. Nothing here is imported by ``import tunebook``; SciPy is imported when a
model is fitted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["FeasibilityClassifier", "GaussianProcess", "half_rank_warp",
           "log_expected_improvement", "log_probability_of_improvement"]

Array = npt.NDArray[np.float64]
_SQRT5 = math.sqrt(5.0)
# Log-normal priors. Lengthscales: the shape of BoTorch's default since 0.12 (Hvarfner,
# Hellsten & Nardi 2024: median growing with sqrt(dimension), log-sd sqrt(3)) but a median of
# sqrt(d) rather than 4.1 sqrt(d): with budgets of tens of trials the prior dominates, and the
# smoother one hid weakly relevant hyperparameters (a weight decay next to a learning rate)
# on our synthetic suite; MAX_LS caps them (see fit). Noise: small (BoTorch's prior).
_LS_SIGMA = math.sqrt(3.0)
MAX_LS = 1.0
_NOISE_MU, _NOISE_SIGMA = -4.0, 1.0
_SIGNAL_MU, _SIGNAL_SIGMA = 0.0, 1.0


def _sqdist(a: Array, b: Array, onehot: Array) -> Array:
    """Squared distances per hyperparameter: ``out[i, j, h]``; ``onehot[c, h]`` is 1 when
    column ``c`` belongs to hyperparameter ``h``."""
    diff = a[:, None, :] - b[None, :, :]
    out: Array = (diff * diff) @ onehot
    return out


def _matern(r2: Array) -> tuple[Array, Array]:
    """Matérn-5/2 correlation at squared distance ``r2``, and ``-dk/d(r2) * 2 * r2``'s factor:
    ``(5/3) (1 + sqrt5 r) exp(-sqrt5 r)``, which times ``D_h / l_h**2`` is ``dk/dlog l_h``."""
    r = np.sqrt(np.maximum(r2, 0.0))
    e = np.exp(-_SQRT5 * r)
    k = (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * e
    return k, (5.0 / 3.0) * (1.0 + _SQRT5 * r) * e


def _onehot(groups: Sequence[int]) -> Array:
    h = max(groups) + 1 if len(groups) else 0
    m = np.zeros((len(groups), h))
    m[np.arange(len(groups)), list(groups)] = 1.0
    return m


class GaussianProcess:
    """GP regression on standardised outputs; :meth:`fit` then :meth:`predict`.

    Args:
        groups: for each input column, the index of its hyperparameter (lengthscale).
        min_lengthscale: the smallest lengthscale the fit may choose (unit-cube units).
    """

    def __init__(self, groups: Sequence[int], min_lengthscale: float = 0.01) -> None:
        self.onehot = _onehot(groups)
        self.h = self.onehot.shape[1]
        self.min_ls = min_lengthscale
        self.ls_mu = 0.5 * math.log(max(self.h, 1))
        self.log_ls = np.full(self.h, math.log(min(0.5 * math.sqrt(max(self.h, 1)), MAX_LS)))
        self.log_signal = 0.0
        self.log_noise = math.log(1e-3)

    # --------------------------------------------------------------------------- fit
    def _neg_log_posterior(self, theta: Array, d: Array, y: Array) -> tuple[float, Array]:
        h = self.h
        inv_l2 = np.exp(-2.0 * theta[:h])
        signal, noise = math.exp(theta[h]), math.exp(theta[h + 1])
        corr, dfac = _matern(d @ inv_l2)
        n = len(y)
        k = signal * corr + (noise + 1e-8) * np.eye(n)
        try:
            chol = np.asarray(np.linalg.cholesky(k), dtype=np.float64)
        except np.linalg.LinAlgError:
            return 1e10, np.zeros_like(theta)
        alpha = _cho_solve(chol, y)
        kinv = _cho_solve(chol, np.eye(n))
        w = np.outer(alpha, alpha) - kinv
        nll = 0.5 * float(y @ alpha) + float(np.log(np.diag(chol)).sum())
        grad = np.empty_like(theta)
        # d(-log L)/d theta = -0.5 tr(W dK/d theta).
        wf = w * (signal * dfac)
        grad[:h] = -0.5 * np.einsum("ij,ijh->h", wf, d) * inv_l2
        grad[h] = -0.5 * float((w * (signal * corr)).sum())
        grad[h + 1] = -0.5 * float(np.trace(w)) * noise
        # Log-normal priors on lengthscales, signal and noise variance.
        z = (theta[:h] - self.ls_mu) / _LS_SIGMA
        nll += 0.5 * float(z @ z)
        grad[:h] += z / _LS_SIGMA
        zs = (theta[h] - _SIGNAL_MU) / _SIGNAL_SIGMA
        zn = (theta[h + 1] - _NOISE_MU) / _NOISE_SIGMA
        nll += 0.5 * (zs * zs + zn * zn)
        grad[h] += zs / _SIGNAL_SIGMA
        grad[h + 1] += zn / _NOISE_SIGMA
        return nll, grad

    def fit(self, x: Array, y: Array, optimize: bool = True) -> GaussianProcess:
        """Standardise ``y``, fit the hyperparameters (unless ``optimize`` is false: keep the
        current ones), and factor the kernel matrix."""
        self.x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        self.y_mean = float(y.mean())
        std = float(y.std())
        self.y_std = std if std > 1e-12 else 1.0
        self.y = (y - self.y_mean) / self.y_std
        self.fantasies = 0
        if optimize and len(y) > 1:
            from scipy.optimize import minimize

            d = _sqdist(self.x, self.x, self.onehot)
            start = np.concatenate([self.log_ls, [self.log_signal, self.log_noise]])
            # Lengthscales at most the whole unit range: a longer one makes the GP all but
            # linear in that hyperparameter, and expected improvement then runs to an end of
            # its range (weakly relevant hyperparameters ended at their bounds on both
            # synthetic suites; capping at 1 cut the median regret 3x on two of them).
            bounds = ([(math.log(self.min_ls), math.log(MAX_LS))] * self.h
                      + [(math.log(0.05), math.log(20.0)), (math.log(1e-6), 0.0)])
            res = minimize(self._neg_log_posterior, start, args=(d, self.y), jac=True,
                           method="L-BFGS-B", bounds=bounds, options={"maxiter": 60})
            theta = res.x
            self.log_ls = theta[:self.h].copy()
            self.log_signal, self.log_noise = float(theta[self.h]), float(theta[self.h + 1])
        self._factor()
        return self

    def _factor(self) -> None:
        n_real = len(self.x) - self.fantasies
        noise = np.concatenate([np.full(n_real, math.exp(self.log_noise)),
                                np.zeros(self.fantasies)])
        k = self.kernel(self.x, self.x) + np.diag(noise + 1e-8)
        self.chol = _cholesky(k)
        self.alpha = _cho_solve(self.chol, self.y)

    def kernel(self, a: Array, b: Array) -> Array:
        """Signal variance times the Matérn-5/2 correlation between the rows of a and b."""
        scale = self.onehot @ np.exp(-self.log_ls)  # 1 / lengthscale, per column
        sa, sb = a * scale, b * scale
        # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: one matrix product instead of an (m, n, p) array.
        r2 = (sa * sa).sum(1)[:, None] + (sb * sb).sum(1)[None, :] - 2.0 * sa @ sb.T
        corr, _ = _matern(np.maximum(r2, 0.0))
        out: Array = math.exp(self.log_signal) * corr
        return out

    def add(self, x: Array, y_std: float) -> None:
        """Condition on one more point with the standardised value ``y_std`` and the same
        hyperparameters (a kriging believer's fantasy for a pending trial), without noise:
        the point itself and its close neighbours then have nothing left to offer."""
        self.fantasies += 1
        self.x = np.vstack([self.x, x[None, :]])
        self.y = np.append(self.y, y_std)
        self._factor()

    def predict(self, xs: Array) -> tuple[Array, Array]:
        """Posterior mean and standard deviation (standardised units) at the rows of ``xs``."""
        ks = self.kernel(xs, self.x)
        mean = ks @ self.alpha
        v = _tri_solve(self.chol, ks.T)
        var = math.exp(self.log_signal) - np.einsum("ij,ij->j", v, v)
        return mean, np.sqrt(np.maximum(var, 1e-12))


# The classifier's lengthscales stay above a tenth of the cube: shorter ones fit the labels
# beside a sharp boundary and leave holes between infeasible trials where the probability
# went back to the base rate. RIDGE: the linear trend's penalty (features lie in [0, 1]).
MIN_LS = 0.1
RIDGE = 1.0


class FeasibilityClassifier:
    """Probability that a point is feasible: least-squares GP classification.

    The labels +1 (feasible) and -1 (infeasible or failed) are regressed on a linear trend
    plus a :class:`GaussianProcess` (its own fitted lengthscales, at least ``MIN_LS``, signal
    and noise); the probability is that of the latent lying above 0, ``Phi(mean / sd)``
    (Rasmussen & Williams 2006, section 6.5). Between a feasible and an infeasible neighbour
    it crosses 1/2, a point ringed by infeasible trials gets almost 0, and far from every
    trial the trend decides (beyond a boundary already crossed: infeasible). (A
    Laplace-approximated logistic classifier was tried first: the logistic's confident
    points add almost no curvature, so its probability beside a cluster of infeasible trials
    stayed near a tenth, and a large predicted improvement there kept winning.)
    """

    def __init__(self, groups: Sequence[int]) -> None:
        self.gp = GaussianProcess(groups, min_lengthscale=MIN_LS)

    def fit(self, x: Array, feasible: Array) -> FeasibilityClassifier:
        """Fit to rows ``x`` labelled ``feasible`` (booleans)."""
        x = np.asarray(x, dtype=float)
        t = np.where(np.asarray(feasible, dtype=bool), 1.0, -1.0)
        # A linear trend first (ridge, intercept free): divergence mostly lies beyond a
        # boundary (too high a learning rate), so far from every trial the trend, not the
        # base rate, should speak; the GP models what the trend leaves.
        a = np.hstack([np.ones((len(x), 1)), x])
        ridge = np.eye(a.shape[1]) * RIDGE
        ridge[0, 0] = 0.0
        self.beta = np.linalg.solve(a.T @ a + ridge, a.T @ t)
        self.gp.fit(x, t - a @ self.beta)
        return self

    def log_predict(self, xs: Array) -> Array:
        """Log probability of feasibility at the rows of ``xs``."""
        from scipy.special import log_ndtr

        mean, sd = self.gp.predict(xs)
        latent = (self.beta[0] + xs @ self.beta[1:] + self.gp.y_mean
                  + self.gp.y_std * mean)
        out: Array = log_ndtr(latent / (self.gp.y_std * sd))
        return out


def half_rank_warp(y: Array) -> Array:
    """Values to minimise, with the worse half replaced by rank-based normal quantiles.

    After OSS Vizier's half-rank warping: a few very bad (but finite) trials, as near a
    diverging region, would otherwise stretch the standardisation until the best trials look
    barely better than average and unexplored space looks promising. The better half keeps
    its values; a worse value becomes ``median + s * Phi^-1(q)``, ``q`` its rank's quantile
    and ``s`` the better half's spread, so the order is kept and the tail is normal.
    """
    from scipy.special import ndtri

    y = np.asarray(y, dtype=float)
    n = len(y)
    if n < 3:
        return y.copy()
    med = float(np.median(y))
    good = y[y <= med]
    spread = math.sqrt(float(np.mean((good - med) ** 2))) / 0.6745  # half-normal -> sigma
    if spread <= 0.0:
        return y.copy()
    ranks = np.argsort(np.argsort(y, kind="stable"), kind="stable")
    out = y.copy()
    bad = y > med
    out[bad] = med + spread * ndtri((ranks[bad] + 0.5) / n)
    return out


def log_expected_improvement(mean: Array, sd: Array, best: float) -> Array:
    """Log of the expected improvement below ``best`` of a normal(mean, sd) (minimisation),
    accurate where the improvement itself underflows (Ament et al. 2023, "Unexpected
    improvements to expected improvement"): far from the incumbent, feasible points still
    rank by how unlikely they are to improve instead of all scoring 0."""
    from scipy.special import erfcx, log_ndtr

    z = (best - mean) / sd
    out = np.empty_like(z)
    high = z > -1.0
    zh = z[high]
    out[high] = np.log(_norm_pdf(zh) + zh * np.exp(log_ndtr(zh)))
    zl = z[~high]
    # h(z) = phi(z) (1 + z Phi(z) / phi(z)) and Phi(z) / phi(z) = sqrt(pi/2) erfcx(-z/sqrt2).
    tail = np.log1p(np.maximum(zl * math.sqrt(math.pi / 2.0) * erfcx(-zl / math.sqrt(2.0)),
                               -1.0 + 1e-300))
    far = zl < -1e6  # 1 + z r loses every digit there: its asymptote is 1 / z**2
    tail[far] = -2.0 * np.log(-zl[far])
    out[~high] = -0.5 * zl * zl - 0.5 * math.log(2.0 * math.pi) + tail
    res: Array = out + np.log(sd)
    return res


def log_probability_of_improvement(mean: Array, sd: Array, best: float) -> Array:
    """Log of the probability that a normal(mean, sd) falls below ``best`` (minimisation)."""
    from scipy.special import log_ndtr

    out: Array = log_ndtr((best - mean) / sd)
    return out


def _norm_pdf(z: Array) -> Array:
    out: Array = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return out


def _cholesky(k: Array) -> Array:
    jitter = 0.0
    for _ in range(6):
        try:
            out = np.asarray(np.linalg.cholesky(k + jitter * np.eye(len(k))), dtype=np.float64)
            return out
        except np.linalg.LinAlgError:
            jitter = 1e-8 if jitter == 0.0 else jitter * 100.0
    raise np.linalg.LinAlgError("kernel matrix is not positive definite")


def _tri_solve(chol: Array, b: Array) -> Array:
    from scipy.linalg import solve_triangular

    out: Array = solve_triangular(chol, b, lower=True, check_finite=False)
    return out


def _cho_solve(chol: Array, b: Array) -> Array:
    from scipy.linalg import cho_solve

    out: Array = cho_solve((chol, True), b, check_finite=False)
    return out
