"""Curve and training-length scenarios: overfitting (above and below the metric's resolution),
still improving, saturated, best steps early or late, flat noisy tails, a rising training loss,
and the combinations that must come out as one finding.

Every scenario has 12 trials of one study over one nuisance hyperparameter (``lr``, best near
the middle of its log range), 20 evaluations every 10 steps up to 200, values far from chance.
A trial's level is ``base + 0.05 × |log10(lr) + 1.5|`` so the ranking follows ``lr``; the curve
shapes are planted per trial, with seeded noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from checkdata import healthy_curve, make_data, tr
from scenarios import scenario

from tunebook.analysis.data import Curve, ExperimentData
from tunebook.analysis.findings import Finding
from tunebook.search.space import Float

N, EVERY, MAX_STEPS = 20, 10, 200
LRS = np.geomspace(2e-3, 0.5, 12)
T = np.arange(1, N + 1) / N  # training fraction at each evaluation
SPACE = {"lr": Float(1e-3, 1.0, "log")}

Shape = Callable[[int, float, np.random.Generator], list[float]]


def _level(lr: float, base: float) -> float:
    return base + 0.05 * abs(float(np.log10(lr)) + 1.5)


def _ranked_lrs() -> list[int]:
    """Indexes of LRS from the best level to the worst."""
    return sorted(range(len(LRS)), key=lambda i: abs(float(np.log10(LRS[i])) + 1.5))


def _study(shape: Shape, seed: int, *, base: float = 0.3, metric: str = "val_loss",
           train: Shape | None = None, quantum: float | None = None,
           reported: dict[str, float] | None = None) -> ExperimentData:
    """12 trials: ``shape(rank, level, rng)`` gives trial ``rank``'s curve (rank 0 = the trial
    whose ``lr`` is nearest the optimum); values rounded to ``quantum`` when given (a rate over
    a fixed evaluation set); ``reported`` adds constant metrics (``val_examples``) at the
    first evaluation, as the built-in workloads report them."""
    rng = np.random.default_rng(seed)
    rank = {i: r for r, i in enumerate(_ranked_lrs())}
    trials = []
    for i, lr in enumerate(LRS):
        level = _level(float(lr), base)
        values = shape(rank[i], level, rng)
        if quantum is not None:
            values = [round(v / quantum) * quantum for v in values]
        losses = train(rank[i], level, rng) if train is not None else None
        trials.append(tr(values, params={"lr": float(lr)}, every=EVERY, train=losses))
    data = make_data(trials, nuisance=SPACE, max_train_steps=MAX_STEPS, eval_every=EVERY,
                     metric=metric)
    return report(data, **(reported or {}))


def report(data: ExperimentData, **constants: float) -> ExperimentData:
    """``data`` with metrics reported once by its first trial at its first evaluation step, as
    the built-in workloads report ``val_examples`` or ``val_error_chance``."""
    if not constants or not data.trials:
        return data
    first = data.trials[0]
    step = min((c.steps[0] for c in first.curves.values() if len(c)), default=EVERY)
    curves = {**first.curves, **{name: Curve((step,), (value,))
                                 for name, value in constants.items()}}
    return dataclasses.replace(data, trials=(dataclasses.replace(first, curves=curves),
                                             *data.trials[1:]))


def healthy(rank: int, level: float, rng: np.random.Generator) -> list[float]:
    return healthy_curve(level, rng)


def falling(rank: int, level: float, rng: np.random.Generator) -> list[float]:
    """A training loss that keeps falling."""
    return [float(v) for v in 0.1 * level + 1.5 * np.exp(-5 * T) + rng.normal(0, 0.002, N)]


def overfits(level: float, rng: np.random.Generator, rise: float = 0.05,
             after: float = 0.5, noise: float = 0.002, drop: float = 0.3) -> list[float]:
    """Falls by ``drop`` to ``level`` by ~40% of training, then worsens by ``rise`` from
    ``after`` on."""
    trend = drop * np.exp(-12 * T) + rise * np.clip((T - after) / (1 - after), 0, None)
    return [float(v) for v in level + trend + rng.normal(0, noise, N)]


def improving(level: float, rng: np.random.Generator, slope: float = 0.08,
              noise: float = 0.002) -> list[float]:
    """Still going down at the end: ``slope`` per unit of training, ``level`` at the end."""
    trend = 0.3 * np.exp(-12 * T) + slope * (1 - T)
    return [float(v) for v in level + trend + rng.normal(0, noise, N)]


def slow(level: float, rng: np.random.Generator, until: float = 0.8,
         noise: float = 0.002) -> list[float]:
    """Falls linearly (by 0.2) until ``until`` of training, flat after: the best value is
    reached only in the last 25%."""
    trend = 0.2 * np.clip(1 - T / until, 0, None)
    return [float(v) for v in level + trend + rng.normal(0, noise, N)]


def early(level: float, rng: np.random.Generator, by: float = 0.1,
          noise: float = 0.002) -> list[float]:
    """Flat from ``by`` of training on (falls by 0.3 before)."""
    trend = 0.3 * np.clip(1 - T / by, 0, None)
    return [float(v) for v in level + trend + rng.normal(0, noise, N)]


def _one(check: str, **want: str) -> Callable[[list[object]], bool]:
    """Predicate: exactly one finding, whose advice includes ``want``."""
    def ok(findings: list[object]) -> bool:
        if len(findings) != 1 or not isinstance(f := findings[0], Finding):
            return False
        return f.check == check and all(f.advice.get(k) == v for k, v in want.items())
    return ok


def _combined(check: str, other: str, **want: str) -> Callable[[list[object]], bool]:
    """Predicate: one finding that absorbed ``other`` and gives ``want`` (None: no direction)."""
    def ok(findings: list[object]) -> bool:
        if not _one(check)(findings):
            return False
        f = findings[0]
        assert isinstance(f, Finding)
        absorbed = [x["check"] for x in f.evidence.get("combined_with", [])]
        advice = all(f.advice.get(k) == v for k, v in want.items())
        return absorbed == [other] and advice and len(f.trials) > 1
    return ok


# ----------------------------------------------------------------------------- nothing to report
@scenario("curves_healthy_with_training_loss")
def curves_healthy_with_training_loss() -> ExperimentData:
    return _study(healthy, 11, train=falling)


@scenario("flat_noisy_tail_drifting_down")
def flat_noisy_tail_drifting_down() -> ExperimentData:
    """A curve that has levelled off with noise 0.002 but still drifts down by 0.001 over the
    last 25% (half a noise std): the arg-min lands in the last 25% in all 12 trials (the old
    arg-min rule said "train longer"), yet no trial improves there by more than the noise."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        trend = 0.3 * np.exp(-10 * T) + 0.004 * (1 - T)
        return [float(v) for v in level + trend + rng.normal(0, 0.002, N)]
    return _study(shape, 4)


