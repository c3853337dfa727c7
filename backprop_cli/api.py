"""The library: one function per job, with the same engine, checks and conventions as the
command line, which is a thin face over the same analyses. Values are Python numbers,
lists, numpy arrays or torch tensors; bad input raises a BackpropError subclass carrying the
one-line message (and, for ParseError, the column) the CLI prints; nothing prints."""

from __future__ import annotations

import contextvars
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .core.errors import BackpropError, InputError, LimitError
from .core.parse import DEFAULT_LIMITS, Limits, Program
from .results import (
    CheckResult,
    DiffResult,
    Epoch,
    ExplainResult,
    GradResult,
    HigherResult,
    TrainResult,
)


class BackpropWarning(UserWarning):
    """What the CLI prints as `warning: ...` (a value the expression does not use, ...),
    also kept in the result's `warnings`::

        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     r = bp.grad("x*x", x=1, q=2, torch=False)
        >>> caught[0].category.__name__, r.warnings
        ('BackpropWarning', ["a value was given for 'q', but the expression does not use it"])
    """


@contextmanager
def _errors() -> Iterator[None]:
    """The library's one boundary: a plain BackpropError (bad input that is not a parse
    error and not a refused budget, which raise their own kinds) becomes an InputError with
    the same message and hint."""
    try:
        yield
    except BackpropError as exc:
        if type(exc) is not BackpropError:
            raise
        raise InputError(exc.message, hint=exc.hint) from None


_QUIET = contextvars.ContextVar("backprop_quiet", default=False)


@contextmanager
def quiet() -> Iterator[None]:
    """No BackpropWarning is raised inside (the results still list their warnings): for a
    caller that shows them itself, as the command line does on stderr::

        >>> with bp.quiet():
        ...     r = bp.grad("x*x", x=1, q=2, torch=False)
        >>> len(r.warnings)
        1
    """
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def _warn(messages: list[Any]) -> None:
    if _QUIET.get():
        return
    for message in messages:
        text = message["message"] if isinstance(message, dict) else str(message)
        warnings.warn(text, BackpropWarning, stacklevel=4)


def _limits(allow_nonfinite: bool, max_length: int) -> Limits:
    return Limits(max_length=max_length, allow_nonfinite=allow_nonfinite)


def _program(expr: Any, limits: Limits, model: Any = None) -> Program:
    """A Program from program text, a model spec, a .bp path (str or os.PathLike) or a
    Program; text is only ever read by our parser."""
    return _load(expr, limits, model)[0]


def _load(expr: Any, limits: Limits, model: Any = None) -> tuple[Program, Any]:
    """The program and, for a model spec, its expansion (None otherwise)."""
    from .io import inputs

    options = model or inputs.ModelOptions()
    if isinstance(expr, Program):
        return expr, None
    if isinstance(expr, os.PathLike):
        return inputs.load_model(None, [], os.fspath(expr), limits, options)[0::2]
    if not isinstance(expr, str):
        raise InputError(f'the expression must be text, e.g. "(x+y)*z", not {type(expr).__name__}')
    if expr == "-":
        raise InputError("'-' reads stdin on the command line; pass the program's text")
    return inputs.load_model(expr, [], None, limits, options)[0::2]


def _model_point(
    expr: Any,
    limits: Limits,
    values: Mapping[str, Any] | None,
    named: Mapping[str, Any],
    allow_nonfinite: bool,
    spec: Mapping[str, Any],
) -> tuple[Program, dict[str, Any]]:
    """The program and the point; a model spec's parameters not given start from `init`,
    then from the model's initialisation (`seed`), said in a warning."""
    from .io import inputs

    init = spec.get("init")
    if spec.get("seed") is not None:
        _whole("seed", spec["seed"], 0, 2**63 - 1)
    if init is not None and not isinstance(init, (str, Mapping)):
        raise InputError(
            f"init must be a dict of name → value (or name=value text), not {_shown(init)}"
        )
    model = inputs.ModelOptions(
        loss=spec.get("loss"), form=spec.get("form"), seed=spec.get("seed"),
        init=init if isinstance(init, str) else None, fill=spec.get("fill", True),
    )  # fmt: skip
    program, expansion = _load(expr, limits, model)
    point = _point(values, named, allow_nonfinite)
    if expansion is None:
        if init is not None:
            raise InputError("init starts a model spec's parameters; the program is not a spec")
        return program, point
    if isinstance(init, Mapping):
        start = _point(init, {}, allow_nonfinite)
        unknown = [n for n in start if n not in expansion.params]
        if unknown:
            raise InputError(
                f"init names {', '.join(unknown)}, which the model does not have "
                f"(its parameters: {', '.join(expansion.params)})"
            )
        point = {**start, **point}
    return program, inputs.spec_point(program, expansion, point, model)


def expand(spec: str, /, *, loss: str | None = None, form: str = "named") -> str:
    """The program a model spec stands for, as `--show-program` prints it::

    >>> print(bp.expand("linear"))
    yhat = w*x
    C = (yhat - y)**2
    """
    from .core import specs

    with _errors():
        if not specs.is_spec(spec):
            raise InputError(f"{spec!r} is not a model spec (linear, affine, quadratic, "
                             "logistic, mlp:2-3-1, ...)")  # fmt: skip
        return str(specs.expand(spec, loss=loss, form=form).text).rstrip("\n")


