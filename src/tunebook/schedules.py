r"""Learning rate schedules: plain callables ``step -> learning rate``.

Pure Python (no torch, no numpy), so ``import tunebook.schedules`` stays light and a schedule can
drive any framework: each step, set the optimizer's learning rate to ``schedule(step)`` (for the
PyTorch optimizers, :func:`tunebook.torch.optim.set_lr`). ``step`` counts optimizer updates from
0, so ``schedule(0)`` is the learning rate of the first update.

The families (``s`` is the step, ``T`` = ``decay_steps``, ``\eta_0`` = ``init_value``,
``\eta_T`` = ``end_value``, ``\hat{s} = \min(s, T)``)::

    constant:      \eta(s) = \eta_0
    linear_decay:  \eta(s) = \eta_0 + (\eta_T - \eta_0) \hat{s} / T
    cosine_decay:  \eta(s) = \eta_T + (\eta_0 - \eta_T) (1 + \cos(\pi \hat{s} / T)) / 2
    rsqrt_decay:   \eta(s) = \eta_0 / \sqrt{1 + \hat{s} / \tau}      (\tau = timescale)

Past the end of a schedule (``s > T``) the last value is held. The playbook's FAQ prefers linear
or cosine decay as a default; constant is where it suggests starting ("start with a constant
learning rate before adding fancy decay schedules").

Warmup follows the playbook's "How to apply learning rate warmup": it *prepends* a linear ramp
from 0 to the schedule's initial value, so the schedule itself is shifted, not truncated
("if we originally had 10,000 max_train_steps and did warmup_steps for 1000 steps, the new
training procedure should run for 11,000 steps total")::

    warmup(S, W)(s) = S(0) \cdot s / W    for s < W
                      S(s - W)            for s >= W

so ``warmup(S, 1000)(1000 + k) == S(k)``. :func:`join` chains schedules the same way: at each
boundary the next schedule starts again from its own step 0.

Every schedule is a frozen dataclass: printable, comparable, hashable and picklable (as long as
the schedules it wraps are). :func:`from_hparams` builds one from hyperparameter names.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = [
    "Constant",
    "CosineDecay",
    "Join",
    "LinearDecay",
    "RsqrtDecay",
    "Schedule",
    "Warmup",
    "constant",
    "cosine_decay",
    "from_hparams",
    "join",
    "linear_decay",
    "rsqrt_decay",
    "warmup",
]

Schedule: TypeAlias = Callable[[int], float]
"""A learning rate schedule: maps a step (0, 1, 2, ...) to a learning rate."""

_SCHEDULE_NAMES = ("constant", "cosine", "linear", "rsqrt")


# --- argument checks --------------------------------------------------------------------------


def _value(name: str, value: float) -> float:
    """A finite, non-negative real (learning rates)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return float(value)