@scenario("overfitting_below_resolution")
def overfitting_below_resolution() -> ExperimentData:
    """An error rate over 500 validation examples (reported), ~0.35: every trial falls to its
    best at ~65% of training, then rises by 5 examples (0.01) with sub-quantum noise. 0.01 is
    above 2% of the value and 3x the curve's noise, but below the binomial SE (~0.021)."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        trend = 0.2 * np.clip(1 - T / 0.65, 0, None) + 0.01 * np.clip((T - 0.65) / 0.35, 0, 1)
        return [float(v) for v in level + trend + rng.normal(0, 0.0005, N)]
    return _study(shape, 3, base=0.33, metric="val_error", quantum=1 / 500,
                  reported={"val_examples": 500})


@scenario("tiny_quantized_rise_with_inferred_resolution")
def tiny_quantized_rise_with_inferred_resolution() -> ExperimentData:
    """An error rate ~0.06 over 1,000 examples, size not reported: the values' lattice gives
    the quantum. Each trial peaks at ~65% of training and rises by 4 examples (0.004, 7% of the
    value) while the rounded curve barely moves (noise ~0): within the binomial SE (~0.0075)."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        trend = 0.2 * np.clip(1 - T / 0.65, 0, None) + 0.004 * np.clip((T - 0.65) / 0.35, 0, 1)
        return [float(v) for v in level + trend + rng.normal(0, 0.0002, N)]
    return _study(shape, 4, base=0.05, metric="val_error", quantum=1 / 1000)