def _shown(value: Any) -> str:
    """A value for an error message: its repr when short, else its type."""
    try:
        text = repr(value)
    except Exception:  # a repr that fails (an int past Python's digit limit) is not shown
        return type(value).__name__
    return text if len(text) <= 40 else type(value).__name__


def _torch_numbers(name: str, value: Any) -> np.ndarray:
    """A torch tensor as float64 numpy: real floats and integers only."""
    if value.is_complex():
        raise InputError(f"the value for {name} is complex; only real numbers are supported")
    if str(value.dtype) == "torch.bool":
        raise InputError(f"the value for {name} is a boolean tensor; give numbers")
    try:
        return np.asarray(value.detach().cpu().double().numpy())
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"the value for {name} cannot be read as numbers: {first}") from None


def _numbers(name: str, value: Any) -> np.ndarray:
    """A value as a float64 array, refusing what is not real numbers (strings, booleans,
    None, complex numbers, ragged lists, masked arrays); no copy when it already is one."""
    if type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach"):
        value = _torch_numbers(name, value)
    if isinstance(value, np.ma.MaskedArray):
        raise InputError(f"the value for {name} is a masked array; fill its masked elements first")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as exc:
        first = str(exc).split(". ")[0]
        raise InputError(
            f"the value for {name} is not a number or a rectangular array of numbers ({first})"
        ) from None
    if raw.dtype.kind == "c":
        raise InputError(f"the value for {name} is complex; only real numbers are supported")
    if raw.dtype.kind == "O" and raw.ndim:
        raise InputError(f"the value for {name} is not a rectangular array of numbers")
    if raw.dtype.kind == "O" and isinstance(value, int) and not isinstance(value, bool):
        raise InputError(f"the value for {name} is too large for float64")
    if raw.dtype.kind not in "iuf":
        raise InputError(f"the value for {name} must be a number or an array, not {_shown(value)}")
    try:
        return raw.astype(np.float64, copy=False)
    except OverflowError:
        raise InputError(f"the value for {name} is too large for float64") from None


def _value(name: str, value: Any, allow_nonfinite: bool) -> Any:
    """A float for a number, a read-only float64 array for anything array-like (a copy
    when the caller's array could change under us or would be made read-only)."""
    from .core import ops

    array = _numbers(name, value)
    if array.ndim > ops.MAX_DIMS:
        raise InputError(f"the value for {name} has {array.ndim} axes; at most {ops.MAX_DIMS}")
    if array.ndim and array.size == 0:
        raise InputError(f"the value for {name} is empty: an array needs at least one element")
    if array.size > DEFAULT_LIMITS.max_elements:
        raise LimitError(
            f"the value for {name} holds {array.size:,} elements, more than the "
            f"{DEFAULT_LIMITS.max_elements:,} one value may hold"
        )
    if not allow_nonfinite and not np.isfinite(array).all():
        raise InputError(
            f"the value for {name} holds nan or inf",
            hint="pass allow_nonfinite=True to give nan or inf as a value",
        )
    if array.ndim == 0:
        return float(array)
    if array.flags.writeable:
        array = array.copy()
        array.setflags(write=False)
    return array


def _point(
    values: Mapping[str, Any] | None, named: Mapping[str, Any], allow_nonfinite: bool
) -> dict[str, Any]:
    from .core.parse import check_variable_name
    from .core.shapes import MAX_TOTAL_ELEMENTS

    if values is not None and not isinstance(values, Mapping):
        raise InputError(
            f"the values must be a dict of name → value, not {type(values).__name__}",
            hint='e.g. bp.grad("x*y", {"x": 1, "y": 2})',
        )
    given = dict(values or {})
    for name in named:
        if name in given:
            raise InputError(f"{name} is given twice (in values and as a keyword)")
    given.update(named)
    point = {}
    held = 0
    for name, value in given.items():
        if not isinstance(name, str):
            raise InputError(f"a variable's name must be text, not {_shown(name)}")
        check_variable_name(name, f"value {name}=…")
        point[name] = _value(name, value, allow_nonfinite)
        held += int(np.size(point[name]))
        if held > MAX_TOTAL_ELEMENTS:  # each value is bounded; together they are too
            raise LimitError(
                f"the values hold {held:,} elements in all, more than {MAX_TOTAL_ELEMENTS:,}"
            )
    return point


