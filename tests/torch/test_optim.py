"""The playbook's optimizers: step by step against a NumPy transcription of the appendix.

The reference below is written from the playbook's text ("What are the update rules for all the
popular optimization algorithms?"), independently of ``tunebook.torch.optim``, with the
gradients of the test problem derived by hand (the optimizers see autograd's).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tunebook.schedules import cosine_decay, warmup

# torch.optim first: a bare tests/torch/ folder on sys.path could otherwise pass for torch.
pytest.importorskip("torch.optim")
torch = pytest.importorskip("torch")
optim = pytest.importorskip("tunebook.torch.optim")

torch.set_num_threads(1)

STEPS = 100
NAMES = ["sgd", "momentum", "nesterov", "rmsprop", "adam", "nadam"]
SHAPES = {"W": (5, 3), "b": (3,), "u": (2, 2, 2)}


# --- the test problem: random least squares plus a random diagonal quadratic ----------------------


class Problem:
    """``0.5 mean_i ||x_i W + b - y_i||^2 + 0.5 sum h (u - c)^2`` on a minibatch per step."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(64, 5))
        self.y = rng.normal(size=(64, 3))
        self.h = rng.uniform(0.5, 2.0, size=SHAPES["u"])
        self.c = rng.normal(size=SHAPES["u"])
        self.init = {k: rng.normal(size=shape) for k, shape in SHAPES.items()}
        self.jitter = rng.uniform(0.5, 1.5, size=STEPS)

    def rows(self, step: int) -> np.ndarray:
        return (np.arange(8) + 8 * step) % 64

    def grads(self, p: dict[str, np.ndarray], step: int) -> dict[str, np.ndarray]:
        """The gradient, by hand."""
        x, y = self.x[self.rows(step)], self.y[self.rows(step)]
        r = x @ p["W"] + p["b"] - y
        return {"W": x.T @ r / len(x), "b": r.sum(0) / len(x), "u": self.h * (p["u"] - self.c)}

    def loss(self, p: dict[str, Any], step: int) -> Any:
        """The same loss in torch (for autograd)."""
        rows = torch.from_numpy(self.rows(step))
        x, y = torch.from_numpy(self.x)[rows], torch.from_numpy(self.y)[rows]
        r = x @ p["W"] + p["b"] - y
        h, c = torch.from_numpy(self.h), torch.from_numpy(self.c)
        return 0.5 * (r**2).sum(1).mean() + 0.5 * (h * (p["u"] - c) ** 2).sum()

    def lr(self, name: str, step: int) -> float:
        """A changing learning rate: warmup + cosine decay, jittered."""
        base = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05}.get(name, 0.02)
        return warmup(cosine_decay(base, 90, base / 10), 10)(step) * float(self.jitter[step])

    def torch_params(self) -> dict[str, Any]:
        return {k: torch.nn.Parameter(torch.tensor(v)) for k, v in self.init.items()}


# --- the reference: the appendix, transcribed in NumPy -------------------------------------------


def reference_update(name: str, theta: np.ndarray, grad: np.ndarray, s: dict[str, Any],
                     eta: float, hp: dict[str, float]) -> np.ndarray:
    """theta_{t+1} from theta_t, the gradient and the state ``s`` (updated in place)."""
    g = grad + hp.get("weight_decay", 0.0) * theta  # coupled L2: grad of l + lambda/2 |theta|^2
    if name == "sgd":
        return theta - eta * g
    if name in ("momentum", "nesterov"):
        gamma = hp["momentum"]
        v = s.get("v", np.zeros_like(theta))  # v_0 = 0
        v = gamma * v + g  # v_{t+1} = gamma v_t + grad
        s["v"] = v
        if name == "momentum":
            return theta - eta * v  # theta_{t+1} = theta_t - eta_t v_{t+1}
        return theta - eta * (gamma * v + g)  # theta_t - eta_t (gamma v_{t+1} + grad)
    if name == "rmsprop":
        rho, gamma, eps = hp["rho"], hp["momentum"], hp["eps"]
        v = s.get("v", np.ones_like(theta))  # v_0 = 1
        m = s.get("m", np.zeros_like(theta))  # m_0 = 0
        v = rho * v + (1 - rho) * g**2
        m = gamma * m + eta / np.sqrt(v + eps) * g
        s["v"], s["m"] = v, m
        return theta - m
    beta1, beta2, eps = hp["beta1"], hp["beta2"], hp["eps"]
    t = s.get("t", 0)
    m = s.get("m", np.zeros_like(theta))  # m_0 = 0
    v = s.get("v", np.zeros_like(theta))  # v_0 = 0
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g**2
    b = np.sqrt(1 - beta2 ** (t + 1)) / (1 - beta1 ** (t + 1))
    s["t"], s["m"], s["v"] = t + 1, m, v
    if name == "adam":
        return theta - eta * m / (np.sqrt(v) + eps) * b
    return theta - eta * (beta1 * m + (1 - beta1) * g) / (np.sqrt(v) + eps) * b  # nadam