def _steps(name: str, value: float, minimum: int) -> int:
    """An integer number of steps >= minimum; an integral float (1000.0) is accepted."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_step(step: int) -> None:
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step!r}")


# --- the schedules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Constant:
    """``value`` at every step. Build with :func:`constant`."""

    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _value("value", self.value))

    def __call__(self, step: int) -> float:
        """The learning rate at ``step``."""
        _check_step(step)
        return self.value


@dataclass(frozen=True)
class _Decay:
    """From ``init_value`` at step 0 to ``end_value`` at ``decay_steps``, then held."""

    init_value: float
    decay_steps: int
    end_value: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "init_value", _value("init_value", self.init_value))
        object.__setattr__(self, "decay_steps", _steps("decay_steps", self.decay_steps, 1))
        object.__setattr__(self, "end_value", _value("end_value", self.end_value))

    def __call__(self, step: int) -> float:
        """The learning rate at ``step``."""
        _check_step(step)
        if step >= self.decay_steps:
            return self.end_value
        return self._between(step / self.decay_steps)

    def _between(self, fraction: float) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class LinearDecay(_Decay):
    """Linear interpolation from ``init_value`` to ``end_value``; see :func:`linear_decay`."""

    def _between(self, fraction: float) -> float:
        return self.init_value + (self.end_value - self.init_value) * fraction


@dataclass(frozen=True)
class CosineDecay(_Decay):
    """Half a cosine from ``init_value`` to ``end_value``. Build with :func:`cosine_decay`."""

    def _between(self, fraction: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
        return self.end_value + (self.init_value - self.end_value) * cosine


@dataclass(frozen=True)
class RsqrtDecay:
    """Inverse square root decay ``init_value / sqrt(1 + step / timescale)``.

    Held constant after ``decay_steps`` when that is given. Build with :func:`rsqrt_decay`.
    """

    init_value: float
    timescale: float
    decay_steps: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "init_value", _value("init_value", self.init_value))
        timescale = _value("timescale", self.timescale)
        if timescale <= 0:
            raise ValueError(f"timescale must be > 0, got {self.timescale!r}")
        object.__setattr__(self, "timescale", timescale)
        if self.decay_steps is not None:
            object.__setattr__(self, "decay_steps", _steps("decay_steps", self.decay_steps, 1))

    def __call__(self, step: int) -> float:
        """The learning rate at ``step``."""
        _check_step(step)
        if self.decay_steps is not None:
            step = min(step, self.decay_steps)
        return self.init_value / math.sqrt(1.0 + step / self.timescale)


@dataclass(frozen=True)
class Warmup:
    """A linear ramp from 0 to ``schedule(0)`` prepended to ``schedule``; see :func:`warmup`."""

    schedule: Schedule
    warmup_steps: int

    def __post_init__(self) -> None:
        if not callable(self.schedule):
            raise ValueError(f"schedule must be callable, got {self.schedule!r}")
        object.__setattr__(self, "warmup_steps", _steps("warmup_steps", self.warmup_steps, 0))

    def __call__(self, step: int) -> float:
        """The learning rate at ``step``."""
        _check_step(step)
        if step >= self.warmup_steps:
            return float(self.schedule(step - self.warmup_steps))
        return float(self.schedule(0)) * step / self.warmup_steps


@dataclass(frozen=True)
class Join:
    """Schedules run one after the other, each from its own step 0. Build with :func:`join`."""

    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]

    def __post_init__(self) -> None:
        schedules, boundaries = tuple(self.schedules), tuple(self.boundaries)
        if not schedules:
            raise ValueError("schedules must not be empty, got ()")
        for i, schedule in enumerate(schedules):
            if not callable(schedule):
                raise ValueError(f"schedules[{i}] must be callable, got {schedule!r}")
        if len(boundaries) != len(schedules) - 1:
            raise ValueError(f"boundaries must have len(schedules) - 1 = {len(schedules) - 1} "
                             f"entries, got {boundaries!r}")
        checked = tuple(_steps(f"boundaries[{i}]", b, 1) for i, b in enumerate(boundaries))
        if any(b <= a for a, b in itertools.pairwise(checked)):
            raise ValueError(f"boundaries must be strictly increasing, got {boundaries!r}")
        object.__setattr__(self, "schedules", schedules)
        object.__setattr__(self, "boundaries", checked)

    def __call__(self, step: int) -> float:
        """The learning rate at ``step``."""
        _check_step(step)
        i = bisect.bisect_right(self.boundaries, step)
        start = self.boundaries[i - 1] if i else 0
        return float(self.schedules[i](step - start))


# --- constructors -----------------------------------------------------------------------------


def constant(value: float) -> Constant:
    """A constant learning rate: ``value`` at every step."""
    return Constant(value)


def linear_decay(init_value: float, decay_steps: int, end_value: float = 0.0) -> LinearDecay:
    r"""Linear decay from ``init_value`` to ``end_value`` over ``decay_steps`` steps.

    ``init_value + (end_value - init_value) * min(step, decay_steps) / decay_steps``: equals
    ``init_value`` at step 0 and ``end_value`` from step ``decay_steps`` on (the same curve as
    ``torch.optim.lr_scheduler.LinearLR(start_factor=1, end_factor=end_value / init_value,
    total_iters=decay_steps)``). ``decay_steps`` >= 1.
    """
    return LinearDecay(init_value, decay_steps, end_value)


def cosine_decay(init_value: float, decay_steps: int, end_value: float = 0.0) -> CosineDecay:
    r"""Cosine decay from ``init_value`` to ``end_value`` over ``decay_steps`` steps.

    ``end + (init - end) * (1 + cos(pi * min(step, decay_steps) / decay_steps)) / 2``: equals
    ``init_value`` at step 0 and ``end_value`` from step ``decay_steps`` on (the same curve
    as ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=decay_steps, eta_min=end_value)`` up to
    ``decay_steps``; unlike it, the value is then held instead of rising again).
    """
    return CosineDecay(init_value, decay_steps, end_value)


def rsqrt_decay(init_value: float, timescale: float = 1.0,
                decay_steps: int | None = None) -> RsqrtDecay:
    r"""Inverse square root decay: ``init_value / sqrt(1 + min(step, decay_steps) / timescale)``.

    ``init_value`` at step 0; for ``step >> timescale`` the rate falls like ``1 / sqrt(step)``.
    Equivalently ``init_value * sqrt(timescale / (timescale + step))``: after a warmup of ``W``
    steps, ``warmup(rsqrt_decay(lr, timescale=W), W)`` is the classic
    ``lr * sqrt(W / max(t, W))`` of the total step count ``t`` (with a linear ramp before ``W``).
    With ``decay_steps`` the value is held from that step on; without, it decays forever.
    ``timescale`` must be > 0.
    """
    return RsqrtDecay(init_value, timescale, decay_steps)


def warmup(schedule: Schedule, warmup_steps: int) -> Warmup:
    """Prepend a linear warmup of ``warmup_steps`` steps to ``schedule``.

    Steps ``0 .. warmup_steps`` ramp linearly from 0 to ``schedule(0)``; then ``schedule`` runs
    from its own step 0: ``warmup(schedule, w)(w + k) == schedule(k)``. The playbook: "Warmup
    involves prepending a learning rate schedule that ramps up the learning rate from 0 to some
    stable base_learning_rate", so training gets ``warmup_steps`` steps longer. ``warmup_steps``
    may be 0 (no warmup).
    """
    return Warmup(schedule, warmup_steps)


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Join:
    """Run ``schedules[0]`` until step ``boundaries[0]``, then ``schedules[1]``, and so on.

    Boundaries are global steps, strictly increasing and >= 1, one fewer than the schedules. At
    boundary ``b`` the next schedule starts from its own step 0: ``join([a, b], [n])(n + k) ==
    b(k)``. The last schedule runs (and holds its last value) forever.
    """
    return Join(tuple(schedules), tuple(boundaries))


def from_hparams(hparams: Mapping[str, Any], max_train_steps: int, *,
                 default_learning_rate: float | None = None) -> Schedule:
    """Build a schedule from hyperparameter names (the built-in workloads use this).

    Names read from ``hparams`` (others are ignored):

    ``learning_rate``
        The base (peak) learning rate. Required unless ``default_learning_rate`` is given.
    ``schedule`` [``"constant"``]
        ``constant``, ``linear`` (:func:`linear_decay`), ``cosine`` (:func:`cosine_decay`) or
        ``rsqrt`` (:func:`rsqrt_decay`); case-insensitive.
    ``warmup_steps`` [0]
        Linear warmup prepended with :func:`warmup`. Warmup steps count towards
        ``max_train_steps`` (the playbook's 10,000 steps + 1,000 of warmup is
        ``max_train_steps=11_000, warmup_steps=1_000``).
    ``decay_steps`` [``max_train_steps - warmup_steps``]
        Length of the decay after warmup; by default it ends exactly at ``max_train_steps``.
        Ignored by ``constant``; for ``rsqrt`` the value is held after it.
    ``end_learning_rate`` or ``end_factor`` [0.0]
        Final value of ``linear``/``cosine``: given directly, or as a fraction of
        ``learning_rate``. At most one of them. Ignored by ``constant`` and ``rsqrt``.
    ``rsqrt_timescale`` [``max(warmup_steps, 1)``]
        The ``timescale`` of ``rsqrt``: by default the rate after warmup is
        ``learning_rate * sqrt(W / t)`` at total step ``t``, i.e. ``1/sqrt(step)`` decay that is
        continuous with the end of a warmup of ``W`` steps.

    Raises ``ValueError`` naming the offending hyperparameter and value.
    """
    total = _steps("max_train_steps", max_train_steps, 1)
    if "learning_rate" in hparams:
        lr = _value("learning_rate", hparams["learning_rate"])
    elif default_learning_rate is not None:
        lr = _value("default_learning_rate", default_learning_rate)
    else:
        raise ValueError("hparams has no 'learning_rate' (and no default_learning_rate was given)")
    raw_name = hparams.get("schedule", "constant")
    name = raw_name.lower() if isinstance(raw_name, str) else raw_name
    if name not in _SCHEDULE_NAMES:
        raise ValueError(f"schedule must be one of {list(_SCHEDULE_NAMES)}, got {raw_name!r}")
    warmup_steps = _steps("warmup_steps", hparams.get("warmup_steps", 0), 0)
    if "decay_steps" in hparams:
        decay_steps = _steps("decay_steps", hparams["decay_steps"], 1)
    elif warmup_steps >= total:
        raise ValueError(f"warmup_steps must be < max_train_steps = {total} when decay_steps is "
                         f"not given, got {warmup_steps!r}")
    else:
        decay_steps = total - warmup_steps
    if "end_learning_rate" in hparams and "end_factor" in hparams:
        raise ValueError(f"give end_learning_rate or end_factor, not both, got "
                         f"end_learning_rate={hparams['end_learning_rate']!r} and "
                         f"end_factor={hparams['end_factor']!r}")
    if "end_factor" in hparams:
        end = lr * _value("end_factor", hparams["end_factor"])
    else:
        end = _value("end_learning_rate", hparams.get("end_learning_rate", 0.0))

    base: Schedule
    if name == "constant":
        base = Constant(lr)
    elif name == "linear":
        base = LinearDecay(lr, decay_steps, end)
    elif name == "cosine":
        base = CosineDecay(lr, decay_steps, end)
    else:
        timescale = _value("rsqrt_timescale", hparams.get("rsqrt_timescale", max(warmup_steps, 1)))
        if timescale <= 0:
            raise ValueError(f"rsqrt_timescale must be > 0, got {hparams['rsqrt_timescale']!r}")
        base = RsqrtDecay(lr, timescale, decay_steps)
    return Warmup(base, warmup_steps) if warmup_steps else base