def _seconds(what: str, value: Any) -> float:
    """A time budget in seconds, as the CLI's --symbolic-timeout takes it (0.1 to 3600)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{what} must be a number of seconds, not {_shown(value)}")
    if not 0.1 <= float(value) <= 3600:
        raise InputError(f"{what} must be between 0.1 and 3600 seconds, not {value!r}")
    return float(value)


def _whole(what: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{what} must be a whole number, not {_shown(value)}")
    if not low <= int(value) <= high:
        raise InputError(f"{what} must be between {low:,} and {high:,}, not {int(value):,}")
    return int(value)


def _wrt(wrt: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    if wrt is None:
        return None
    if isinstance(wrt, str):
        return [w.strip() for w in wrt.split(",") if w.strip()]
    return [str(w) for w in wrt]


def grad(
    expr: str | Program | os.PathLike[str],
    values: Mapping[str, Any] | None = None,
    /,
    *,
    wrt: str | list[str] | None = None,
    seed_grad: Any = None,
    order: int = 1,
    dtype: str = "float64",
    torch: bool = True,
    device: str = "cpu",
    symbolic: bool = True,
    simplify: bool = True,
    latex: bool = False,
    mathml: bool = False,
    symbolic_timeout: float = 5.0,
    expand: bool = False,
    allow_nonfinite: bool = False,
    max_length: int = DEFAULT_LIMITS.max_length,
    loss: str | None = None,
    form: str | None = None,
    seed: int | None = None,
    init: Mapping[str, Any] | str | None = None,
    **named: Any,
) -> GradResult:
    """The gradient of `expr` at a point, every node's value and gradient, the symbolic
    partials, and the checks (torch autograd, finite differences, SymPy): what
    `backprop grad` prints, as a GradResult.

    Values come as keywords (x=-2) or as a dict (for names like `order` that are also
    options here)::

        >>> r = bp.grad("(x+y)*z", x=-2, y=5, z=-4)
        >>> r.value, r.grads
        (-12.0, {'x': -4.0, 'y': -4.0, 'z': 3.0})
        >>> bp.grad("x*order", {"x": 2, "order": 3}, torch=False).grads["x"]
        3.0
    """
    from .analyses.gradient import Options, gradient_report

    limits = _limits(allow_nonfinite, max_length)
    with _errors():
        spec = {"loss": loss, "form": form, "seed": seed, "init": init}
        program, point = _model_point(expr, limits, values, named, allow_nonfinite, spec)
        if order not in (1, 2):
            raise InputError(f"order must be 1 or 2, not {order!r}")
        if dtype not in ("float64", "float32"):
            raise InputError(f"dtype must be float64 or float32, not {dtype!r}")
        if not torch and device != "cpu":
            raise InputError("device needs the torch check; drop torch=False")
        options = Options(
            wrt=_wrt(wrt), dtype=dtype, torch=torch, device=device, symbolic=symbolic,
            simplify=simplify, latex="mathml" if mathml else latex,
            symbolic_timeout=_seconds("symbolic_timeout", symbolic_timeout),
            seed_grad=_value("seed_grad", seed_grad, allow_nonfinite) if seed_grad is not None
            else None, order=order, expand=expand,
        )  # fmt: skip
        report = gradient_report(program, point, options)
    _warn(report["warnings"])
    return GradResult(report, program, point, options.seed_grad, symbolic)


def explain(
    expr: str | Program | os.PathLike[str],
    values: Mapping[str, Any] | None = None,
    /,
    *,
    wrt: str | list[str] | None = None,
    mode: str = "reverse",
    allow_nonfinite: bool = False,
    max_length: int = DEFAULT_LIMITS.max_length,
    loss: str | None = None,
    form: str | None = None,
    seed: int | None = None,
    init: Mapping[str, Any] | str | None = None,
    **named: Any,
) -> ExplainResult:
    """The chain rule step by step (`backprop explain`): every path from the output to each
    variable with its product of local derivatives, and the staged reverse sweep (or, with
    mode="forward", one tangent sweep per input). Shows as markdown or LaTeX::

        >>> e = bp.explain("q = x + y; f = q * z", x=-2, y=5, z=-4)
        >>> e.partials[0]["variable"], e.ok
        ('x', True)
    """
    from .analyses.explain import explain as run_explain
    from .analyses.point import check_point, resolve_wrt

    limits = _limits(allow_nonfinite, max_length)
    with _errors():
        if mode not in ("reverse", "forward"):
            raise InputError(f"mode must be reverse or forward, not {mode!r}")
        spec = {"loss": loss, "form": form, "seed": seed, "init": init}
        program, point = _model_point(expr, limits, values, named, allow_nonfinite, spec)
        graph = program.graph
        notes = [*program.warnings, *check_point(graph, point)]
        chosen = resolve_wrt(graph, _wrt(wrt))
        used = {k: point[k] for k in graph.variables}
        report = run_explain(graph, used, chosen, mode)
    result = ExplainResult(report, notes, graph, used)
    _warn(result.warnings)
    return result


def _higher(kind: str, expr: Any, values: Any, named: Any, **options: Any) -> HigherResult:
    from .analyses import higher

    allow_nonfinite = options.pop("allow_nonfinite")
    limits = _limits(allow_nonfinite, options.pop("max_length"))
    spec = {k: options.pop(k) for k in ("loss", "form", "seed", "init")}
    with _errors():
        program, point = _model_point(expr, limits, values, named, allow_nonfinite, spec)
        if not options["torch"] and options["device"] != "cpu":
            raise InputError("device needs the torch check; drop torch=False")
        build = higher.hessian_report if kind == "hessian" else higher.jacobian_report
        wrt = _wrt(options.pop("wrt"))
        options["symbolic_timeout"] = _seconds("symbolic_timeout", options["symbolic_timeout"])
        report = build(program.graph, point, wrt, **options)
    _warn([*program.warnings, *report["warnings"]])
    return HigherResult(report, kind)


def jacobian(
    expr: str | Program | os.PathLike[str],
    values: Mapping[str, Any] | None = None,
    /,
    *,
    wrt: str | list[str] | None = None,
    torch: bool = True,
    device: str = "cpu",
    symbolic: bool = True,
    symbolic_timeout: float = 5.0,
    allow_nonfinite: bool = False,
    max_length: int = DEFAULT_LIMITS.max_length,
    loss: str | None = None,
    form: str | None = None,
    seed: int | None = None,
    init: Mapping[str, Any] | str | None = None,
    **named: Any,
) -> HigherResult:
    """The Jacobian of an array output (`backprop jacobian`), checked like grad::

    >>> bp.jacobian("x*y", x=[1, 2], y=3).matrix
    array([[3., 0., 1.],
           [0., 3., 2.]])
    """
    return _higher(
        "jacobian", expr, values, named, wrt=wrt, torch=torch, device=device,
        symbolic=symbolic, symbolic_timeout=symbolic_timeout,
        allow_nonfinite=allow_nonfinite, max_length=max_length, loss=loss, form=form,
        seed=seed, init=init,
    )  # fmt: skip


def hessian(
    expr: str | Program | os.PathLike[str],
    values: Mapping[str, Any] | None = None,
    /,
    *,
    wrt: str | list[str] | None = None,
    torch: bool = True,
    device: str = "cpu",
    symbolic: bool = True,
    symbolic_timeout: float = 5.0,
    allow_nonfinite: bool = False,
    max_length: int = DEFAULT_LIMITS.max_length,
    loss: str | None = None,
    form: str | None = None,
    seed: int | None = None,
    init: Mapping[str, Any] | str | None = None,
    **named: Any,
) -> HigherResult:
    """The Hessian of a scalar output (`backprop hessian`), checked like grad::

    >>> bp.hessian("x**2*y", x=1, y=2).matrix
    array([[4., 2.],
           [2., 0.]])
    """
    return _higher(
        "hessian", expr, values, named, wrt=wrt, torch=torch, device=device,
        symbolic=symbolic, symbolic_timeout=symbolic_timeout,
        allow_nonfinite=allow_nonfinite, max_length=max_length, loss=loss, form=form,
        seed=seed, init=init,
    )  # fmt: skip


def check(
    expr: str | Program | os.PathLike[str],
    values: Mapping[str, Any] | None = None,
    /,
    *,
    samples: int = 100,
    seed: int = 0,
    range: tuple[float, float] = (-3.0, 3.0),
    points: Sequence[Mapping[str, Any]] | None = None,
    points_source: str = "points",
    wrt: str | list[str] | None = None,
    dtype: str = "float64",
    torch: bool = True,
    device: str = "cpu",
    symbolic: bool = True,
    symbolic_timeout: float = 20.0,
    allow_nonfinite: bool = False,
    max_length: int = DEFAULT_LIMITS.max_length,
    loss: str | None = None,
    form: str | None = None,
    init: Mapping[str, Any] | str | None = None,
    **named: Any,
) -> CheckResult:
    """The gradient compared with torch, finite differences and SymPy at `samples` random
    points drawn uniformly from `range` (or at the given `points`, whose origin the report
    names as `points_source`), as `backprop check`; keyword values fix variables::

        >>> bp.check("sigmoid(w*x)", samples=20, w=2).ok
        True
    """
    from .analyses import check as sweep

    limits = _limits(allow_nonfinite, max_length)
    with _errors():
        spec = {"loss": loss, "form": form, "init": init, "fill": False}
        program, fixed = _model_point(expr, limits, values, named, allow_nonfinite, spec)
        if not torch and device != "cpu":
            raise InputError("device needs the torch check; drop torch=False")
        try:
            low, high = (float(v) for v in range)
        except (TypeError, ValueError):
            raise InputError(
                f"range must be two numbers (low, high), not {_shown(range)}"
            ) from None
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise InputError(f"range must be two finite numbers, low < high, not {range!r}")
        samples = _whole("samples", samples, 1, 1_000_000)
        seed = _whole("seed", seed, 0, 2**63 - 1)
        settings = sweep.Settings(
            samples=samples, seed=int(seed), low=low, high=high, wrt=_wrt(wrt), dtype=dtype,
            torch=torch, device=device, symbolic=symbolic,
            symbolic_timeout=_seconds("symbolic_timeout", symbolic_timeout),
        )  # fmt: skip
        if points is not None and (isinstance(points, (str, bytes, Mapping)) or not all(
            isinstance(p, Mapping) for p in points
        )):  # fmt: skip
            raise InputError("points must be a list of dicts of name → value, e.g. [{'x': 1}]")
        if isinstance(points, sweep.GivenPoints):  # read and checked already (check --points)
            settings.given, settings.source = points, points_source
        elif points is not None:
            found = [
                {str(k): float(_value(str(k), v, allow_nonfinite)) for k, v in p.items()}
                for p in points
            ]
            settings.given, settings.source = sweep.GivenPoints(found, []), points_source
        report = sweep.check(program, fixed, settings)
    _warn(report["warnings"])
    return CheckResult(report)


CODEGEN_POINTS = 20  # random points a check of generated code runs at


def codegen(
    expr: str | Program | os.PathLike[str],
    /,
    *,
    target: str = "python",
    wrt: str | list[str] | None = None,
    name: str | None = None,
    forward_mode: bool = False,
    hessian: bool = False,
    check: bool = False,
    values: Mapping[str, Any] | None = None,
    max_length: int = DEFAULT_LIMITS.max_length,
) -> str:
    """The backward pass as source code (`backprop codegen`): one function, `f_and_grad` by
    default, whose parameters are the variables in order of first appearance and which
    returns `(value, (d_v1, d_v2, …))`. Targets: python (math), numpy, torch, jax, c.
    `forward_mode=True` gives the tangent version `f_and_tangent(*variables, *tangents)`,
    `hessian=True` forward over reverse, `f_grad_and_hessian` (scalar programs).
    `check=True` runs the code at random points (around `values`, which array variables
    need for their shapes) and raises unless it agrees with the engine::

        >>> print(bp.codegen("(x+y)*z").splitlines()[-1])
            return f, (d_x, d_y, d_z)
    """
    with _errors():
        program = _program(expr, _limits(False, max_length))
        source, built = generate(program, target, _wrt(wrt), name, forward_mode, hessian)
        if check:
            agreement = check_generated(program, source, built, target, dict(values or {}))
            if not agreement.ok:
                raise BackpropError(_disagreement(target, agreement))
    return source


def generate(
    program: Program,
    target: str,
    wrt: list[str] | None,
    name: str | None,
    forward_mode: bool,
    hessian: bool,
) -> tuple[str, Any]:
    """The source for `target` and the code as data (what `--check` runs and compares)."""
    from .analyses import codegen as cg
    from .render import code as printers

    if target not in printers.TARGETS:
        raise InputError(
            f"unknown target {target!r}", hint=f"targets: {', '.join(printers.TARGETS)}"
        )
    if forward_mode and hessian:
        raise InputError("forward mode and the Hessian are two different codes: pick one")
    graph = program.graph
    if target in ("python", "c") and cg.is_array_program(graph):
        at = cg.first_array_node(graph)
        where = (
            ""
            if at is None
            else f" ({graph.text(at, 40)!r} at column {graph.nodes[at].span[0] + 1})"
        )
        raise InputError(
            f"the {target} target works on numbers; this program uses arrays{where}",
            hint="use --target numpy, torch or jax",
        )
    reserved = printers.reserved(target)
    if name is not None:
        _check_function_name(name, reserved, list(graph.variables))
    mode = "hessian" if hessian else "forward" if forward_mode else "reverse"
    built = cg.build(graph, mode=mode, wrt=wrt, fn_name=name, reserved=reserved)
    return printers.source(built, target), built


def _check_function_name(name: str, reserved: set[str], variables: list[str]) -> None:
    import keyword
    import re

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name, re.ASCII):
        raise InputError(
            f"the function name {name!r} is not an identifier (ASCII letters, digits, '_')"
        )
    if keyword.iskeyword(name) or name in reserved or name in variables:
        raise InputError(
            f"the function name {name!r} is taken (a keyword, a library or a variable)"
        )


def check_generated(
    program: Program, source: str, built: Any, target: str, values: Mapping[str, Any]
) -> Any:
    """Run generated code at the given point and random ones; compare with the engine."""
    from .analyses.codegen import is_array_program
    from .checks import generated

    graph = program.graph
    arrays_in_program = is_array_program(graph)
    given = {k: _numbers(k, v) for k, v in values.items() if k in graph.variables}
    missing = [v for v in graph.variables if v not in given]
    if missing and arrays_in_program:
        raise InputError(
            f"--check needs a value for {', '.join(missing)}: an array program's variables "
            "take their shapes from the values",
            hint="give them, e.g. W=[[1,2],[3,4]] x=[1,-1]",
        )
    if not arrays_in_program:
        arrays = [k for k, v in given.items() if v.ndim]
        if arrays and target in ("python", "c"):
            raise InputError(
                f"the {target} target works on numbers: give a number for {', '.join(arrays)}",
                hint="or check the numpy, torch or jax code, which takes arrays of points",
            )
        try:  # elementwise: the code gives a gradient per point, so compare point by point
            common = np.broadcast_shapes(*(v.shape for v in given.values()))
        except ValueError:
            raise InputError("the values do not broadcast together") from None
        given = {k: np.broadcast_to(v, common) for k, v in given.items()}
    points = generated.random_points(graph, given, CODEGEN_POINTS)
    chosen = _wrt_names(built)
    wrt = [v for v in built.variables if v in chosen]
    with generated.workdir() as folder:
        function = generated.load(source, target, built.name, folder)
        return generated.compare(
            function, target, graph, points, mode=built.mode, variables=built.variables, wrt=wrt
        )


def _wrt_names(built: Any) -> set[str]:
    """The user's names of the variables the code differentiates."""
    names = dict(zip(built.params, built.variables, strict=True))
    return {names[w] for w in built.wrt}


