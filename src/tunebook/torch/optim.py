r"""The playbook's optimizers, transcribed exactly, as ``torch.optim.Optimizer`` subclasses.

The update rules are those of the playbook's appendix "What are the update rules for all the
popular optimization algorithms?". ``\nabla l(\theta_t)`` is the gradient at step ``t``, written
``g_t`` below; ``t`` counts updates from 0; ``\eta_t`` (``\alpha_t`` for Adam and NAdam) is the
learning rate of the parameter group at the time of the step, so a schedule applies by setting
``group["lr"]`` before each step (:func:`set_lr`)::

    SGD:       \theta_{t+1} = \theta_t - \eta_t g_t

    Momentum:  v_0 = 0
               v_{t+1} = \gamma v_t + g_t
               \theta_{t+1} = \theta_t - \eta_t v_{t+1}

    Nesterov:  v_0 = 0
               v_{t+1} = \gamma v_t + g_t
               \theta_{t+1} = \theta_t - \eta_t (\gamma v_{t+1} + g_t)

    RMSProp:   v_0 = 1, m_0 = 0
               v_{t+1} = \rho v_t + (1 - \rho) g_t^2
               m_{t+1} = \gamma m_t + \frac{\eta_t}{\sqrt{v_{t+1} + \epsilon}} g_t
               \theta_{t+1} = \theta_t - m_{t+1}

    Adam:      m_0 = 0, v_0 = 0
               m_{t+1} = \beta_1 m_t + (1 - \beta_1) g_t
               v_{t+1} = \beta_2 v_t + (1 - \beta_2) g_t^2
               b_{t+1} = \frac{\sqrt{1 - \beta_2^{t+1}}}{1 - \beta_1^{t+1}}
               \theta_{t+1} = \theta_t - \alpha_t \frac{m_{t+1}}{\sqrt{v_{t+1}} + \epsilon} b_{t+1}

    NAdam:     m, v and b as Adam
               \theta_{t+1} = \theta_t - \alpha_t
                   \frac{\beta_1 m_{t+1} + (1 - \beta_1) g_t}{\sqrt{v_{t+1}} + \epsilon} b_{t+1}

All operations are elementwise. In the code ``\gamma`` is ``momentum``, ``\rho`` is ``rho``,
``\beta_1``/``\beta_2`` are ``beta1``/``beta2`` and ``\epsilon`` is ``eps``; the optimizer state
of a parameter keeps the playbook's names (``v``, ``m``, and ``step`` = ``t`` for Adam/NAdam).

Weight decay: every optimizer takes ``weight_decay`` = ``\lambda`` (default 0), *coupled* L2
regularisation: ``g_t = \nabla l(\theta_t) + \lambda \theta_t`` is used for ``\nabla l(\theta_t)``
everywhere in the equations above, exactly as if ``(\lambda / 2) ||\theta||^2`` were added to the
loss (the meaning of ``weight_decay`` in ``torch.optim.SGD``/``RMSprop``/``Adam``). For RMSProp,
Adam and NAdam the decay term is therefore rescaled by the preconditioner; this is not AdamW's
decoupled decay.

Comparison with PyTorch's built-ins (see the class docstrings and the tests):

* :class:`SGD`, :class:`Momentum` and :class:`Nesterov` coincide with ``torch.optim.SGD`` (with
  ``momentum=gamma``, ``dampening=0``, and ``nesterov=True`` for Nesterov), including with a
  changing learning rate: both keep ``\eta_t`` outside the velocity.
* :class:`RMSProp` differs from ``torch.optim.RMSprop`` in three places: ``v_0 = 1`` (torch: 0),
  ``\epsilon`` inside the square root (torch: added to it), and ``\eta_t`` inside the momentum
  buffer (torch multiplies the buffer by the current rate). They differ from the first step.
* :class:`Adam` equals ``torch.optim.Adam`` when ``eps = 0``; otherwise torch divides by
  ``\sqrt{v_{t+1}} + \epsilon\sqrt{1 - \beta_2^{t+1}}``, i.e. its effective epsilon is smaller
  early in training.
* :class:`NAdam` has no counterpart: ``torch.optim.NAdam`` uses Dozat's momentum-decay schedule
  ``\mu_t`` and different bias corrections for the two numerator terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, overload

# A lone ``import torch``: ruff's isort counts ``torch`` as first-party while a tests/torch/ folder
# exists (and ``torch.*`` as third-party); a lone import sorts the same either way.
import torch

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT

__all__ = [
    "SGD",
    "Adam",
    "Momentum",
    "NAdam",
    "Nesterov",
    "RMSProp",
    "make_optimizer",
    "set_lr",
]


# --- hyperparameter checks ----------------------------------------------------------------------


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _non_negative(name: str, value: Any) -> float:
    if _real(name, value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def _unit(name: str, value: Any) -> float:
    """A decay or momentum coefficient in [0, 1)."""
    if not 0 <= _real(name, value) < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def _learning_rate(name: str, value: Any) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return _non_negative(name, value)


# --- the common machinery -----------------------------------------------------------------------


class _PlaybookOptimizer(torch.optim.Optimizer):
    """Shared step loop: closure, coupled weight decay, per-parameter update."""

    # (hyperparameter, check) for every group; "lr" and "weight_decay" are always present.
    _checks: tuple[tuple[str, Callable[[str, Any], float]], ...] = ()

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _check_group(self, group: Mapping[str, Any]) -> None:
        _learning_rate("lr", group["lr"])
        _non_negative("weight_decay", group["weight_decay"])
        for name, check in self._checks:
            check(name, group[name])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group; its hyperparameters (with the defaults filled in) are checked."""
        self._check_group({**self.defaults, **param_group})
        super().add_param_group(param_group)

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one update of every parameter that has a gradient.

        ``closure``, if given, re-evaluates the model (with gradients enabled), calls
        ``backward`` and returns the loss, which ``step`` returns.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = float(group["lr"])
            weight_decay = float(group["weight_decay"])
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                if param.is_complex():
                    raise RuntimeError(f"{type(self).__name__} does not support complex parameters")
                if weight_decay != 0:
                    grad = grad.add(param, alpha=weight_decay)
                self._update(param, grad, self.state[param], group, lr)
        return loss

    def _update(self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any],
                group: dict[str, Any], lr: float) -> None:
        raise NotImplementedError