# Hyperparameters of the first parameter group (W, b) and the overrides of the second (u).
HPARAMS: dict[str, dict[str, float]] = {
    "sgd": {},
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9},
    "rmsprop": {"rho": 0.95, "momentum": 0.8, "eps": 1e-6},
    "adam": {"beta1": 0.9, "beta2": 0.99, "eps": 1e-6},
    "nadam": {"beta1": 0.9, "beta2": 0.99, "eps": 1e-6},
}
OVERRIDES: dict[str, dict[str, float]] = {
    "sgd": {"weight_decay": 0.03},
    "momentum": {"momentum": 0.5},
    "nesterov": {"momentum": 0.5},
    "rmsprop": {"rho": 0.5, "eps": 1e-3},
    "adam": {"beta1": 0.5, "eps": 1e-4},
    "nadam": {"beta2": 0.9},
}
CLASSES = {"sgd": "SGD", "momentum": "Momentum", "nesterov": "Nesterov", "rmsprop": "RMSProp",
           "adam": "Adam", "nadam": "NAdam"}


def build(name: str, params: dict[str, Any], weight_decay: float = 0.0) -> Any:
    cls = getattr(optim, CLASSES[name])
    groups = [{"params": [params["W"], params["b"]]},
              {"params": [params["u"]], **OVERRIDES[name]}]
    return cls(groups, lr=1.0, weight_decay=weight_decay, **HPARAMS[name])


def torch_step(problem: Problem, opt: Any, params: dict[str, Any], name: str, step: int) -> None:
    optim.set_lr(opt, problem.lr(name, step))
    opt.zero_grad()
    problem.loss(params, step).backward()
    opt.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("name", NAMES)
def test_matches_numpy_transcription(name: str, weight_decay: float) -> None:
    problem = Problem(seed=NAMES.index(name))
    params = problem.torch_params()
    opt = build(name, params, weight_decay)

    theta = {k: v.copy() for k, v in problem.init.items()}
    states: dict[str, dict[str, Any]] = {k: {} for k in theta}
    hps = {k: {"weight_decay": weight_decay, **HPARAMS[name]} for k in theta}
    hps["u"].update(OVERRIDES[name])
    moved = 0.0
    for step in range(STEPS):
        torch_step(problem, opt, params, name, step)
        eta = problem.lr(name, step)
        grads = problem.grads(theta, step)
        theta = {k: reference_update(name, theta[k], grads[k], states[k], eta, hps[k])
                 for k in theta}
        for k in theta:
            np.testing.assert_allclose(params[k].detach().numpy(), theta[k], rtol=1e-10,
                                       atol=1e-12, err_msg=f"{name}: {k} after step {step + 1}")
    for k in theta:
        moved = max(moved, float(np.abs(theta[k] - problem.init[k]).max()))
    assert moved > 0.1  # the trajectories go somewhere


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_resumes_exactly(name: str) -> None:
    problem = Problem(seed=10)
    params = problem.torch_params()
    opt = build(name, params)
    for step in range(40):
        torch_step(problem, opt, params, name, step)
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    buffer = io.BytesIO()
    torch.save({"params": {k: v.detach() for k, v in params.items()},
                "optimizer": opt.state_dict()}, buffer)
    for step in range(40, 80):
        torch_step(problem, opt, params, name, step)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    restored = {k: torch.nn.Parameter(v.clone()) for k, v in saved["params"].items()}
    cls = getattr(optim, CLASSES[name])
    fresh = cls([{"params": [restored["W"], restored["b"]]}, {"params": [restored["u"]]}],
                lr=1.0)  # default hyperparameters: the checkpoint brings the group's own
    fresh.load_state_dict(saved["optimizer"])
    assert [{k: v for k, v in g.items() if k != "params"} for g in fresh.param_groups] == groups
    for step in range(40, 80):
        torch_step(problem, fresh, restored, name, step)
    for k in params:
        assert torch.equal(params[k], restored[k]), k
    if name in ("adam", "nadam"):
        assert fresh.state[restored["u"]]["step"] == 80