def _disagreement(target: str, agreement: Any) -> str:
    first = agreement.failures[0] if agreement.failures else "no point had finite numbers"
    return f"the generated {target} code disagrees with the engine: {first}"


def diff(
    expr: str | Program | os.PathLike[str],
    /,
    *,
    wrt: str | list[str] | None = None,
    order: int = 1,
    simplify: bool = True,
    steps: bool = False,
    timeout: float = 5.0,
    max_length: int = DEFAULT_LIMITS.max_length,
) -> DiffResult:
    """The symbolic derivative, no point needed (`backprop diff`), simplified within the time
    budget and checked against the engine at random points::

        >>> print(bp.diff("x**2*sin(x)"))
        x**2*cos(x) + 2*x*sin(x)
    """
    from .analyses.diff import differentiate

    with _errors():
        program = _program(expr, _limits(False, max_length))
        report = differentiate(
            program, wrt=_wrt(wrt), order=_whole("order", order, 1, 2), simplify=simplify,
            timeout=_seconds("timeout", timeout),
            steps=steps,
        )  # fmt: skip
    _warn(report.get("warnings", []))
    return DiffResult(report)


HISTORY_ELEMENTS = 10_000_000  # parameter values TrainResult.history keeps in all


def train(
    model: Any = "linear",
    *,
    data: Any = None,
    x: Any = None,
    y: Any = None,
    target: str = "y",
    epochs: int = 100,
    lr: float = 0.01,
    optimizer: str = "sgd",
    batch_size: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    dtype: str = "float32",
    engine: str = "graph",
    device: str = "cpu",
    check: bool = False,
    loss: str | None = None,
    hidden: int | None = None,
    form: str | None = None,
    init: Mapping[str, Any] | str | None = None,
    log_every: int = 1,
    verbose: bool = False,
    max_params: int = 1_000_000,
    max_step_elements: int = 20_000_000,
    on_event: Any = None,
    history: bool = True,
) -> TrainResult:
    """Train a model step by step (`backprop train`): a built-in name (linear, affine,
    quadratic, logistic, mlp), a model spec (mlp:2-3-1) or a model expression, on the
    course's data (y = 2x) by default, `x=`/`y=` lists, a dict of columns, or a CSV path in
    `data`. `on_event(kind, info)` is called as training goes ("epoch" with the epoch, its
    loss and parameters; "grad" with each batch's gradients when `verbose`; "tick" after each
    epoch), as the CLI prints its lines::

        >>> t = bp.train("linear", epochs=100)
        >>> round(t.params["w"], 3), len(t.history)
        (2.0, 100)
    """
    from .analyses import models
    from .analyses import train as training
    from .analyses.optim import OPTIMIZERS
    from .io import inputs
    from .io.data import Dataset, load

    with _errors():
        if not isinstance(model, (str, models.Model)):
            raise InputError(
                f"model must be text (a name, a spec or an expression), not {_shown(model)}"
            )
        epochs = _whole("epochs", epochs, 0, 100_000_000)
        log_every = _whole("log_every", log_every, 1, 100_000_000)
        seed = _whole("seed", seed, 0, 2**63 - 1)
        max_params = _whole("max_params", max_params, 1, 2**62)
        max_step_elements = _whole("max_step_elements", max_step_elements, 1, 2**62)
        if batch_size is not None:
            batch_size = _whole("batch_size", batch_size, 0, 2**62)
        if hidden is not None:
            hidden = _whole("hidden", hidden, 1, 10_000)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 <= lr < math.inf:
            raise InputError(f"lr must be a finite number of at least 0, not {_shown(lr)}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("dtype", ("float32", "float64")),
                              ("engine", ("graph", "torch"))):  # fmt: skip
            if locals()[name] not in allowed:
                raise InputError(
                    f"{name} must be one of {', '.join(allowed)}, not {_shown(locals()[name])}"
                )
        if data is not None and (x is not None or y is not None):
            raise InputError("give data or x and y, not both")
        dataset = data if isinstance(data, Dataset) else _dataset(data, x, y, target, load)
        notes = []
        if isinstance(model, models.Model):  # built (and initialised) by the caller
            built = model
        else:
            built = models.build(
                model, dataset, loss=loss, hidden=hidden or 3, seed=seed,
                max_params=max_params, form=form,
            )  # fmt: skip
            if init is not None:
                built = _with_init(built, init, inputs)
                models.check_size(built, max_params)
            if hidden is not None and model != "mlp":
                notes.append("hidden does nothing here: it is for the mlp model")
        settings = training.Settings(
            epochs=epochs, lr=float(lr), optimizer=optimizer,
            batch_size=batch_size if batch_size is not None else (1 if model == "linear" else 0),
            shuffle=shuffle, seed=seed, dtype=dtype, engine=engine, device=device,
            check=check, log_every=log_every, verbose=verbose,
            max_step_elements=max_step_elements,
        )  # fmt: skip
        kept: list[Epoch] = []
        room = [HISTORY_ELEMENTS if history else 0]

        def record(kind: str, info: dict[str, Any]) -> None:
            if kind == "epoch" and history:
                size = sum(int(np.size(v)) for v in info["params"].values())
                params = None
                if size <= room[0]:  # the parameters of the first epochs that fit
                    room[0] -= size
                    params = {k: training.plain(v) for k, v in info["params"].items()}
                kept.append(Epoch(info["epoch"], float(info["loss"]), params))
            if on_event is not None:
                on_event(kind, info)

        result = training.run(built, dataset, settings, record)
    if history and any(e.params is None for e in kept):
        notes.append(
            f"history keeps the parameters of its first epochs only ({HISTORY_ELEMENTS:,} "
            "values in all); later epochs have their loss"
        )
    result.warnings[:0] = notes
    _warn(result.warnings)
    return TrainResult(built, result, settings, kept, len(dataset), _predict_columns)


