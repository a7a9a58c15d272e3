"""Gradient clipping by global norm: the playbook's rule, threshold and >50% finding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from tunebook.torch.clip import (
    AGGRESSIVE_CLIPPING,
    ClipResult,
    ClipTracker,
    clip_grad_norm,
    clip_threshold,
    grad_norm,
)

torch.set_num_threads(1)


def model_with_grads(scale: float = 1.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3))
    frozen = nn.Parameter(torch.ones(4))  # no gradient: ignored
    model.register_parameter("frozen", frozen)
    x = torch.randn(16, 7)
    (model(x) * scale).pow(2).sum().backward()
    return model


def grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def hand_norm(gs: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float((g.double() ** 2).sum()) for g in gs))


def test_norm_matches_torch_clip_grad_norm() -> None:
    model = model_with_grads()
    ours = grad_norm(model.parameters())
    result = clip_grad_norm(model.parameters(), None)
    theirs = float(torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf))
    assert result == ClipResult(ours, False)
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert ours == pytest.approx(hand_norm(grads(model)), rel=1e-6)
    assert grad_norm([nn.Parameter(torch.ones(3))]) == 0.0  # no gradient at all


def test_clipping_is_exactly_the_playbook_rule() -> None:
    # Small gradients: torch's "+1e-6" in the denominator would be a 1e-3 relative error here.
    model = model_with_grads(scale=1e-3)
    before = grads(model)
    norm = hand_norm(before)
    lam = norm / 7.0
    result = clip_grad_norm(model.parameters(), lam)
    assert result.clipped and result.norm == pytest.approx(norm, rel=1e-6)
    for g0, g1 in zip(before, grads(model), strict=True):
        expected = g0.double() * (lam / norm)  # g' = λ g / ||g||
        torch.testing.assert_close(g1.double(), expected, rtol=1e-6, atol=0.0)
    assert grad_norm(model.parameters()) == pytest.approx(lam, rel=1e-6)


def test_no_clipping_at_or_below_the_threshold() -> None:
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])  # norm exactly 5
    assert clip_grad_norm([p], 5.0) == ClipResult(5.0, False)  # "greater than": 5 is kept
    assert torch.equal(p.grad, torch.tensor([3.0, 4.0]))  # untouched, not even * 1.0
    assert clip_grad_norm([p], 100.0) == ClipResult(5.0, False)
    assert clip_grad_norm(p, math.inf) == ClipResult(5.0, False)  # a single tensor works too
    assert clip_grad_norm([p], 2.5) == ClipResult(5.0, True)
    torch.testing.assert_close(p.grad, torch.tensor([1.5, 2.0]), rtol=0, atol=1e-7)


def test_non_finite_norm_is_reported_and_left_alone() -> None:
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([math.inf, 1.0])
    result = clip_grad_norm([p], 1.0)
    assert math.isinf(result.norm) and not result.clipped
    assert p.grad[1] == 1.0


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_invalid_threshold(bad: float) -> None:
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm([nn.Parameter(torch.zeros(1))], bad)


def test_threshold_is_the_linear_interpolation_quantile() -> None:
    assert clip_threshold(range(1, 12)) == pytest.approx(10.0)  # h = 10 * 0.9 = 9 -> x[9]
    assert clip_threshold([4.0, 1.0, 3.0, 2.0]) == pytest.approx(3.7)  # h = 2.7
    assert clip_threshold([2.0]) == 2.0
    assert clip_threshold([1.0, 2.0, math.nan, math.inf], 1.0) == 2.0  # non-finite ignored
    rng = np.random.default_rng(0)
    data = rng.lognormal(size=101)
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        assert clip_threshold(data.tolist(), q) == pytest.approx(float(np.quantile(data, q)))
    with pytest.raises(ValueError):
        clip_threshold([])
    with pytest.raises(ValueError):
        clip_threshold([1.0], 1.5)


def test_threshold_is_the_reports_percentile() -> None:
    # The report marked 9.0 on the histogram of 1..10 (nearest rank) while this gave 9.1: both
    # are tunebook.analysis.stats.quantile now.
    from tunebook.analysis.stats import quantile

    norms = [float(v) for v in range(1, 11)]
    assert clip_threshold(norms) == quantile(norms, 0.9) == pytest.approx(9.1)


@pytest.mark.parametrize(("clipped", "fires"), [(51, True), (50, False), (49, False), (0, False)])
def test_more_than_half_clipped_is_extremely_aggressive(clipped: int, fires: bool) -> None:
    tracker = ClipTracker(max_norm=1.0)
    for i in range(100):
        tracker.record(ClipResult(2.0 if i < clipped else 0.5, i < clipped))
    assert tracker.fraction_clipped == clipped / 100
    assert tracker.aggressive is fires
    finding = tracker.finding()
    if fires:
        assert finding is not None and AGGRESSIVE_CLIPPING in finding and "51 of 100" in finding
    else:
        assert finding is None


def test_tracker_clips_and_records_unclipped_norms() -> None:
    tracker = ClipTracker(max_norm=0.5)
    assert tracker.finding() is None and tracker.metrics() == {"clip_fraction": 0.0}
    norms = []
    for seed in range(4):
        model = model_with_grads(seed=seed)
        norms.append(grad_norm(model.parameters()))
        tracker.clip(model.parameters())
        assert grad_norm(model.parameters()) <= 0.5 * (1 + 1e-6)
    assert tracker.norms == pytest.approx(norms)  # the unclipped ones
    assert tracker.steps == 4 and tracker.clipped_steps == sum(n > 0.5 for n in norms)
    assert tracker.threshold() == pytest.approx(float(np.quantile(norms, 0.9)))
    assert tracker.metrics()["grad_norm"] == pytest.approx(norms[-1])
    restored = ClipTracker(max_norm=0.5)
    restored.load_state_dict(tracker.state_dict())
    assert restored.state_dict() == tracker.state_dict()


def test_tracker_keeps_a_window_but_counts_everything() -> None:
    tracker = ClipTracker(max_norm=1.0, keep_norms=3)
    for v in (5.0, 0.1, 0.2, 0.3):
        tracker.record(ClipResult(v, v > 1.0))
    assert tracker.norms == [0.1, 0.2, 0.3] and tracker.steps == 4 and tracker.clipped_steps == 1


def test_tracker_keeps_a_bounded_window_of_norms_by_default() -> None:
    from tunebook.torch.clip import ClipResult, ClipTracker

    tracker = ClipTracker()
    for i in range(10_050):
        tracker.record(ClipResult(float(i), False))
    assert len(tracker.norms) == 10_000 and tracker.norms[0] == 50.0
    assert tracker.steps == 10_050


def _train(max_norm: float | None, steps: int = 150) -> ClipTracker:
    """A small MLP trained by SGD on a fixed random problem, clipping by ``max_norm``."""
    torch.manual_seed(0)
    x, y = torch.randn(256, 10), torch.randint(0, 4, (256,))
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = ClipTracker(max_norm, keep_norms=None)
    for step in range(steps):
        batch = slice(32 * (step % 8), 32 * (step % 8 + 1))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
        tracker.clip(model.parameters())
        opt.step()
    return tracker


def test_the_90th_percentile_of_a_whole_run_clips_a_few_updates_a_low_one_most() -> None:
    # The playbook's loop on a real model: log the unclipped norms of an unclipped run, clip a
    # rerun at their 90th percentile (a few outlier updates clipped, no finding), and at their
    # 10th (more than half clipped: "extremely aggressive").
    measured = _train(None)
    assert measured.steps == len(measured.norms) == 150 and measured.fraction_clipped == 0.0
    at_90 = _train(measured.threshold(0.9))
    assert 0.0 < at_90.fraction_clipped < 0.5 and at_90.finding() is None
    at_10 = _train(measured.threshold(0.1))
    assert at_10.fraction_clipped > 0.5
    assert at_10.finding() is not None and AGGRESSIVE_CLIPPING in (at_10.finding() or "")
    # The unclipped norms are what is recorded, before the rescaling.
    assert at_10.norms[0] == measured.norms[0] > measured.threshold(0.1)