def test_state_uses_the_playbook_names_and_initial_values() -> None:
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    rmsprop = optim.RMSProp([theta], lr=0.1, rho=0.9, momentum=0.5, eps=0.0)
    theta.grad = torch.tensor([2.0, 0.0], dtype=torch.float64)
    rmsprop.step()
    # v_1 = rho * 1 + (1 - rho) g^2 (v_0 = 1); m_1 = eta g / sqrt(v_1)
    assert rmsprop.state[theta]["v"].tolist() == pytest.approx([0.9 + 0.4, 0.9])
    assert rmsprop.state[theta]["m"].tolist() == pytest.approx([0.2 / 1.3**0.5, 0.0])
    adam = optim.Adam([theta], lr=0.1)
    adam.step()
    assert sorted(adam.state[theta]) == ["m", "step", "v"]
    assert adam.state[theta]["step"] == 1


# --- where the optimizers coincide with torch's, and where they differ ---------------------------


def run_pair(ours: Callable[[list[Any]], Any], theirs: Callable[[list[Any]], Any],
             steps: int) -> tuple[list[Any], list[Any]]:
    """Run both optimizers on the same problem and learning rates; return their parameters."""
    problem = Problem(seed=20)
    out = []
    for make in (ours, theirs):
        params = problem.torch_params()
        opt = make(list(params.values()))
        for step in range(steps):
            torch_step(problem, opt, params, "sgd", step)
        out.append([p.detach() for p in params.values()])
    return out[0], out[1]


@pytest.mark.parametrize(("ours", "theirs"), [
    (lambda p: optim.SGD(p, lr=1.0), lambda p: torch.optim.SGD(p, lr=1.0)),
    (lambda p: optim.SGD(p, lr=1.0, weight_decay=0.1),
     lambda p: torch.optim.SGD(p, lr=1.0, weight_decay=0.1)),
    (lambda p: optim.Momentum(p, lr=1.0, momentum=0.9),
     lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.9)),
    (lambda p: optim.Nesterov(p, lr=1.0, momentum=0.9, weight_decay=0.1),
     lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.9, nesterov=True, weight_decay=0.1)),
    (lambda p: optim.Adam(p, lr=1.0, beta1=0.8, beta2=0.95, eps=0.0),
     lambda p: torch.optim.Adam(p, lr=1.0, betas=(0.8, 0.95), eps=0.0)),
], ids=["sgd", "sgd-weight-decay", "momentum", "nesterov", "adam-eps-0"])
def test_coincides_with_torch(ours: Any, theirs: Any) -> None:
    # With a changing learning rate: eta_t sits outside the velocity in both.
    a, b = run_pair(ours, theirs, STEPS)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


def first_step(opt: Any, theta: Any, grad: Any) -> Any:
    before = theta.detach().clone()
    theta.grad = grad.clone()
    opt.step()
    return theta.detach() - before


G = torch.tensor([0.3, -0.02, 1e-4, 5.0], dtype=torch.float64)


def test_rmsprop_differs_from_torch_on_step_one() -> None:
    eta, rho, eps = 0.01, 0.9, 1e-8
    ours_theta = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    torch_theta = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    ours = first_step(optim.RMSProp([ours_theta], lr=eta, rho=rho, eps=eps), ours_theta, G)
    theirs = first_step(torch.optim.RMSprop([torch_theta], lr=eta, alpha=rho, eps=eps),
                        torch_theta, G)
    # Playbook: v_0 = 1, eps inside the root; torch: v_0 = 0, eps outside.
    torch.testing.assert_close(ours, -eta * G / torch.sqrt(rho + (1 - rho) * G**2 + eps))
    torch.testing.assert_close(theirs, -eta * G / (np.sqrt(1 - rho) * G.abs() + eps))
    ratio = theirs.abs() / ours.abs()  # torch's first step is ~ eta sign(g) / sqrt(1 - rho)
    assert ratio.min() > 1.1
    assert ratio.max() > 1000  # for small gradients