def _predict_columns(model: Any, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """TrainResult.predict's inputs, checked as values are: the model's inputs, numbers."""
    with _errors():
        wanted, given = list(model.features), sorted(inputs)
        if sorted(wanted) != given:
            raise InputError(
                f"predict takes the model's inputs {', '.join(wanted)}, "
                f"not {', '.join(given) or 'nothing'}"
            )
        return {
            k: np.atleast_1d(np.asarray(_value(k, v, False), dtype=np.float64))
            for k, v in inputs.items()
        }


def _dataset(data: Any, x: Any, y: Any, target: str, load: Any) -> Any:
    from .io.data import Dataset

    if data is None and x is None and y is None:
        return load(None, None, None, target)[0]
    if data is None:
        if x is None or y is None:
            raise InputError("give both x and y, or neither (the PyTorch course's data)")
        data = {"x": x, target: y}
    if isinstance(data, (str, os.PathLike)):
        return load(None, None, os.fspath(data), target)[0]
    if not isinstance(data, Mapping):
        raise InputError(
            "data must be a CSV path or a dict of columns, e.g. {'x': [...], 'y': [...]}"
        )
    if target not in data:
        raise InputError(
            f"data has no target column {target!r} (its columns: {', '.join(map(str, data))})"
        )
    columns = {}
    for name, column in data.items():
        array = np.atleast_1d(_value(str(name), column, False))
        if array.ndim != 1:
            raise InputError(f"the data column {name!r} must be one list of numbers")
        columns[str(name)] = np.array(array)
    lengths = {len(c) for c in columns.values()}
    if len(lengths) != 1:
        raise InputError("the data columns have different lengths")
    features = {k: v for k, v in columns.items() if k != target}
    if not features:
        raise InputError(f"data has only the target column {target!r}: no inputs")
    return Dataset(features, target, columns[target])


def _with_init(built: Any, init: Mapping[str, Any] | str, inputs: Any) -> Any:
    import dataclasses

    if isinstance(init, str):
        return inputs.with_init(built, init)
    given = {str(k): _value(str(k), v, False) for k, v in init.items()}
    unknown = [name for name in given if name not in built.params]
    if unknown:
        raise InputError(
            f"init names {', '.join(unknown)}, which the model does not have "
            f"(its parameters: {', '.join(built.params)})"
        )
    merged = dataclasses.replace(built, init={**built.init, **given})
    inputs._check_init_shapes(merged, built.init, given)
    return merged


MAX_COMPILED_ELEMENTS = 200_000_000  # values and gradients one call may return (1.6 GB)
# Points per sweep of a compiled function: a chunk whose node values (about a million
# elements) stay in the processor's caches runs faster than one sweep over every point.
COMPILED_CHUNK_ELEMENTS = 1 << 20
COMPILED_CHUNK_ROWS = 65_536


class Compiled:
    """A compiled expression: call it with arrays (keywords, or positionally in the order of
    `variables`) and get `(value, grads)` for every point at once — numpy broadcasting over
    the leading axes, one forward and one reverse sweep per chunk of points. Each variable is
    a scalar per point unless `shapes` gives its shape (trailing axes). No checks run:
    this is the engine alone::

        >>> f = bp.compile("sum(W @ x)", shapes={"W": (2, 2), "x": (2,)})
        >>> value, grads = f(W=[[1, 2], [3, 4]], x=[1, -1])
        >>> value, grads["x"]
        (-2.0, array([4., 6.]))
    """

    def __init__(self, program: Program, shapes: Mapping[str, tuple[int, ...]]) -> None:
        from .core import shapes as shape_rules

        self.program = program
        graph = program.graph
        if not isinstance(shapes, Mapping):
            raise InputError("shapes must be a dict of name → shape, e.g. {'W': (2, 3)}")
        for name, shape in shapes.items():
            if not isinstance(shape, (tuple, list)) or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) and 1 <= d <= 10**9
                for d in shape
            ):  # fmt: skip
                raise InputError(
                    f"the shape of {name} must be a tuple of whole numbers ≥ 1, e.g. (2, 3), "
                    f"not {_shown(shape)}"
                )
        unknown = [n for n in shapes if n not in graph.variables]
        if unknown:
            raise InputError(
                f"shapes names {', '.join(unknown)}, which the expression does not use"
            )
        self.shapes = {n: tuple(int(d) for d in shapes.get(n, ())) for n in graph.variables}
        self.cores = shape_rules.infer(graph, self.shapes)
        if self.cores[graph.output]:
            raise InputError(
                f"the output has shape {shape_rules.show(self.cores[graph.output])}; compile "
                "needs a scalar output per point",
                hint="wrap it in sum(...) or pick one element",
            )
        self.variables = list(graph.variables)
        self._per_point = max(1, sum(max(1, shape_rules.size(c)) for c in self.cores))

    def __call__(self, *args: Any, **values: Any) -> tuple[Any, dict[str, Any]]:
        from .core import engine

        with _errors():
            if len(args) > len(self.variables):
                raise InputError(
                    f"{len(args)} positional values for {len(self.variables)} variables"
                )
            given = dict(zip(self.variables, args, strict=False))
            for name in values:
                if name in given:
                    raise InputError(f"{name} is given twice")
            given.update(values)
            missing = [n for n in self.variables if n not in given]
            unknown = [n for n in given if n not in self.shapes]
            if unknown:
                raise InputError(f"{', '.join(unknown)}: not a variable of the expression")
            if missing:
                raise InputError(
                    f"missing value{'s' if len(missing) > 1 else ''} for {', '.join(missing)}"
                )
            arrays = {n: _numbers(n, v) for n, v in given.items()}
            batch = self._batch(arrays)
            n = math.prod(batch)
            held = n * (1 + sum(math.prod(s) for s in self.shapes.values()))
            if held > MAX_COMPILED_ELEMENTS:  # the value and every gradient, for all points
                raise LimitError(
                    f"{n:,} points would hold {held:,} values and gradients, more than "
                    f"{MAX_COMPILED_ELEMENTS:,}",
                    hint="call the function on fewer points at a time",
                )
            flat = {
                name: np.broadcast_to(a, (*batch, *self.shapes[name])).reshape(
                    (n, *self.shapes[name])
                )
                for name, a in arrays.items()
            }
            value = np.empty(n)
            grads = {name: np.empty((n, *self.shapes[name])) for name in self.variables}
            rows = max(1, min(COMPILED_CHUNK_ROWS, COMPILED_CHUNK_ELEMENTS // self._per_point))
            graph = self.program.graph
            for start in range(0, n, rows):
                part = slice(start, min(n, start + rows))
                # A C-ordered input is read in place; a broadcast or strided one is copied,
                # so that the engine always sees the same memory layout.
                env = {
                    name: a[part] if a.flags.c_contiguous else np.array(a[part])
                    for name, a in flat.items()
                }
                m = part.stop - part.start
                with np.errstate(all="ignore"):
                    out = engine.evaluate(graph, env, np.float64, cores=self.cores)
                    g = engine.backward(graph, out, np.ones(m), cores=self.cores)
                value[part] = np.broadcast_to(out[graph.output], (m,))
                for name in self.variables:
                    got = g[graph.variables[name]]
                    grads[name][part] = (
                        0.0 if got is None else np.broadcast_to(got, (m, *self.shapes[name]))
                    )
        if not batch:  # one point: the value a float, each gradient its variable's shape
            return float(value[0]), {
                k: float(v[0]) if not self.shapes[k] else v[0] for k, v in grads.items()
            }
        return value.reshape(batch), {
            k: v.reshape((*batch, *self.shapes[k])) for k, v in grads.items()
        }

    def _batch(self, arrays: Mapping[str, np.ndarray]) -> tuple[int, ...]:
        leading = []
        for name, a in arrays.items():
            core = self.shapes[name]
            if a.shape[a.ndim - len(core) :] != core or a.ndim < len(core):
                raise InputError(f"{name} must end in the shape {core}, got {a.shape}")
            leading.append(a.shape[: a.ndim - len(core)])
        try:
            return tuple(np.broadcast_shapes(*leading))
        except ValueError:
            shown = ", ".join(f"{n} {s}" for n, s in zip(arrays, leading, strict=True))
            raise InputError(f"the values do not broadcast together: {shown}") from None

    def __repr__(self) -> str:
        return f"Compiled({self.program.graph.source!r}, variables={self.variables})"


def compile(
    expr: str | Program | os.PathLike[str],
    /,
    *,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    max_length: int = DEFAULT_LIMITS.max_length,
) -> Compiled:
    """Parse once, evaluate many: a function from arrays to `(value, grads)`::

    >>> f = bp.compile("1/(1+exp(-(w0*x0+w1*x1+w2)))")
    >>> value, grads = f(w0=2, x0=[-1, 0], w1=-3, x1=-2, w2=-3)
    >>> value.round(4), grads["w0"].round(4)
    (array([0.7311, 0.9526]), array([-0.1966,  0.    ]))
    """
    with _errors():
        program = _program(expr, _limits(False, max_length))
        return Compiled(program, shapes or {})
