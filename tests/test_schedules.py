"""Learning rate schedules: hand-computed values, the playbook's warmup, torch's lr_scheduler."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tunebook import schedules
from tunebook.schedules import (
    constant,
    cosine_decay,
    from_hparams,
    join,
    linear_decay,
    rsqrt_decay,
    warmup,
)

EXACT = {"rel": 1e-15, "abs": 1e-15}


def values(schedule: Callable[[int], float], steps: range) -> list[float]:
    return [schedule(s) for s in steps]


# --- value by value ------------------------------------------------------------------------------


def test_constant() -> None:
    s = constant(0.1)
    assert values(s, range(3)) == [0.1, 0.1, 0.1]
    assert s(10**9) == 0.1


def test_linear_decay_values() -> None:
    s = linear_decay(1.0, 4, 0.2)
    assert values(s, range(7)) == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.2, 0.2], **EXACT)
    assert s(4) == 0.2  # exactly the end value at the end
    assert s(10**9) == 0.2
    assert linear_decay(0.5, 10)(5) == pytest.approx(0.25, **EXACT)
    assert linear_decay(0.5, 10)(10) == 0.0


def test_linear_decay_may_increase() -> None:
    assert values(linear_decay(0.1, 2, 0.3), range(4)) == pytest.approx([0.1, 0.2, 0.3, 0.3],
                                                                        **EXACT)


def test_cosine_decay_values() -> None:
    half = math.sqrt(2) / 2
    s = cosine_decay(1.0, 4)
    expected = [1.0, (1 + half) / 2, 0.5, (1 - half) / 2, 0.0, 0.0]
    assert values(s, range(6)) == pytest.approx(expected, **EXACT)
    assert s(4) == 0.0
    s = cosine_decay(2.0, 4, 0.4)  # end + (init - end) * (1 + cos) / 2
    assert values(s, range(6)) == pytest.approx([2.0, 0.4 + 1.6 * (1 + half) / 2, 1.2,
                                                 0.4 + 1.6 * (1 - half) / 2, 0.4, 0.4], **EXACT)
    assert s(10**6) == 0.4


def test_rsqrt_decay_values() -> None:
    s = rsqrt_decay(1.0, timescale=3)
    assert s(0) == 1.0
    assert s(1) == pytest.approx(math.sqrt(3) / 2, **EXACT)
    assert s(3) == pytest.approx(1 / math.sqrt(2), **EXACT)
    assert s(9) == pytest.approx(0.5, **EXACT)
    assert s(24) == pytest.approx(1 / 3, **EXACT)
    held = rsqrt_decay(0.6, timescale=3, decay_steps=9)
    assert held(9) == held(10) == held(10**6) == pytest.approx(0.3, **EXACT)
    assert rsqrt_decay(2.0)(3) == pytest.approx(1.0, **EXACT)  # default timescale 1


def test_warmup_ramp_is_exactly_linear_from_zero() -> None:
    s = warmup(constant(0.8), 4)
    assert values(s, range(7)) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8], **EXACT)
    assert s(0) == 0.0
    peak, w = 0.3, 1000
    s = warmup(cosine_decay(peak, 5000), w)
    ramp = values(s, range(w + 1))
    assert ramp == pytest.approx([peak * k / w for k in range(w + 1)], **EXACT)
    assert ramp[-1] == peak


def test_warmup_prepends_the_schedule() -> None:
    # The playbook: 10,000 steps of schedule + 1,000 warmup steps = 11,000 steps of training.
    base = linear_decay(0.2, 10_000, 0.02)
    s = warmup(base, 1000)
    for k in [0, 1, 2, 500, 9_999, 10_000, 10_001, 50_000]:
        assert s(1000 + k) == base(k)
    assert s(500) == pytest.approx(0.1, **EXACT)
    assert s(11_000) == 0.02
    assert s(10_000) > 0.02  # still decaying: the decay was shifted, not cut short


def test_warmup_zero_steps_is_the_schedule() -> None:
    base = cosine_decay(1.0, 10)
    assert values(warmup(base, 0), range(12)) == values(base, range(12))


def test_join_restarts_each_schedule_at_its_boundary() -> None:
    s = join([constant(1.0), linear_decay(1.0, 10, 0.0), constant(0.05)], [5, 15])
    assert values(s, range(5)) == [1.0] * 5
    assert s(5) == 1.0  # the linear decay's own step 0
    assert s(10) == pytest.approx(0.5, **EXACT)
    assert s(14) == pytest.approx(0.1, **EXACT)
    assert s(15) == 0.05
    assert s(10**6) == 0.05
    assert join([cosine_decay(1.0, 4)], [])(2) == pytest.approx(0.5, **EXACT)


def test_join_of_warmup_and_decay_is_warmup() -> None:
    base = cosine_decay(0.4, 90, 0.004)
    joined = join([linear_decay(0.0, 10, 0.4), base], [10])
    expected = warmup(base, 10)
    assert values(joined, range(200)) == pytest.approx(values(expected, range(200)), **EXACT)


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "message"), [
    (lambda: constant(-0.1), "value must be finite and >= 0, got -0.1"),
    (lambda: constant(math.nan), "value must be finite and >= 0, got nan"),
    (lambda: constant("0.1"), "value must be a real number, got '0.1'"),
    (lambda: linear_decay(-1.0, 10), "init_value must be finite and >= 0, got -1.0"),
    (lambda: linear_decay(1.0, 0), "decay_steps must be >= 1, got 0"),
    (lambda: linear_decay(1.0, 2.5), "decay_steps must be an integer, got 2.5"),
    (lambda: linear_decay(1.0, 10, math.inf), "end_value must be finite and >= 0, got inf"),
    (lambda: cosine_decay(1.0, -3), "decay_steps must be >= 1, got -3"),
    (lambda: cosine_decay(1.0, 3, -0.5), "end_value must be finite and >= 0, got -0.5"),
    (lambda: rsqrt_decay(1.0, timescale=0), "timescale must be > 0, got 0"),
    (lambda: rsqrt_decay(1.0, 1.0, decay_steps=0), "decay_steps must be >= 1, got 0"),
    (lambda: warmup(constant(1.0), -1), "warmup_steps must be >= 0, got -1"),
    (lambda: warmup(1.0, 10), "schedule must be callable, got 1.0"),
    (lambda: join([constant(1.0), constant(2.0)], []), "boundaries must have"),
    (lambda: join([constant(1.0), constant(2.0)], [0]), r"boundaries\[0\] must be >= 1, got 0"),
    (lambda: join([constant(1.0)] * 3, [5, 5]), r"strictly increasing, got \(5, 5\)"),
    (lambda: join([], []), "schedules must not be empty"),
])
def test_invalid_arguments_name_the_argument(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_negative_step() -> None:
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        linear_decay(1.0, 10)(-1)


# --- dataclass conveniences ----------------------------------------------------------------------


def test_schedules_are_printable_comparable_picklable() -> None:
    s = warmup(join([cosine_decay(0.1, 100, 0.001), rsqrt_decay(0.001, 50)], [100]), 10)
    assert pickle.loads(pickle.dumps(s)) == s
    assert values(pickle.loads(pickle.dumps(s)), range(300)) == values(s, range(300))
    assert s == warmup(join([cosine_decay(0.1, 100, 0.001), rsqrt_decay(0.001, 50)], [100]), 10)
    assert s != warmup(join([cosine_decay(0.1, 100, 0.001), rsqrt_decay(0.001, 50)], [100]), 11)
    assert hash(s) == hash(pickle.loads(pickle.dumps(s)))
    assert repr(linear_decay(1.0, 10)) == ("LinearDecay(init_value=1.0, decay_steps=10, "
                                           "end_value=0.0)")
    with pytest.raises(AttributeError):
        s.warmup_steps = 3  # type: ignore[misc]


def test_import_is_light() -> None:
    code = ("import sys, tunebook.schedules; "
            "print([m for m in ('torch', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_public_names() -> None:
    for name in schedules.__all__:
        obj = getattr(schedules, name)
        assert name == "Schedule" or obj.__doc__, name


# --- from_hparams --------------------------------------------------------------------------------


def test_from_hparams_defaults_to_constant() -> None:
    assert from_hparams({"learning_rate": 0.1, "width": 3}, 100) == constant(0.1)
    assert from_hparams({}, 100, default_learning_rate=0.2) == constant(0.2)
    with pytest.raises(ValueError, match="learning_rate"):
        from_hparams({}, 100)


def test_from_hparams_builds_each_family() -> None:
    hp = {"learning_rate": 0.1, "warmup_steps": 10}
    assert from_hparams({**hp, "schedule": "Linear"}, 110) == warmup(linear_decay(0.1, 100), 10)
    assert (from_hparams({**hp, "schedule": "cosine", "end_factor": 0.01}, 110)
            == warmup(cosine_decay(0.1, 100, 0.1 * 0.01), 10))
    assert (from_hparams({**hp, "schedule": "cosine", "end_learning_rate": 0.002,
                          "decay_steps": 50}, 110)
            == warmup(cosine_decay(0.1, 50, 0.002), 10))
    assert (from_hparams({**hp, "schedule": "rsqrt"}, 110)
            == warmup(rsqrt_decay(0.1, timescale=10, decay_steps=100), 10))
    assert (from_hparams({"learning_rate": 0.1, "schedule": "rsqrt", "rsqrt_timescale": 7}, 110)
            == rsqrt_decay(0.1, timescale=7, decay_steps=110))
    assert from_hparams({**hp, "schedule": "constant"}, 110) == warmup(constant(0.1), 10)


def test_from_hparams_decay_ends_at_max_train_steps() -> None:
    s = from_hparams({"learning_rate": 0.5, "schedule": "linear", "warmup_steps": 1000,
                      "end_factor": 0.1}, 11_000)
    assert s(0) == 0.0
    assert s(1000) == 0.5
    assert s(10_999) > 0.05
    assert s(11_000) == pytest.approx(0.05, **EXACT)
    # The rsqrt default: continuous with the warmup, then lr * sqrt(W / t) at total step t.
    r = from_hparams({"learning_rate": 0.5, "schedule": "rsqrt", "warmup_steps": 100}, 10_000)
    assert r(100) == 0.5
    assert r(400) == pytest.approx(0.5 * math.sqrt(100 / 400), **EXACT)


@pytest.mark.parametrize(("hparams", "message"), [
    ({"learning_rate": 0.1, "schedule": "step"},
     r"schedule must be one of \['constant', 'cosine', 'linear', 'rsqrt'\], got 'step'"),
    ({"learning_rate": -0.1}, "learning_rate must be finite and >= 0, got -0.1"),
    ({"learning_rate": 0.1, "warmup_steps": 100}, "warmup_steps must be < max_train_steps"),
    ({"learning_rate": 0.1, "warmup_steps": 1.5}, "warmup_steps must be an integer, got 1.5"),
    ({"learning_rate": 0.1, "schedule": "linear", "decay_steps": 0},
     "decay_steps must be >= 1, got 0"),
    ({"learning_rate": 0.1, "end_factor": 0.1, "end_learning_rate": 0.0}, "not both"),
    ({"learning_rate": 0.1, "schedule": "rsqrt", "rsqrt_timescale": 0},
     "rsqrt_timescale must be > 0, got 0"),
])
def test_from_hparams_errors(hparams: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_hparams(hparams, 100)


def test_from_hparams_accepts_integral_floats() -> None:
    s = from_hparams({"learning_rate": 0.1, "schedule": "linear", "warmup_steps": 10.0}, 110)
    assert s == warmup(linear_decay(0.1, 100), 10)


# --- against torch.optim.lr_scheduler ------------------------------------------------------------


@pytest.fixture
def lr_scheduler() -> Any:
    """``torch.optim.lr_scheduler``; these tests are skipped without torch."""
    return pytest.importorskip("torch.optim.lr_scheduler")


def torch_lrs(build: Callable[[Any], Any], lr: float, steps: int) -> list[float]:
    """The learning rate torch's scheduler gives each of ``steps`` optimizer steps."""
    import torch

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))], lr=lr)
    scheduler = build(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return out


def test_linear_decay_matches_torch_linear_lr(lr_scheduler: Any) -> None:
    def build(opt: Any) -> Any:
        return lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.1, total_iters=150)

    got = torch_lrs(build, 0.3, 200)  # includes 50 steps past the end: both hold
    assert values(linear_decay(0.3, 150, 0.03), range(200)) == pytest.approx(got, rel=1e-13)