# ----------------------------------------------------------------------------- one problem each
@scenario("overfitting_clear", fires={"overfitting"},
          expect={"overfitting": _one("overfitting", regularization="more",
                                      training_length="shorter")})
def overfitting_clear() -> ExperimentData:
    """The best three trials fall to their best by ~45% and worsen by 0.05 (17%) by the end
    while the training loss keeps falling; the others are healthy."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        return overfits(level, rng) if rank < 3 else healthy_curve(level, rng)
    return _study(shape, 21, train=falling)


@scenario("overfitting_small_absolute_noise", fires={"overfitting"},
          expect={"overfitting": _one("overfitting", regularization="more")})
def overfitting_small_absolute_noise() -> ExperimentData:
    """A continuous loss around 3e-4 with noise 1e-7: the best two trials rise by 3e-5 (10%),
    tiny in absolute terms but 300 noise std; nothing else moves by more than the noise."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        scaled = level / 1000
        if rank < 2:
            return overfits(scaled - 1e-5, rng, rise=3e-5, noise=1e-7, drop=3e-4)
        trend = 3e-4 * np.exp(-12 * T)
        return [float(v) for v in scaled + trend + rng.normal(0, 1e-7, N)]
    return _study(shape, 8)


@scenario("still_improving_best_trial", fires={"still_improving"},
          expect={"still_improving": _one("still_improving", training_length="longer")})
def still_improving_best_trial() -> ExperimentData:
    """The best trial still falls by 0.02 over its last 25% (10 noise std); the others are
    healthy."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        return improving(level - 0.01, rng) if rank == 0 else healthy_curve(level, rng)
    return _study(shape, 31)


@scenario("saturated_early_best_trial", fires={"saturated_early"},
          expect={"saturated_early": _one("saturated_early", training_length="shorter")})
def saturated_early_best_trial() -> ExperimentData:
    """The best trial is flat from 15% of training on; the others level off at ~40-50%."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        if rank == 0:
            return early(level - 0.01, rng, by=0.15)
        return slow(level, rng, until=0.55)
    return _study(shape, 41)


@scenario("best_step_early_across_trials", fires={"best_step_position", "saturated_early"},
          expect={"best_step_position": _one("best_step_position", training_length="shorter"),
                  "saturated_early": _one("saturated_early", training_length="shorter")})
def best_step_early_across_trials() -> ExperimentData:
    """An error rate over 1,000 reported examples (~0.3, binomial SE ~0.014): every trial is
    within the SE of its best by 10% of training and flat after (noise 0.002, so the arg-min
    lands anywhere). Training is much longer than needed: both training-length checks say
    "shorter", coherently."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        return early(level, rng, by=0.08)
    return _study(shape, 51, metric="val_error", quantum=1 / 1000,
                  reported={"val_examples": 1000})


@scenario("best_step_late_across_trials", fires={"best_step_position"},
          expect={"best_step_position": _one("best_step_position", training_length="longer")})
def best_step_late_across_trials() -> ExperimentData:
    """Every trial falls until ~80% of training and is flat after: the best value is reached
    only in the last 25%, by far more than the noise, without a trend at the very end."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        return slow(level, rng, until=0.8)
    return _study(shape, 61)


