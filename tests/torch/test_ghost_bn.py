"""Ghost batch norm: plain BatchNorm for one virtual batch, BatchNorm per chunk otherwise."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from tunebook.torch.ghost_bn import (
    GhostBatchNorm1d,
    GhostBatchNorm2d,
    GhostBatchNorm3d,
    convert_ghost_batch_norm,
)

torch.set_num_threads(1)

CASES = [  # (ghost class, plain class, example shape without the batch dimension)
    (GhostBatchNorm1d, nn.BatchNorm1d, (6,)),
    (GhostBatchNorm1d, nn.BatchNorm1d, (6, 5)),
    (GhostBatchNorm2d, nn.BatchNorm2d, (6, 3, 4)),
    (GhostBatchNorm3d, nn.BatchNorm3d, (6, 2, 3, 2)),
]


def pair(ghost_cls: type, plain_cls: type, vbs: int, **kw: object) -> tuple[_BatchNorm, _BatchNorm]:
    """A ghost and a plain batch norm with the same (random) affine parameters, in float64."""
    plain: _BatchNorm = plain_cls(6, **kw).double()
    if plain.affine:
        with torch.no_grad():
            plain.weight.uniform_(0.5, 1.5)
            plain.bias.uniform_(-0.5, 0.5)
    ghost: _BatchNorm = ghost_cls(6, virtual_batch_size=vbs, **kw).double()
    ghost.load_state_dict(plain.state_dict())
    return ghost, plain


def batch(n: int, shape: tuple[int, ...]) -> torch.Tensor:
    return (torch.randn(n, *shape, dtype=torch.float64) * 3 + 1).requires_grad_()


def per_chunk(bn: nn.Module, x: torch.Tensor, vbs: int) -> torch.Tensor:
    return torch.cat([bn(chunk) for chunk in torch.split(x, vbs)])


def running(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor, int]:
    assert bn.running_mean is not None and bn.running_var is not None
    assert bn.num_batches_tracked is not None
    return bn.running_mean, bn.running_var, int(bn.num_batches_tracked)


@pytest.mark.parametrize(("ghost_cls", "plain_cls", "shape"), CASES)
def test_one_virtual_batch_is_exactly_batch_norm(ghost_cls: type, plain_cls: type,
                                                 shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    for vbs in (32, 100):  # virtual batch == batch, and larger than the batch
        ghost, plain = pair(ghost_cls, plain_cls, vbs)
        for _ in range(3):
            x = batch(32, shape)
            assert torch.equal(ghost(x), plain(x))
        assert all(torch.equal(a, b) for a, b in zip(running(ghost)[:2], running(plain)[:2],
                                                      strict=True))
        ghost.eval()
        plain.eval()
        x = batch(7, shape)
        assert torch.equal(ghost(x), plain(x))


@pytest.mark.parametrize(("ghost_cls", "plain_cls", "shape"), CASES)
@pytest.mark.parametrize(("n", "vbs"), [(64, 16), (40, 16), (12, 4)])
def test_chunks_equal_batch_norm_applied_per_chunk(ghost_cls: type, plain_cls: type,
                                                   shape: tuple[int, ...], n: int,
                                                   vbs: int) -> None:
    torch.manual_seed(1)
    ghost, plain = pair(ghost_cls, plain_cls, vbs)
    for _ in range(3):  # running statistics accumulate over steps as well
        x = batch(n, shape)
        x2 = x.detach().clone().requires_grad_()
        y, ref = ghost(x), per_chunk(plain, x2, vbs)
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
        # and it is not plain batch norm over the whole batch
        assert not torch.allclose(y, nn.functional.batch_norm(
            x, None, None, plain.weight, plain.bias, True, 0.0, float(plain.eps)))
        # gradients flow through the folded computation like through per-chunk batch norm
        weights = torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape)
        (y * weights).sum().backward()
        (ref * weights).sum().backward()  # type: ignore[no-untyped-call]
        torch.testing.assert_close(x.grad, x2.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ghost.weight.grad, plain.weight.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ghost.bias.grad, plain.bias.grad, rtol=1e-9, atol=1e-9)
    # Hoffer et al.: one running-statistics update per virtual batch, in order.
    (g_mean, g_var, g_count), (p_mean, p_var, p_count) = running(ghost), running(plain)
    torch.testing.assert_close(g_mean, p_mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_var, p_var, rtol=1e-10, atol=1e-12)
    assert g_count == p_count == 3 * -(-n // vbs)
    ghost.eval()
    plain.eval()
    x = batch(n, shape)
    torch.testing.assert_close(ghost(x), plain(x), rtol=1e-10, atol=1e-10)  # eval: running stats


def test_cumulative_average_without_momentum() -> None:
    torch.manual_seed(2)
    ghost, plain = pair(GhostBatchNorm2d, nn.BatchNorm2d, 8, momentum=None)
    for _ in range(2):
        x = batch(24, (6, 3, 4))
        torch.testing.assert_close(ghost(x), per_chunk(plain, x, 8))
    torch.testing.assert_close(running(ghost)[:2], running(plain)[:2], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", [{"affine": False}, {"track_running_stats": False}])
def test_variants(kw: dict[str, bool]) -> None:
    torch.manual_seed(3)
    ghost, plain = pair(GhostBatchNorm1d, nn.BatchNorm1d, 4, **kw)
    x = batch(16, (6,))
    torch.testing.assert_close(ghost(x), per_chunk(plain, x, 4))
    if not kw.get("track_running_stats", True):  # no running stats: batch stats in eval too
        ghost.eval()
        plain.eval()
        torch.testing.assert_close(ghost(x), per_chunk(plain, x, 4))


def test_virtual_batch_size_validation_and_repr() -> None:
    for bad in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match="virtual_batch_size"):
            GhostBatchNorm2d(3, virtual_batch_size=bad)  # type: ignore[arg-type]
    module = GhostBatchNorm2d(3, virtual_batch_size=32)
    assert "virtual_batch_size=32" in repr(module)
    assert isinstance(module, nn.BatchNorm2d)


def test_convert_replaces_plain_batch_norms_and_keeps_their_state() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                          nn.Linear(6 * 4 * 4, 5), nn.BatchNorm1d(5))
    model(torch.randn(8, 3, 6, 6))  # move the running statistics
    model.eval()
    before = copy.deepcopy(model)
    x = torch.randn(4, 3, 6, 6)
    converted = convert_ghost_batch_norm(model, virtual_batch_size=2)
    assert converted is model
    assert isinstance(model[1], GhostBatchNorm2d) and isinstance(model[5], GhostBatchNorm1d)
    assert model[1].virtual_batch_size == 2 and not model[1].training
    assert torch.equal(model(x), before(x))  # eval: identical
    single = convert_ghost_batch_norm(nn.BatchNorm1d(3), 16)
    assert isinstance(single, GhostBatchNorm1d)