def test_rmsprop_learning_rate_enters_the_momentum_buffer() -> None:
    # Lowering eta_t does not shrink the step at once (it does in torch's form).
    theta = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = optim.RMSProp([theta], lr=1.0, rho=0.0, momentum=0.5, eps=0.0)
    first_step(opt, theta, torch.ones(1, dtype=torch.float64))  # m_1 = 1
    optim.set_lr(opt, 0.0)
    second = first_step(opt, theta, torch.ones(1, dtype=torch.float64))  # m_2 = 0.5 m_1 + 0
    assert second.item() == -0.5


def test_adam_differs_from_torch_by_where_eps_sits() -> None:
    alpha, beta1, beta2, eps = 0.01, 0.9, 0.999, 0.1
    ours_theta = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    torch_theta = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    ours = first_step(optim.Adam([ours_theta], lr=alpha, beta1=beta1, beta2=beta2, eps=eps),
                      ours_theta, G)
    theirs = first_step(torch.optim.Adam([torch_theta], lr=alpha, betas=(beta1, beta2), eps=eps),
                        torch_theta, G)
    # m_1 = (1 - b1) g, v_1 = (1 - b2) g^2, b_1 = sqrt(1 - b2) / (1 - b1)
    root = np.sqrt(1 - beta2)
    torch.testing.assert_close(ours, -alpha * root * G / (root * G.abs() + eps))
    torch.testing.assert_close(theirs, -alpha * G / (G.abs() + eps))
    assert (ours - theirs).abs().max() > 1e-3


def test_nadam_differs_from_torch() -> None:
    alpha, beta1, beta2 = 0.01, 0.9, 0.999
    ours_theta = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    torch_theta = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    ours = first_step(optim.NAdam([ours_theta], lr=alpha, beta1=beta1, beta2=beta2, eps=0.0),
                      ours_theta, G)
    theirs = first_step(torch.optim.NAdam([torch_theta], lr=alpha, betas=(beta1, beta2),
                                          eps=0.0), torch_theta, G)
    # (beta1 m_1 + (1 - beta1) g) b_1 / sqrt(v_1) = (1 + beta1) sign(g)
    torch.testing.assert_close(ours, -alpha * (1 + beta1) * G.sign())
    assert (ours.abs() / theirs.abs()).min() > 1.5  # torch's first step is ~1.06 alpha


# --- coupled weight decay ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam"])
def test_weight_decay_is_l2_added_to_the_loss(name: str) -> None:
    lam = 0.05
    problem = Problem(seed=30)
    decayed, explicit = problem.torch_params(), problem.torch_params()
    opt_a = getattr(optim, CLASSES[name])(list(decayed.values()), lr=0.01, weight_decay=lam)
    opt_b = getattr(optim, CLASSES[name])(list(explicit.values()), lr=0.01)
    for step in range(30):
        opt_a.zero_grad()
        problem.loss(decayed, step).backward()
        opt_a.step()
        opt_b.zero_grad()
        l2 = sum((p**2).sum() for p in explicit.values())
        (problem.loss(explicit, step) + lam / 2 * l2).backward()
        opt_b.step()
    for k in decayed:
        torch.testing.assert_close(decayed[k], explicit[k], rtol=1e-10, atol=1e-12)


# --- torch optimizer conventions -----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_closure_and_missing_gradients(name: str) -> None:
    problem = Problem(seed=40)
    params = problem.torch_params()
    frozen = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = getattr(optim, CLASSES[name])([*params.values(), frozen], lr=0.01)

    def closure() -> Any:
        opt.zero_grad()
        loss = problem.loss(params, 0)
        loss.backward()
        return loss

    with torch.no_grad():  # step re-enables gradients for the closure
        loss = opt.step(closure)
    assert loss.item() == pytest.approx(problem.loss(problem.torch_params(), 0).item())
    assert opt.step() is None
    assert torch.equal(frozen, torch.ones(3, dtype=torch.float64))
    assert frozen not in opt.state
    assert all(p.grad_fn is None and p.is_leaf for p in params.values())


def test_float32_parameters() -> None:
    theta = torch.nn.Parameter(torch.ones(3))
    opt = optim.NAdam([theta], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (theta**2).sum().backward()
        opt.step()
    assert theta.dtype == torch.float32
    assert opt.state[theta]["m"].dtype == torch.float32
    assert bool((theta < 1).all())


def test_set_lr() -> None:
    theta = torch.nn.Parameter(torch.ones(2))
    other = torch.nn.Parameter(torch.ones(2))
    opt = optim.Adam([{"params": [theta]}, {"params": [other], "lr": 0.5}], lr=0.1)
    optim.set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]
    with pytest.raises(ValueError, match="value must be >= 0, got -1"):
        optim.set_lr(opt, -1)


