"""What a metric can resolve: its quantum, the binomial standard error, its chance level.

An error rate over ``n`` validation examples moves in steps of ``1/n``; a change of one or two
examples is not a rise, an improvement or a difference, and neither is a change within the
binomial standard error ``sqrt(p (1 - p) / n)``. Every check that calls a change real asks
:meth:`Resolution.min_change` for the smallest change that is not below the metric's
resolution.

Where the numbers come from, in order:

1. **Reported by the workload** (the convention the built-in workloads follow, documented in
   ``docs/reading-your-report.md``): a metric ``PREFIX_examples`` gives the size of the
   evaluation set behind the metrics ``PREFIX_*`` (``val_examples`` for ``val_error``); it
   applies to those that can be shares of that many examples (a name that is not a loss's:
   ``val_error``, ``val_accuracy``, not ``val_loss``, see :data:`LOSS_WORDS`); and a
   metric ``METRIC_chance`` the value of ``METRIC`` at chance (``val_error_chance``: one minus
   the share of the most frequent class). They are constants, reported once.
2. **Inferred**: without a reported size, a metric whose values all lie on a lattice
   (``k * q`` for integers ``k``, with many repeated values, as an error rate over a fixed set
   does) has quantum ``q``; when ``1 / q`` is a whole number and the values lie in ``[0, 1]``
   it is taken as the number of examples.
3. Otherwise the metric is treated as continuous (``min_change`` is 0).

The thresholds are a family of the ``checks:`` section (``checks: {resolution: {...}}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tunebook.analysis.data import ExperimentData

__all__ = ["META_SUFFIXES", "Resolution", "ResolutionThresholds", "is_meta_metric",
           "resolution"]

#: Suffixes of the metrics that describe another metric instead of measuring training.
META_SUFFIXES = ("_examples", "_chance", "_correct")

Source = Literal["reported", "inferred", "none"]


@dataclass(frozen=True)
class ResolutionThresholds:
    """How coarse a change must be to count (``checks: {resolution: {...}}``)."""

    family: ClassVar[str] = "resolution"

    #: "A few examples": a change of fewer than 3 examples is never called a rise, an
    #: improvement or a difference.
    min_examples: int = 3
    #: ... nor a change within 1 binomial standard error of the rate.
    se_mult: float = 1.0
    #: Inference from distinct values needs at least this many values ...
    infer_min_values: int = 20
    #: ... of which at most this share distinct (an error rate over a fixed set repeats).
    infer_max_distinct: float = 0.5
    #: The value of the objective at chance (0: unknown unless the workload reports
    #: ``METRIC_chance``); e.g. 0.9 for the error rate of 10 balanced classes.
    chance_level: float = 0.0


DEFAULTS = ResolutionThresholds()


def is_meta_metric(name: str) -> bool:
    """Whether ``name`` describes another metric (``val_examples``, ``val_error_chance``)
    rather than a measurement of training: such metrics are not drawn as curves."""
    return name.endswith(META_SUFFIXES)


@dataclass(frozen=True)
class Resolution:
    """The resolution of one metric.

    Attributes:
        metric: the metric described.
        quantum: the smallest possible change of its value (``1 / examples`` for a rate), or
            None when it is continuous as far as the data tells.
        examples: the size of the evaluation set when known or inferred.
        source: ``reported`` (``PREFIX_examples``), ``inferred`` (lattice of values) or
            ``none``.
        chance: the metric's value at chance when known (reported ``METRIC_chance`` or the
            ``chance_level`` threshold), else None.
        min_examples, se_mult: the thresholds used by :meth:`min_change`.
    """

    metric: str
    quantum: float | None
    examples: int | None
    source: Source
    chance: float | None = None
    min_examples: int = DEFAULTS.min_examples
    se_mult: float = DEFAULTS.se_mult

    def se(self, level: float) -> float:
        """The binomial standard error of a rate ``level`` over :attr:`examples` (0 when the
        size is unknown or ``level`` is not a rate in [0, 1])."""
        if self.examples is None or not 0.0 <= level <= 1.0:
            return 0.0
        return math.sqrt(level * (1.0 - level) / self.examples)

    def min_change(self, level: float) -> float:
        """The smallest change of the metric around ``level`` that is not below its resolution:
        ``max(min_examples * quantum, se_mult * se(level))``; 0 for a continuous metric."""
        if self.quantum is None:
            return 0.0
        return max(self.min_examples * self.quantum, self.se_mult * self.se(abs(level)))

    def examples_text(self, change: float) -> str:
        """``change`` in examples (``"2 of 300 examples"``) when the size is known, else ``""``."""
        if self.examples is None or self.quantum is None:
            return ""
        return f"{round(abs(change) / self.quantum):d} of {self.examples} examples"

    def as_dict(self) -> dict[str, object]:
        """The evidence form."""
        return {"metric": self.metric, "quantum": self.quantum, "examples": self.examples,
                "source": self.source, "chance": self.chance, "min_examples": self.min_examples,
                "se_mult": self.se_mult}


def _examples_metric(metric: str) -> tuple[str, ...]:
    """Where the evaluation set's size for ``metric`` may be reported, most specific first."""
    parts = metric.split("_")
    candidates = [f"{'_'.join(parts[:i])}_examples" for i in range(len(parts) - 1, 0, -1)]
    return (*candidates, "examples")