def test_cosine_decay_matches_torch_cosine_annealing(lr_scheduler: Any) -> None:
    got = torch_lrs(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=200, eta_min=0.002), 0.3, 201)
    assert values(cosine_decay(0.3, 200, 0.002), range(201)) == pytest.approx(got, rel=1e-13)


def test_warmup_matches_torch_sequential_lr(lr_scheduler: Any) -> None:
    def build(opt: Any) -> Any:
        ramp = lr_scheduler.LambdaLR(opt, lambda step: step / 20)
        decay = lr_scheduler.CosineAnnealingLR(opt, T_max=180, eta_min=0.01)
        return lr_scheduler.SequentialLR(opt, [ramp, decay], milestones=[20])

    got = torch_lrs(build, 0.3, 201)
    assert values(warmup(cosine_decay(0.3, 180, 0.01), 20), range(201)) == pytest.approx(
        got, rel=1e-13, abs=1e-300)


def test_join_matches_torch_sequential_lr(lr_scheduler: Any) -> None:
    def build(opt: Any) -> Any:
        hold = lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
        linear = lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.5, total_iters=60)
        cosine = lr_scheduler.CosineAnnealingLR(opt, T_max=100, eta_min=0.001)
        return lr_scheduler.SequentialLR(opt, [hold, linear, cosine], milestones=[40, 100])

    got = torch_lrs(build, 0.2, 200)
    ours = join([constant(0.2), linear_decay(0.2, 60, 0.1), cosine_decay(0.2, 100, 0.001)],
                [40, 100])
    assert values(ours, range(200)) == pytest.approx(got, rel=1e-13)
