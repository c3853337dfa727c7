"""What both trainers share: the settings of a run, torch.optim's update rules in the
engine's dtype, and the interface of one step (gradients of a batch, then an update)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import BackpropError

OPTIMIZERS = ("sgd", "momentum", "adam")
MOMENTUM = 0.9  # torch.optim.SGD(momentum=0.9), no dampening, not Nesterov
BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults
ADAM_EPS = 1e-8

# What one pass over a batch may hold, counted as shapes.cost counts it (every node's value,
# from the shapes alone): the backward pass holds as many gradients again, so 20,000,000
# elements are at most about 320 MB in float64 (160 MB in float32), plus the data.
MAX_STEP_ELEMENTS = 20_000_000
STEP_OPTION = "--max-step-elements"


@dataclass
class Settings:
    epochs: int = 100
    lr: float = 0.01
    optimizer: str = "sgd"
    batch_size: int = 1  # 0: the whole data set
    shuffle: bool = False
    seed: int = 0
    dtype: str = "float32"  # PyTorch's default dtype, and the course's
    engine: str = "graph"  # or "torch"
    device: str = "cpu"
    check: bool = False
    log_every: int = 1
    verbose: bool = False
    max_step_elements: int = MAX_STEP_ELEMENTS


class Optimizer:
    """The update rules of torch.optim (SGD, SGD with momentum, Adam), in the engine dtype."""

    def __init__(self, kind: str, lr: float, dtype: type[np.floating[Any]]) -> None:
        if kind not in OPTIMIZERS:
            raise BackpropError(f"unknown optimizer {kind!r} (choose {', '.join(OPTIMIZERS)})")
        self.kind, self.lr, self.dt = kind, dtype(lr), dtype
        self.rate = float(lr)  # torch's Adam divides the Python float, not the rounded one
        self.state: dict[str, dict[str, Any]] = {}
        self.t = 0

    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> dict[str, Any]:
        self.t += 1
        return {name: self._one(name, params[name], grads[name]) for name in params}

    def _one(self, name: str, p: Any, g: Any) -> Any:
        dt = self.dt
        if self.kind == "sgd":
            return p - self.lr * g
        state = self.state.setdefault(name, {})
        if self.kind == "momentum":
            buf = g if "buf" not in state else dt(MOMENTUM) * state["buf"] + g
            state["buf"] = buf
            return p - self.lr * buf
        # torch.optim.Adam's arithmetic, operation for operation (its single-tensor path):
        # the scalars (1 - beta, the bias corrections, the step size) are Python floats
        # rounded once to the dtype, and addcmul/addcdiv multiply from the left.
        m = state.get("m", dt(0))
        m = m + dt(1 - BETAS[0]) * (g - m)  # lerp toward g with weight 1 - beta1 (< 0.5)
        v = state.get("v", dt(0)) * dt(BETAS[1]) + dt(1 - BETAS[1]) * g * g  # addcmul
        state["m"], state["v"] = m, v
        bias1 = 1 - BETAS[0] ** self.t
        bias2_sqrt = math.sqrt(1 - BETAS[1] ** self.t)
        denom = np.sqrt(v) / dt(bias2_sqrt) + dt(ADAM_EPS)
        return p + dt(-(self.rate / bias1)) * m / denom  # addcdiv


class Stepper:
    def gradients(self, env: dict[str, Any], n: int) -> tuple[float, dict[str, Any]]:
        raise NotImplementedError

    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError
