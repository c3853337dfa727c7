"""`backprop train --engine torch`: the same training program, differentiated by torch
autograd and stepped by torch.optim on --device. The only module that trains with torch."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..checks import autograd
from ..core import engine
from .models import Model
from .optim import BETAS, MOMENTUM, Settings, Stepper


class TorchTrainer(Stepper):
    def __init__(self, model: Model, settings: Settings) -> None:
        import torch

        self.torch, self.model = torch, model
        self.dtype = settings.dtype
        self.dt = engine.DTYPES[settings.dtype]
        self.device = autograd.resolve_device(torch, settings.device, settings.dtype)
        tdtype = getattr(torch, settings.dtype)
        self.leaves = {
            name: torch.tensor(
                np.asarray(model.init[name], dtype=np.float64).astype(self.dt),
                dtype=tdtype,
                device=self.device,
                requires_grad=True,
            )
            for name in model.params
        }
        params = list(self.leaves.values())
        self.opt: Any
        if settings.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=settings.lr)
        elif settings.optimizer == "momentum":
            self.opt = torch.optim.SGD(params, lr=settings.lr, momentum=MOMENTUM)
        else:
            self.opt = torch.optim.Adam(params, lr=settings.lr, betas=BETAS)

    def gradients(self, env: dict[str, Any], n: int) -> tuple[float, dict[str, Any]]:
        torch = self.torch
        self.opt.zero_grad()
        data = {k: v for k, v in env.items() if k not in self.leaves}
        tensors = autograd.torch_graph(
            torch, self.model.graph, data, self.dtype, self.device, self.leaves, retain=False
        )
        loss = tensors[self.model.graph.output]
        mean = loss.mean() if loss.dim() else loss
        mean.backward()
        grads = {
            name: np.zeros(tuple(leaf.shape), dtype=self.dt)[()]
            if leaf.grad is None
            else leaf.grad.detach().cpu().numpy().astype(self.dt)[()]
            for name, leaf in self.leaves.items()
        }
        return float(mean.item()), grads

    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> dict[str, Any]:
        with self.torch.no_grad():
            self.opt.step()
        return {
            name: leaf.detach().cpu().numpy().astype(self.dt)[()]
            for name, leaf in self.leaves.items()
        }