@pytest.mark.parametrize(("build_bad", "message"), [
    (lambda p: optim.SGD(p, lr=-0.1), r"lr must be >= 0, got -0.1"),
    (lambda p: optim.Momentum(p, lr=0.1, momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
    (lambda p: optim.RMSProp(p, lr=0.1, rho=-0.1), r"rho must be in \[0, 1\), got -0.1"),
    (lambda p: optim.RMSProp(p, lr=0.1, eps=-1.0), r"eps must be >= 0, got -1.0"),
    (lambda p: optim.Adam(p, lr=0.1, beta2=1), r"beta2 must be in \[0, 1\), got 1"),
    (lambda p: optim.NAdam(p, lr=0.1, weight_decay=-1), r"weight_decay must be >= 0, got -1"),
    (lambda p: optim.Nesterov([{"params": p, "momentum": 2.0}], lr=0.1),
     r"momentum must be in \[0, 1\), got 2.0"),
    (lambda p: optim.Adam(p, lr=float("nan")), r"lr must be finite, got nan"),
])
def test_invalid_hyperparameters(build_bad: Callable[[list[Any]], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_bad([torch.nn.Parameter(torch.ones(2))])


# --- make_optimizer ------------------------------------------------------------------------------


def test_make_optimizer_defaults() -> None:
    p = [torch.nn.Parameter(torch.ones(2))]
    expected = {
        "sgd": {"lr": 0.01},
        "momentum": {"lr": 0.01, "momentum": 0.9},
        "nesterov": {"lr": 0.01, "momentum": 0.9},
        "rmsprop": {"lr": 1e-3, "rho": 0.9, "momentum": 0.0, "eps": 1e-8},
        "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
        "nadam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    }
    for name, hps in expected.items():
        opt = optim.make_optimizer(name.upper(), p, {"width": 128, "beta1": 0.5} if name in (
            "sgd", "momentum") else {})  # irrelevant names are ignored
        assert type(opt) is getattr(optim, CLASSES[name])
        group = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
        assert group == {**hps, "weight_decay": 0.0}, name


def test_make_optimizer_reads_hyperparameters() -> None:
    p = [torch.nn.Parameter(torch.ones(2))]
    opt = optim.make_optimizer("Adam", p, {"learning_rate": 0.3, "one_minus_beta1": 0.25,
                                           "beta2": 0.9, "epsilon": 1e-3, "weight_decay": 0.1})
    group = opt.param_groups[0]
    assert (group["lr"], group["beta1"], group["beta2"], group["eps"], group["weight_decay"]) == (
        0.3, 0.75, 0.9, 1e-3, 0.1)
    opt = optim.make_optimizer("rmsprop", p, {"one_minus_rho": 0.125, "one_minus_momentum": 0.5})
    assert (opt.param_groups[0]["rho"], opt.param_groups[0]["momentum"]) == (0.875, 0.5)
    opt = optim.make_optimizer("nesterov", p, {"momentum": 0.95})
    assert opt.param_groups[0]["momentum"] == 0.95


@pytest.mark.parametrize(("name", "hparams", "message"), [
    ("adagrad", {}, r"optimizer must be one of \['adam', 'momentum', 'nadam', 'nesterov', "
                    r"'rmsprop', 'sgd'\], got 'adagrad'"),
    ("adam", {"beta1": 0.9, "one_minus_beta1": 0.1}, "give beta1 or one_minus_beta1, not both"),
    ("adam", {"beta1": 1.5}, r"beta1 must be in \[0, 1\), got 1.5"),
    ("adam", {"one_minus_beta2": 0.0}, r"one_minus_beta2 must be in \(0, 1\], got 0.0"),
    ("nadam", {"epsilon": -1e-8}, "epsilon must be >= 0, got -1e-08"),
    ("sgd", {"learning_rate": -1.0}, "learning_rate must be >= 0, got -1.0"),
    ("momentum", {"weight_decay": "0.1"}, "weight_decay must be a real number, got '0.1'"),
])
def test_make_optimizer_errors(name: str, hparams: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        optim.make_optimizer(name, [torch.nn.Parameter(torch.ones(2))], hparams)
