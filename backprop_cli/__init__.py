"""backprop-cli: the backpropagation workbench, as a library and as the `backprop` command.

    >>> import backprop_cli as bp
    >>> r = bp.grad("(x+y)*z", x=-2, y=5, z=-4)
    >>> r.value, r.grads
    (-12.0, {'x': -4.0, 'y': -4.0, 'z': 3.0})

The public names are listed in `__all__` and documented in docs/api.md; they load on first
use, so `import backprop_cli` imports neither numpy, torch, SymPy, typer nor matplotlib.
Module paths below the package are internal and may move.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.errors import BackpropError, InputError, LimitError, ParseError

for _error in (BackpropError, InputError, LimitError, ParseError):
    _error.__module__ = __name__  # shown as backprop_cli.InputError, where users find it

__version__ = "0.1.0"

_API = ("grad", "diff", "explain", "jacobian", "hessian", "check", "train", "compile",
        "codegen", "expand", "quiet", "Compiled", "BackpropWarning")  # fmt: skip
_RESULTS = ("GradResult", "DiffResult", "ExplainResult", "HigherResult", "CheckResult",
            "TrainResult", "Node", "Partial", "Picture", "Epoch")  # fmt: skip

__all__ = [
    "BackpropError", "BackpropWarning", "CheckResult", "Compiled", "DiffResult", "Epoch",
    "ExplainResult", "GradResult", "HigherResult", "InputError", "LimitError", "Node",
    "ParseError", "Partial", "Picture", "TrainResult", "__version__", "check", "codegen", "compile",
    "diff", "expand", "explain", "grad", "hessian", "jacobian", "quiet", "train",
]  # fmt: skip

if TYPE_CHECKING:
    from . import dask as dask
    from .api import (
        BackpropWarning,
        Compiled,
        check,
        codegen,
        compile,
        diff,
        expand,
        explain,
        grad,
        hessian,
        jacobian,
        quiet,
        train,
    )
    from .results import (
        CheckResult,
        DiffResult,
        Epoch,
        ExplainResult,
        GradResult,
        HigherResult,
        Node,
        Partial,
        Picture,
        TrainResult,
    )


def __getattr__(name: str) -> Any:
    """The public functions and result classes, imported when first used."""
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _RESULTS:
        from . import results

        return getattr(results, name)
    if name == "dask":  # bp.dask.gradients; Dask itself loads when that is first called
        import importlib

        return importlib.import_module(".dask", __name__)
    raise AttributeError(f"module 'backprop_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, "dask"])