@scenario("train_loss_increases_in_best_trials", fires={"train_loss_increases"})
def train_loss_increases_in_best_trials() -> ExperimentData:
    """Healthy validation curves; the training loss of the best two trials climbs back from
    ~30% of training (a pipeline bug), the others fall."""
    def rising(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        if rank >= 2:
            return falling(rank, level, rng)
        trend = 1.5 * np.exp(-20 * T) + 1.2 * np.clip(T - 0.3, 0, None)
        return [float(v) for v in 0.1 + trend + rng.normal(0, 0.002, N)]
    return _study(healthy, 71, train=rising)


# ----------------------------------------------------------------------------- combinations
@scenario("overfitting_with_late_best_steps_elsewhere", fires={"overfitting"},
          expect={"overfitting": _combined("overfitting", "best_step_position",
                                           regularization="more",
                                           training_length="shorter")})
def overfitting_with_late_best_steps_elsewhere() -> ExperimentData:
    """The issue's MLP: the best two trials overfit (+0.05 after ~45%) while the training loss
    keeps falling; the ten others are slower configurations that reach their best only in the
    last 25%. One finding: regularise, or stop earlier; the late best steps are elsewhere."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        return overfits(level, rng) if rank < 2 else slow(level + 0.02, rng, until=0.85)
    return _study(shape, 81, train=falling)


@scenario("overfitting_while_best_trial_still_improves", fires={"overfitting"},
          expect={"overfitting": _combined("overfitting", "still_improving",
                                           regularization="more", training_length="longer")})
def overfitting_while_best_trial_still_improves() -> ExperimentData:
    """The 2nd and 3rd best trials overfit; the best one is still improving at the end. One
    finding (warning): regularise the overfitting ones, train the best one longer."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        if rank == 0:
            return improving(level - 0.02, rng)
        return overfits(level - 0.01, rng) if rank < 3 else healthy_curve(level, rng)
    return _study(shape, 91)


@scenario("saturated_best_with_late_trials_elsewhere", fires={"saturated_early"},
          expect={"saturated_early": _combined("saturated_early", "best_step_position",
                                               training_length="shorter")})
def saturated_best_with_late_trials_elsewhere() -> ExperimentData:
    """The best trial is flat from 15% of training; the eleven others (worse) reach their best
    only in the last 25%. One finding: the late ones are slower configurations."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        return early(level - 0.02, rng, by=0.15) if rank == 0 else slow(level, rng, until=0.85)
    return _study(shape, 101)


@scenario("still_improving_best_with_early_trials_elsewhere", fires={"still_improving"},
          expect={"still_improving": _combined("still_improving", "best_step_position",
                                               training_length="longer")})
def still_improving_best_with_early_trials_elsewhere() -> ExperimentData:
    """An error rate over 1,000 reported examples: the best trial still falls by 0.03 over its
    last 25% (more than the SE), the eleven others are within the SE of their best by 10% of
    training. One finding: train the best one longer."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        if rank == 0:
            return improving(level - 0.04, rng, slope=0.12)
        return early(level, rng, by=0.08)
    return _study(shape, 111, metric="val_error", quantum=1 / 1000,
                  reported={"val_examples": 1000})


@scenario("overfitting_and_early_peaks_while_best_still_improves", fires={"overfitting"},
          expect={"overfitting": _one("overfitting", regularization="more",
                                      training_length="longer")})
def overfitting_and_early_peaks_while_best_still_improves() -> ExperimentData:
    """Three findings, two contradictions, one finding: over 1,000 reported examples, the best
    trial still improves at the end, the next two peak by 10% and then overfit, and the rest
    are flat from 8% of training (the median trial peaks in the first 10%)."""
    def shape(rank: int, level: float, rng: np.random.Generator) -> list[float]:
        if rank == 0:
            return improving(level - 0.04, rng, slope=0.12)
        if rank < 3:
            trend = 0.3 * np.clip(1 - T / 0.08, 0, None) + 0.08 * np.clip(T - 0.1, 0, None)
            return [float(v) for v in level - 0.03 + trend + rng.normal(0, 0.002, N)]
        return early(level, rng, by=0.08)
    return _study(shape, 121, metric="val_error", quantum=1 / 1000,
                  reported={"val_examples": 1000})