# --- the optimizers -----------------------------------------------------------------------------


class SGD(_PlaybookOptimizer):
    r"""Stochastic gradient descent: ``\theta_{t+1} = \theta_t - \eta_t g_t``.

    Identical to ``torch.optim.SGD(params, lr, weight_decay=weight_decay)``. ``lr`` and
    ``weight_decay`` (coupled L2, see the module docstring) must be >= 0.
    """

    def __init__(self, params: ParamsT, lr: float, *, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    def _update(self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any],
                group: dict[str, Any], lr: float) -> None:
        param.add_(grad, alpha=-lr)


class Momentum(_PlaybookOptimizer):
    r"""Heavy-ball momentum as in the playbook.

    ::

        v_0 = 0
        v_{t+1} = \gamma v_t + g_t
        \theta_{t+1} = \theta_t - \eta_t v_{t+1}

    ``momentum`` is ``\gamma`` in [0, 1). Since ``\eta_t`` multiplies the velocity rather than
    entering it, this is exactly ``torch.optim.SGD(params, lr, momentum=gamma)`` (dampening 0),
    also when the learning rate changes: torch's buffer ``b = \gamma b + g`` starts at ``g``,
    which is ``\gamma v_0 + g`` with ``v_0 = 0``. (The other common form,
    ``v_{t+1} = \gamma v_t - \eta_t g_t``, ``\theta_{t+1} = \theta_t + v_{t+1}``, would differ
    from this one whenever the learning rate changes.) State: ``v``.
    """

    _checks = (("momentum", _unit),)

    def __init__(self, params: ParamsT, lr: float, momentum: float = 0.9, *,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def _update(self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any],
                group: dict[str, Any], lr: float) -> None:
        if "v" not in state:
            state["v"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        v = state["v"]
        v.mul_(group["momentum"]).add_(grad)
        param.add_(v, alpha=-lr)


class Nesterov(Momentum):
    r"""Nesterov momentum as in the playbook.

    ::

        v_0 = 0
        v_{t+1} = \gamma v_t + g_t
        \theta_{t+1} = \theta_t - \eta_t (\gamma v_{t+1} + g_t)

    ``momentum`` is ``\gamma`` in [0, 1). This is exactly
    ``torch.optim.SGD(params, lr, momentum=gamma, nesterov=True)``, also with a changing learning
    rate. State: ``v``.
    """

    def _update(self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any],
                group: dict[str, Any], lr: float) -> None:
        if "v" not in state:
            state["v"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        gamma = group["momentum"]
        v = state["v"]
        v.mul_(gamma).add_(grad)
        param.add_(grad.add(v, alpha=gamma), alpha=-lr)


class RMSProp(_PlaybookOptimizer):
    r"""RMSProp as in the playbook.

    ::

        v_0 = 1, m_0 = 0
        v_{t+1} = \rho v_t + (1 - \rho) g_t^2
        m_{t+1} = \gamma m_t + \frac{\eta_t}{\sqrt{v_{t+1} + \epsilon}} g_t
        \theta_{t+1} = \theta_t - m_{t+1}

    ``rho`` (``\rho``) and ``momentum`` (``\gamma``) are in [0, 1); ``eps`` >= 0 sits *inside*
    the square root. State: ``v``, ``m``.

    Differs from ``torch.optim.RMSprop(lr, alpha=rho, eps=eps, momentum=gamma)``, which starts
    ``v`` at 0, divides by ``\sqrt{v_{t+1}} + \epsilon`` and keeps ``\eta_t`` outside its
    buffer (``b_{t+1} = \gamma b_t + g_t / (\sqrt{v_{t+1}} + \epsilon)``,
    ``\theta_{t+1} = \theta_t - \eta_t b_{t+1}``). The first step shows it most: here
    ``\eta g / \sqrt{\rho + (1 - \rho) g^2 + \epsilon}`` (about ``\eta g`` for small ``g``), there
    ``\eta g / (\sqrt{1 - \rho} |g| + \epsilon)`` (about ``\eta \, sign(g) / \sqrt{1 - \rho}``).
    Because ``\eta_t`` is inside ``m``, a change of learning rate takes effect gradually.
    """

    _checks = (("rho", _unit), ("momentum", _unit), ("eps", _non_negative))

    def __init__(self, params: ParamsT, lr: float, rho: float = 0.9, momentum: float = 0.0,
                 eps: float = 1e-8, *, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "momentum": momentum, "eps": eps,
                                  "weight_decay": weight_decay})

    def _update(self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any],
                group: dict[str, Any], lr: float) -> None:
        if "v" not in state:
            state["v"] = torch.ones_like(param, memory_format=torch.preserve_format)
            state["m"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        rho, gamma = group["rho"], group["momentum"]
        v, m = state["v"], state["m"]
        v.mul_(rho).addcmul_(grad, grad, value=1 - rho)
        m.mul_(gamma).addcdiv_(grad, v.add(group["eps"]).sqrt_(), value=lr)
        param.sub_(m)


class _AdamFamily(_PlaybookOptimizer):
    """Adam and NAdam: moments, step count and the bias correction ``b_{t+1}``."""

    _checks = (("beta1", _unit), ("beta2", _unit), ("eps", _non_negative))

    def __init__(self, params: ParamsT, lr: float, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, *, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps,
                                  "weight_decay": weight_decay})

    def _update(self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any],
                group: dict[str, Any], lr: float) -> None:
        if "step" not in state:
            state["step"] = 0
            state["m"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["v"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        beta1, beta2 = group["beta1"], group["beta2"]
        m, v = state["m"], state["v"]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        state["step"] += 1
        t1 = state["step"]  # t + 1
        b = math.sqrt(1 - beta2**t1) / (1 - beta1**t1)
        denominator = v.sqrt().add_(group["eps"])
        param.addcdiv_(self._numerator(m, grad, beta1), denominator, value=-lr * b)

    def _numerator(self, m: torch.Tensor, grad: torch.Tensor, beta1: float) -> torch.Tensor:
        raise NotImplementedError


class Adam(_AdamFamily):
    r"""Adam as in the playbook.

    ::

        m_0 = 0, v_0 = 0
        m_{t+1} = \beta_1 m_t + (1 - \beta_1) g_t
        v_{t+1} = \beta_2 v_t + (1 - \beta_2) g_t^2
        b_{t+1} = \sqrt{1 - \beta_2^{t+1}} / (1 - \beta_1^{t+1})
        \theta_{t+1} = \theta_t - \alpha_t \frac{m_{t+1}}{\sqrt{v_{t+1}} + \epsilon} b_{t+1}

    ``lr`` is ``\alpha_t``; ``beta1``, ``beta2`` in [0, 1); ``eps`` >= 0, *outside* the square
    root and *not* bias-corrected. State: ``step`` (= ``t``, updates done), ``m``, ``v``.

    ``torch.optim.Adam`` divides by ``\sqrt{v_{t+1} / (1 - \beta_2^{t+1})} + \epsilon`` instead,
    i.e. by ``\sqrt{v_{t+1}} + \epsilon \sqrt{1 - \beta_2^{t+1}}`` after factoring out ``b``: the
    two are equal when ``eps == 0`` and differ early in training otherwise (torch's effective
    epsilon is ``\sqrt{1 - \beta_2}`` times smaller on the first step).
    """

    def _numerator(self, m: torch.Tensor, grad: torch.Tensor, beta1: float) -> torch.Tensor:
        return m


class NAdam(_AdamFamily):
    r"""NAdam as in the playbook (no momentum-decay schedule).

    ::

        m, v, b as in Adam
        \theta_{t+1} = \theta_t - \alpha_t
            \frac{\beta_1 m_{t+1} + (1 - \beta_1) g_t}{\sqrt{v_{t+1}} + \epsilon} b_{t+1}

    Hyperparameters and state as :class:`Adam`. As written, the one correction ``b_{t+1}``
    multiplies both numerator terms, so the first update is
    ``\alpha (1 + \beta_1) \sqrt{1 - \beta_2} g / (\sqrt{1 - \beta_2} |g| + \epsilon)``, about
    ``1.9 \alpha \, sign(g)`` for ``\beta_1 = 0.9`` (Adam's is about ``\alpha \, sign(g)``;
    Dozat's NAdam, which corrects the ``g_t`` term by ``1 - \beta_1^t`` instead, about
    ``1.47 \alpha \, sign(g)``). The corrections tend to 1, and the variants agree, as ``t``
    grows.

    ``torch.optim.NAdam`` is a different algorithm:
    it replaces ``\beta_1`` in the numerator by Dozat's schedule
    ``\mu_t = \beta_1 (1 - 0.5 \cdot 0.96^{0.004 t})`` (``momentum_decay``; even with
    ``momentum_decay=0`` it is ``\beta_1 / 2``, not ``\beta_1``), bias-corrects the two numerator
    terms with different products of ``\mu``, and puts ``\epsilon`` as in its Adam.
    """

    def _numerator(self, m: torch.Tensor, grad: torch.Tensor, beta1: float) -> torch.Tensor:
        return m.mul(beta1).add_(grad, alpha=1 - beta1)


# --- helpers ------------------------------------------------------------------------------------


def set_lr(optimizer: torch.optim.Optimizer, value: float) -> None:
    """Set the learning rate of every parameter group of ``optimizer`` to ``value``.

    Call it before each step with a schedule: ``set_lr(opt, schedule(step)); opt.step()``.
    ``value`` must be finite and >= 0.
    """
    lr = _learning_rate("value", value)
    for group in optimizer.param_groups:
        group["lr"] = lr


_OPTIMIZERS: dict[str, tuple[Callable[..., torch.optim.Optimizer], float, dict[str, float]]] = {
    # name: (class, default learning rate, {hyperparameter name: default})
    "sgd": (SGD, 0.01, {}),
    "momentum": (Momentum, 0.01, {"momentum": 0.9}),
    "nesterov": (Nesterov, 0.01, {"momentum": 0.9}),
    "rmsprop": (RMSProp, 1e-3, {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-8}),
    "adam": (Adam, 1e-3, {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}),
    "nadam": (NAdam, 1e-3, {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}),
}

# hyperparameter name -> (constructor argument, check); coefficients also take "one_minus_" forms
_HPARAMS: dict[str, tuple[str, Callable[[str, Any], float]]] = {
    "momentum": ("momentum", _unit),
    "rho": ("rho", _unit),
    "beta1": ("beta1", _unit),
    "beta2": ("beta2", _unit),
    "epsilon": ("eps", _non_negative),
}


def _coefficient(hparams: Mapping[str, Any], name: str, default: float) -> float:
    """``hparams[name]``, or ``1 - hparams["one_minus_" + name]``, or ``default``; checked."""
    check = _HPARAMS[name][1]
    alias = f"one_minus_{name}"
    if check is not _unit or alias not in hparams:
        return check(name, hparams.get(name, default))
    if name in hparams:
        raise ValueError(f"give {name} or {alias}, not both, got {name}={hparams[name]!r} and "
                         f"{alias}={hparams[alias]!r}")
    one_minus = _real(alias, hparams[alias])
    if not 0 < one_minus <= 1:
        raise ValueError(f"{alias} must be in (0, 1], got {hparams[alias]!r}")
    return 1 - one_minus


def make_optimizer(name: str, params: ParamsT, hparams: Mapping[str, Any]
                   ) -> torch.optim.Optimizer:
    """Build the optimizer ``name`` from hyperparameter names.

    ``name`` (case-insensitive) is one of ``sgd``, ``momentum``, ``nesterov``, ``rmsprop``,
    ``adam``, ``nadam``. Hyperparameters read from ``hparams`` (others are ignored, so one dict
    can serve several optimizers); the playbook's symbol and the default follow each name:

    - ``learning_rate`` (eta, alpha): all; 0.01 for sgd, momentum and nesterov, 1e-3 otherwise.
      It is the initial rate: with a schedule, call :func:`set_lr` before each step.
    - ``momentum`` (gamma): momentum, nesterov [0.9]; rmsprop [0.0].
    - ``rho`` (rho): rmsprop [0.9].
    - ``beta1``, ``beta2`` (beta_1, beta_2): adam, nadam [0.9, 0.999].
    - ``epsilon`` (epsilon): rmsprop, adam, nadam [1e-8].
    - ``weight_decay`` (lambda, coupled L2, see the module docstring): all [0.0].

    ``one_minus_momentum``, ``one_minus_rho``, ``one_minus_beta1`` and ``one_minus_beta2`` may be
    given instead of the coefficient (``1 - value`` is used; handy for log-scale search spaces);
    giving both forms is an error. An unknown ``name`` or an invalid value raises ``ValueError``
    naming the hyperparameter.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {name!r}")
    cls, default_lr, defaults = _OPTIMIZERS[key]
    kwargs: dict[str, float] = {
        "lr": _learning_rate("learning_rate", hparams.get("learning_rate", default_lr)),
        "weight_decay": _non_negative("weight_decay", hparams.get("weight_decay", 0.0)),
    }
    for hparam, default in defaults.items():
        kwargs[_HPARAMS[hparam][0]] = _coefficient(hparams, hparam, default)
    return cls(params, **kwargs)
