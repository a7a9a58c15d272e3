"""Polyak/EMA parameter averaging: exact values, swap in and out, validation, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from tunebook.execution.trial import Trial
from tunebook.torch.checkpoint import Checkpointer
from tunebook.torch.ema import ParameterEMA

torch.set_num_threads(1)


class Net(nn.Module):
    """One parameter, one float buffer, one integer buffer, all float64 for exact checks."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
        self.register_buffer("stat", torch.tensor([10.0], dtype=torch.float64))
        self.register_buffer("count", torch.tensor(0))

    def set(self, w: list[float], stat: float, count: int) -> None:
        with torch.no_grad():
            self.w.copy_(torch.tensor(w, dtype=torch.float64))
            self.stat.fill_(stat)  # type: ignore[operator]
            self.count.fill_(count)  # type: ignore[operator]


def test_exact_values_against_a_hand_computation() -> None:
    net = Net()
    ema = ParameterEMA(net, decay=0.9)
    expected_w, expected_stat = [1.0, -2.0], 10.0
    for t, (w, stat) in enumerate([([3.0, 0.5], 4.0), ([-1.0, 2.0], 6.0), ([0.25, 8.0], 0.0)]):
        net.set(w, stat, t + 1)
        ema.update()
        expected_w = [0.9 * e + 0.1 * v for e, v in zip(expected_w, w, strict=True)]
        expected_stat = 0.9 * expected_stat + 0.1 * stat
    assert ema.num_updates == 3
    assert ema.shadow["w"].tolist() == pytest.approx(expected_w, abs=1e-12)
    assert ema.shadow["stat"].item() == pytest.approx(expected_stat, abs=1e-12)
    assert "count" not in ema.shadow  # integer buffers are counters, not averaged
    # e.g. w[0]: 0.9^3 * 1 + 0.9^2 * 0.1 * 3 + 0.9 * 0.1 * (-1) + 0.1 * 0.25
    assert expected_w[0] == pytest.approx(0.729 + 0.243 - 0.09 + 0.025)


def test_a_model_without_parameters_is_fine() -> None:
    ema = ParameterEMA(nn.ReLU(), decay=0.9)
    ema.update()
    with ema.averaged():
        pass
    assert ema.num_updates == 1 and ema.shadow == {}


def test_warmup_decay() -> None:
    net = Net()
    ema = ParameterEMA(net, decay=0.99, warmup=True)
    assert ema.current_decay() == pytest.approx(2 / 11)
    net.set([0.0, 0.0], 0.0, 0)
    ema.update()
    assert ema.shadow["w"].tolist() == pytest.approx([2 / 11 * 1.0, 2 / 11 * -2.0], abs=1e-12)
    ema.num_updates = 10_000
    assert ema.current_decay() == 0.99


def test_averaged_swaps_in_and_restores_bit_identical_raw_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    ema = ParameterEMA(model, decay=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(16, 4)).pow(2).mean().backward()
        opt.step()
        ema.update()
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.averaged() as m:
        assert m is model
        changed = set()
        for name, value in model.state_dict().items():
            if name in ema.shadow:
                assert torch.equal(value, ema.shadow[name])
                if not torch.equal(value, raw[name]):
                    changed.add(name)
            else:  # num_batches_tracked
                assert torch.equal(value, raw[name])
        # (the first bias feeds batch norm: its gradient is zero, it never moves)
        assert changed == set(ema.shadow) - {"0.bias"}
    for name, value in model.state_dict().items():
        assert torch.equal(value, raw[name])
    with pytest.raises(RuntimeError, match="boom"), ema.swap():
        raise RuntimeError("boom")
    for name, value in model.state_dict().items():
        assert torch.equal(value, raw[name])


def test_buffers_can_be_left_alone() -> None:
    net = Net()
    ema = ParameterEMA(net, decay=0.9, average_buffers=False)
    assert set(ema.shadow) == {"w"}
    net.set([0.0, 0.0], 3.0, 1)
    ema.update()
    with ema.averaged():
        assert net.stat.item() == 3.0  # type: ignore[operator]
        assert net.w.tolist() == pytest.approx([0.9, -1.8])


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5, math.nan, math.inf, True, "0.9"])
def test_decay_validation(decay: object) -> None:
    with pytest.raises(ValueError, match="decay"):
        ParameterEMA(Net(), decay=decay)  # type: ignore[arg-type]


def test_low_precision_weights_are_averaged_in_float32() -> None:
    model = nn.Linear(2, 2).to(torch.bfloat16)
    ema = ParameterEMA(model, decay=0.999)
    assert ema.shadow["weight"].dtype == torch.float32
    with torch.no_grad():
        model.weight.add_(1.0)
    before = ema.shadow["weight"].clone()
    ema.update()
    assert not torch.equal(ema.shadow["weight"], before)  # a 1e-3 increment survives
    with ema.averaged():
        assert model.weight.dtype == torch.bfloat16


def test_copy_to_and_state_dict_round_trip() -> None:
    net = Net()
    ema = ParameterEMA(net, decay=0.75)
    net.set([4.0, 4.0], 2.0, 1)
    ema.update()
    other = ParameterEMA(Net(), decay=0.1)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.75 and other.num_updates == 1
    assert torch.equal(other.shadow["w"], ema.shadow["w"])
    target = Net()
    ema.copy_to(target)
    assert torch.equal(target.w.detach(), ema.shadow["w"])
    with pytest.raises(KeyError, match="missing"):
        ParameterEMA(nn.Linear(1, 1), 0.9).load_state_dict(ema.state_dict())


def test_saved_and_restored_by_the_checkpointer(tmp_path: Path) -> None:
    trial = Trial(hparams={}, max_train_steps=10, eval_every=5, seed=0, dir=tmp_path / "t",
                  objective="loss")
    net = Net()
    ema = ParameterEMA(net, decay=0.9)
    net.set([5.0, 5.0], 1.0, 1)
    ema.update()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trial.report(5, loss=1.0)
    Checkpointer(trial).save(5, net, opt, ema=ema)
    net2 = Net()
    ema2 = ParameterEMA(net2, decay=0.5)
    step = Checkpointer(trial).restore(net2, torch.optim.SGD(net2.parameters(), lr=0.1), ema=ema2)
    assert step == 5 and ema2.num_updates == 1 and ema2.decay == 0.9
    assert torch.equal(ema2.shadow["w"], ema.shadow["w"])