def _first_value(data: ExperimentData, metric: str) -> float | None:
    for t in data.trials:
        curve = t.curves.get(metric)
        if curve is None:
            continue
        for v in curve.values:
            if math.isfinite(v):
                return float(v)
    return None


def _lattice(values: npt.NDArray[np.float64], th: ResolutionThresholds) -> float | None:
    """The spacing ``q`` of a lattice holding every value, or None (continuous values)."""
    if values.size < th.infer_min_values:
        return None
    distinct = np.unique(values)
    if distinct.size < 2 or distinct.size > th.infer_max_distinct * values.size:
        return None
    step = float(np.min(np.diff(distinct)))
    scale = max(float(np.max(np.abs(distinct))), 1e-300)
    if step <= 1e-9 * scale:
        return None
    for divisor in range(1, 11):
        q = step / divisor
        # float32 rates stored as float64 are off by ~6e-8 relative, so one gap between two
        # values (~1/n) is off by ~1e-5 relative: too much to place values at k ~ 1000s. The
        # whole span, counted in quanta, pins q down 100x better; a least-squares fit on every
        # value then gives it to float precision.
        quanta = float(np.sum(np.round(np.diff(distinct) / q)))
        q = float(distinct[-1] - distinct[0]) / quanta
        k = np.round(distinct / q)
        if float(np.sum(k * k)) > 0:
            q = float(np.sum(k * distinct) / np.sum(k * k))
        ratio = distinct / q
        if np.all(np.abs(ratio - np.round(ratio)) <= 1e-4 + 1e-6 * np.abs(ratio)):
            return q
    return None


#: Words in a metric's name that make it a loss, never a share of examples.
LOSS_WORDS = ("loss", "nll", "entropy", "perplexity", "ppl", "mse", "mae", "rmse")


def _counts(name: str) -> bool:
    """Whether a metric can be a share of the evaluation set's examples (an error rate, an
    accuracy): any metric whose name is not a loss's (:data:`LOSS_WORDS`)."""
    lowered = name.lower()
    return not any(word in lowered for word in LOSS_WORDS)


def resolution(data: ExperimentData, metric: str | None = None,
               th: ResolutionThresholds | None = None) -> Resolution:
    """The :class:`Resolution` of ``metric`` (default: the objective's) in ``data``.

    ``th`` defaults to the experiment's ``checks: {resolution: ...}`` over the defaults; that
    result is computed once per data (:meth:`ExperimentData.memo`).
    """
    name = metric or data.metric
    if th is None:
        return data.memo(("resolution", name), lambda: _resolution(data, name, None))
    return _resolution(data, name, th)


def _resolution(data: ExperimentData, name: str, th: ResolutionThresholds | None) -> Resolution:
    if th is None:
        from tunebook.analysis.checks.registry import thresholds_from_config

        found = thresholds_from_config(data.experiment.checks, data.experiment.source)
        th = found.get(ResolutionThresholds.family, DEFAULTS)
    chance = _first_value(data, f"{name}_chance")
    if chance is None and th.chance_level > 0 and name == data.metric:
        chance = th.chance_level
    def made(quantum: float | None, examples: int | None, source: Source) -> Resolution:
        return Resolution(name, quantum, examples, source, chance, th.min_examples, th.se_mult)

    values = np.asarray([v for t in data.trials if (c := t.curves.get(name)) is not None
                         for v in c.values if math.isfinite(v)], dtype=np.float64)
    for candidate in _examples_metric(name):
        size = _first_value(data, candidate)
        if size is not None and size >= 1 and float(size).is_integer():
            if not _counts(name):
                # a loss next to an error rate: the size does not make it a count
                return made(None, None, "none")
            return made(1.0 / size, int(size), "reported")
    q = _lattice(values, th)
    if q is None:
        return made(None, None, "none")
    n = 1.0 / q
    examples = (round(n) if abs(n - round(n)) <= 1e-3 * n and values.min() >= 0
                and values.max() <= 1 else None)
    return made(q, examples, "inferred")
