"""The `grad` pipeline: run the engine, the checks and SymPy over one graph at one point and
gather everything into one plain-data report, which is also the JSON schema.

Rendering lives elsewhere; this module never prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..checks import autograd, compare, finite
from ..checks.sandbox import Bounded, Deadline
from ..core import engine, shapes
from ..core.errors import BackpropError
from ..core.graph import Graph
from ..core.parse import Program
from .point import check_point, resolve_wrt

TEXT_LIMIT = 200  # characters of a node's source text in the report; `span` locates all of it
# Statuses that are not a disagreement: the check agreed, or could not compare here.
OK_STATUSES = {
    "ok", "kink", "convention", "undefined", "inconclusive", "skipped", "budget", "error",
}  # fmt: skip
FD_RESOLUTION = 1e-3  # finite differences must resolve the derivative to 0.1% to judge it
MAX_CHECKED_ELEMENTS = 256  # array elements checked one by one (an even sample beyond)
MAX_SYMBOLIC_ELEMENTS = 2_000  # elements over all nodes that SymPy builds one by one
FD_WORK = 300_000_000  # node-element evaluations finite differences may spend in all
FD_EVALUATIONS_PER_ELEMENT = 4 * 90  # stencil points × step sizes, per element checked


@dataclass
class Options:
    wrt: list[str] | None = None  # None: every variable
    dtype: str = "float64"
    torch: bool = True
    device: str = "cpu"
    symbolic: bool = True
    simplify: bool = True
    latex: bool | str = False  # "mathml": LaTeX and presentation MathML (for pages)
    symbolic_timeout: float = 5.0
    symbolic_memory_mb: int = 2048
    finite_difference: bool = True
    seed_grad: Any = None  # the upstream gradient of an array output (--seed-grad)
    order: int = 1  # 2: second derivatives too
    # SymPy's results computed elsewhere (one child for many points, see sweep.py): called
    # once the numeric work is done, instead of starting a SymPy child for this point.
    symbolic_source: Any = None
    expand: bool = False  # large graphs too: one expanded formula per partial (no sweep)


@dataclass
class _Symbolic:
    """What the SymPy child sent back before its budget ran out."""

    output: dict[str, Any] | None = None
    partials: dict[str, dict[str, Any]] = field(default_factory=dict)
    simplified: set[str] = field(default_factory=set)
    error: str | None = None
    state: str = "skipped"
    reason: str | None = None  # why SymPy did not run, where it was asked to
    compact: dict[str, dict[str, Any]] = field(default_factory=dict)  # ∂/∂x = 4*x
    matrix: dict[str, dict[str, Any]] = field(default_factory=dict)  # ∂/∂W = G·Xᵀ
    sweep: dict[str, Any] | None = None  # named intermediates and adjoints (large graphs)


@dataclass
class _Run:
    """Everything one report is made from."""

    graph: Graph
    point: dict[str, Any]  # as given
    used: dict[str, Any]  # as the engine's dtype holds them
    wrt: list[str]
    elements: list[tuple[str, tuple[int, ...]]]  # the partials checked one by one
    options: Options
    trace: engine.Trace
    value_spread: list[float]
    grad_spread: list[float | None]
    kinked: set[str]  # variables that feed a node evaluated on its kink
    fd: dict[Any, finite.FiniteDifference] | None
    torch: autograd.TorchRun | None
    sym: _Symbolic
    seed: Any  # the output's upstream gradient
    directional: finite.Directional | None = None  # finite differences of a large graph

    @property
    def cores(self) -> list[tuple[int, ...]]:
        return self.trace.cores

    def tol(self, check: str) -> tuple[float, float]:
        return compare.TOLERANCES[self.options.dtype][check]


def _num(x: Any) -> float:
    return float(np.asarray(x, dtype=np.float64))


def _plain(x: Any) -> Any:
    """A number, or nested lists of numbers for an array (JSON's form)."""
    value: Any = np.asarray(x, dtype=np.float64).tolist()
    return value


def gradient_report(program: Program, point: dict[str, Any], options: Options) -> dict[str, Any]:
    """Run everything and return the report (see README for the schema)."""
    graph = program.graph
    warnings: list[dict[str, Any]] = [{"message": w} for w in program.warnings]
    warnings += [{"message": w} for w in check_point(graph, point)]
    wrt = resolve_wrt(graph, options.wrt)
    point = {name: point[name] for name in graph.variables}
    cores = shapes.infer(graph, {name: np.shape(value) for name, value in point.items()})
    seed = upstream(graph, cores[graph.output], options.seed_grad)
    if options.dtype != "float64":
        engine.check_constants(graph, dtype=options.dtype)
        warnings += [{"message": w} for w in engine.check_point_fits(point, options.dtype)]
    # The checks look at the point the engine really computed at (float32 rounds it).
    dt = engine.DTYPES[options.dtype]
    used = {name: _rounded(value, dt) for name, value in point.items()}
    if options.torch and options.device != "cpu":
        autograd.check_device(options.device, options.dtype)  # a bad device fails before any work

    if options.order == 2:
        _check_second_order(graph, cores, options)
    trace = engine.run(graph, used, options.dtype, seed)
    elements = checked_elements(graph, cores, wrt)
    total = sum(shapes.size(cores[graph.variables[name]]) for name in wrt)
    if not elements and wrt and options.finite_difference:
        warnings.append(
            {
                "message": f"{total:,} gradient elements in a graph of about "
                f"{max(shapes.cost(graph, cores)):,} operations per evaluation: finite "
                "differences are skipped (one element would take seconds); torch checks "
                "every element"
            }
        )
    elif len(elements) < total:
        warnings.append(
            {
                "message": f"{total:,} gradient elements: finite differences and SymPy check an "
                f"even sample of {len(elements):,} (first and last of each array included); "
                "torch checks every element"
            }
        )
    symbolic_size = sum(shapes.size(core) for core in cores)
    job = None
    point_finite = finite.finite_point(used)
    # One budget for every SymPy child of this command (the second derivatives' too).
    deadline = Deadline(options.symbolic_timeout)
    if symbolic_size <= MAX_SYMBOLIC_ELEMENTS and options.symbolic_source is None and point_finite:
        job = _start_symbolic(graph, used, elements, options, cores, seed, deadline)
    try:
        value_spread, grad_spread = engine.spread(graph, used, trace, options.dtype, seed)
        fd, directional = None, None
        if options.finite_difference:
            noise = _fd_noise(graph, used, options, value_spread[graph.output], seed)
            if finite.directional_wanted(len(elements), max(shapes.cost(graph, cores))):
                directional = finite.directional_differences(
                    graph, used, wrt,
                    {name: trace.grads[graph.variables[name]] for name in wrt},
                    compare.TOLERANCES[options.dtype]["finite_difference"], noise, seed,
                    {name: grad_spread[graph.variables[name]] for name in wrt},
                )  # fmt: skip
            else:
                fd = finite.finite_differences(graph, used, elements, noise, seed)
        torch_run = None
        if options.torch and graph.variables:
            torch_seed = seed if cores[graph.output] or options.seed_grad is not None else None
            torch_run = autograd.torch_run(graph, used, options.dtype, options.device, torch_seed)
    except BaseException:
        if job is not None:
            job.deadline = 0.0
            job.collect()
        raise
    deps = graph.depends_on() if trace.kinks else []
    sym = _collect(job) if options.symbolic_source is None else options.symbolic_source()
    if job is None and options.symbolic and wrt and options.symbolic_source is None:
        sym.state, sym.reason = (
            "skipped",
            (
                finite.NONFINITE_POINT
                if not point_finite
                else f"{symbolic_size:,} array elements, more than the "
                f"{MAX_SYMBOLIC_ELEMENTS:,} SymPy works through one by one"
            ),
        )
    run = _Run(
        graph, point, used, wrt, elements, options, trace, value_spread, grad_spread,
        {name for node in trace.kinks for name in deps[node]},
        fd, torch_run, sym, seed, directional,
    )  # fmt: skip
    report = _assemble(run, program, warnings)
    if options.order == 2:
        _add_second_order(report, graph, used, wrt, options, deadline)
    return report


def _check_second_order(graph: Graph, cores: list[tuple[int, ...]], options: Options) -> None:
    arrays = [name for name, i in graph.variables.items() if cores[i]]
    if arrays:
        raise BackpropError(
            f"--order 2 is for scalar inputs, but {', '.join(arrays)} "
            f"{'is an array' if len(arrays) == 1 else 'are arrays'}",
            hint="backprop hessian gives every second derivative over array elements",
        )
    if options.dtype != "float64":
        raise BackpropError("second derivatives are computed in float64; drop --dtype float32")
    if options.seed_grad is not None:
        raise BackpropError(
            "--order 2 differentiates the output itself: drop --seed-grad",
            hint="write the weighting into the expression (2*(...)) for a scaled Hessian",
        )
    if cores[graph.output]:
        raise BackpropError("--order 2 needs a scalar output (reduce it with sum(...))")


def _add_second_order(
    report: dict[str, Any],
    graph: Graph,
    used: dict[str, Any],
    wrt: list[str],
    options: Options,
    deadline: Deadline,
) -> None:
    """∂²f/∂a∂b for every pair of variables, with the same checks as `backprop hessian`.
    Its SymPy child gets what the first derivatives left of the budget (none: `budget`)."""
    from . import higher

    second = higher.hessian_report(
        graph, used, wrt, torch=options.torch, device=options.device,
        symbolic=options.symbolic, symbolic_timeout=deadline.left(),
        finite_difference=options.finite_difference,
    )  # fmt: skip
    report["hessian"] = second["hessian"]
    report["second_order"] = {
        key: second[key] for key in ("elements", "output_name", "entries", "checks")
    }
    report["ok"] = report["ok"] and second["ok"]


def _rounded(value: Any, dt: Any) -> Any:
    if np.ndim(value) == 0:
        return float(dt(value))
    array = np.asarray(value, dtype=dt).astype(np.float64)
    array.flags.writeable = False
    return array


def upstream(graph: Graph, core: tuple[int, ...], given: Any) -> Any:
    """The output's upstream gradient: 1 for a scalar output; an array output needs one."""
    if given is None:
        if core:
            raise BackpropError(
                f"the output {graph.label(graph.output)!r} has shape {shapes.show(core)}, "
                "not a scalar, so it has no single gradient",
                hint="reduce it (sum(...), mean(...)), use `backprop jacobian` for every "
                "partial, or give the upstream gradient with --seed-grad (as y.backward("
                "gradient=...))",
            )
        return 1.0
    try:
        seed = np.broadcast_to(np.asarray(given, dtype=np.float64), core)
    except ValueError:
        raise BackpropError(
            f"--seed-grad has shape {shapes.show(np.shape(given))}, but the output "
            + (f"has shape {shapes.show(core)}" if core else "is a scalar")
        ) from None
    return float(seed) if not core else np.array(seed)


def checked_elements(
    graph: Graph, cores: list[tuple[int, ...]], wrt: list[str]
) -> list[tuple[str, tuple[int, ...]]]:
    """The partials checked one by one: every element up to MAX_CHECKED_ELEMENTS over all
    variables, beyond that an even sample of each array (first and last included)."""
    width = max(shapes.cost(graph, cores))  # elements and work of one evaluation
    affordable = FD_WORK // (FD_EVALUATIONS_PER_ELEMENT * width)  # finite differences' cost
    if affordable < 1:
        return []  # one element would take seconds: torch alone checks this graph
    per = max(min(4, affordable), min(MAX_CHECKED_ELEMENTS, affordable) // max(1, len(wrt)))
    chosen = []
    for name in wrt:
        core = cores[graph.variables[name]]
        every = shapes.elements(core)
        if len(every) > per:
            picks = np.unique(np.linspace(0, len(every) - 1, per).round().astype(int))
            every = [every[int(k)] for k in picks]
        chosen += [(name, index) for index in every]
    return chosen


def _fd_noise(
    graph: Graph, used: dict[str, Any], options: Options, spread: Any, seed: Any
) -> float:
    """How far rounding moves the (seed-weighted) output in float64, where finite differences
    work."""
    if options.dtype != "float64":
        trace = engine.run(graph, used, "float64", seed)
        spread = engine.spread(graph, used, trace, "float64", seed)[0][graph.output]
    return float(np.sum(np.abs(seed) * np.asarray(spread)))


def _start_symbolic(
    graph: Graph,
    point: dict[str, Any],
    elements: list[tuple[str, tuple[int, ...]]],
    options: Options,
    cores: list[tuple[int, ...]],
    seed: Any,
    deadline: Deadline,
) -> Bounded | None:
    if not (options.symbolic and elements):
        return None
    from ..checks import symbolic

    arrays = any(cores)
    return Bounded(
        symbolic.partials,
        (
            graph, point, elements, options.latex, options.simplify,
            cores if arrays else None,
            seed if arrays or options.seed_grad is not None else None,
            options.expand,
        ),
        deadline=deadline,
        memory_mb=options.symbolic_memory_mb,
    )  # fmt: skip


def _collect(job: Bounded | None) -> _Symbolic:
    got = _Symbolic()
    if job is None:
        return got
    for message in job.collect():
        if "error" in message:
            got.error = str(message["error"])
            continue
        simplified = message.get("stage") == "simplified"
        output = message.get("output")
        if output and not (simplified and "error" in output):
            got.output = {**(got.output or {}), **output}
        got.compact.update(message.get("compact", {}))
        got.matrix.update(message.get("matrix", {}))
        if "sweep" in message:
            got.sweep = message["sweep"]
        for name, info in message.get("partials", {}).items():
            if simplified:
                if "error" in info:
                    continue  # keep the differentiated form
                got.simplified.add(name)
            got.partials[name] = {**got.partials.get(name, {}), **info}
    if got.error or job.status == "error":
        got.state = "error"
    elif job.status == "timeout":  # the wall clock, or the CPU-time limit
        got.state = "partial" if got.partials else "budget"
    else:
        got.state = "done"
    return got


def _assemble(run: _Run, program: Program, warnings: list[dict[str, Any]]) -> dict[str, Any]:
    graph, trace = run.graph, run.trace
    for issue in trace.issues:
        warnings.append({"node": issue.node, "message": f"node {issue.node}: {issue.message}"})
    for node_id in trace.kinks:
        op = graph.nodes[node_id].op
        warnings.append(
            {
                "node": node_id,
                "message": f"node {node_id} ({op}) is evaluated on its kink: "
                "the subgradient torch uses was taken",
            }
        )
    partials = [_partial(run, name, index) for name, index in run.elements]
    output_value = _plain(trace.values[graph.output])
    report: dict[str, Any] = {
        "expression": graph.source,
        "source": program.origin,
        "statements": program.statements,
        "dtype": run.options.dtype,
        "output": {
            "id": graph.output,
            "label": graph.label(graph.output),
            "text": graph.text(graph.output, TEXT_LIMIT),
            "value": output_value,
            "shape": list(run.cores[graph.output]),
        },
        "value": output_value,
        "variables": {name: _plain(value) for name, value in run.point.items()},
        "variables_used": {name: _plain(value) for name, value in run.used.items()},
        "shapes": {name: list(run.cores[i]) for name, i in graph.variables.items()},
        "wrt": run.wrt,
        "gradient": {name: _plain(trace.grads[graph.variables[name]]) for name in run.wrt},
        "nodes": _nodes(run),
        "symbolic": {
            **{name: form["formula"] for name, form in run.sym.compact.items()},
            **{p["element"]: p["symbolic"] for p in partials if p["symbolic"] is not None},
        },
        "symbolic_output": (run.sym.output or {}).get("formula"),
        "symbolic_matrix": {name: form["formula"] for name, form in run.sym.matrix.items()},
        "symbolic_sweep": run.sym.sweep,
    }
    if run.cores[graph.output]:
        report["seed_grad"] = _plain(run.seed)
    if run.options.latex:
        report["latex"] = {
            **{name: form.get("latex") for name, form in run.sym.compact.items()},
            **{p["element"]: p["latex"] for p in partials if p.get("latex")},
        }
        report["symbolic_output_latex"] = (run.sym.output or {}).get("latex")
    report["partials"] = partials
    report["checks"] = {
        "torch": _torch_summary(run),
        "finite_difference": _fd_summary(run, partials),
        "symbolic": _symbolic_summary(run, partials),
    }
    report["warnings"] = warnings
    report["ok"] = all(c["ok"] is not False for c in report["checks"].values())
    return report


def _nodes(run: _Run) -> list[dict[str, Any]]:
    graph, trace = run.graph, run.trace
    kinks = set(trace.kinks)
    issues: dict[int, list[str]] = {}
    for issue in trace.issues:
        issues.setdefault(issue.node, []).append(issue.message)
    out = []
    names = graph.display_names()
    values, grads = _plain_all(trace.values, run.cores), _plain_all(trace.grads, run.cores)
    for node in graph.nodes:
        notes = list(issues.get(node.id, []))
        if node.id in kinks:
            notes.insert(0, "kink: subgradient used")
        row = {
            "id": node.id,
            "label": graph.label(node.id),
            "op": node.op,
            "inputs": list(node.inputs),
            "value": values[node.id],
            "grad": grads[node.id],
            "name": node.name,
            "display_name": names[node.id],
            "text": graph.text(node.id, TEXT_LIMIT),
            "span": list(node.span),
            "output": node.id == graph.output,
            "notes": notes,
            "shape": list(run.cores[node.id]),
        }
        if node.attrs:
            row["attrs"] = {key: _attr(value) for key, value in node.attrs}
        out.append(row)
    return out


def _plain_all(numbers: list[Any], cores: list[tuple[int, ...]]) -> list[Any]:
    """`_plain` of every node's number or array (None stays None): the one-number nodes of
    a long graph converted in one numpy call."""
    found: list[Any] = [None] * len(numbers)
    scalars = [i for i, x in enumerate(numbers) if x is not None and not cores[i]]
    if scalars:
        row = np.array([numbers[i] for i in scalars], dtype=np.float64).tolist()
        for i, value in zip(scalars, row, strict=True):
            found[i] = value
    for i, x in enumerate(numbers):
        if x is not None and cores[i]:
            found[i] = _plain(x)
    return found


def _attr(value: Any) -> Any:
    """An attribute as JSON: slices as "1:3"."""
    if isinstance(value, tuple):
        if value and value[0] == "slice":
            return ":".join("" if v is None else str(v) for v in value[1:]).rstrip(":")
        return [_attr(v) for v in value]
    return value


def _element(value: Any, index: tuple[int, ...]) -> float:
    return _num(np.asarray(value)[index] if index else value)


def _partial(run: _Run, name: str, index: tuple[int, ...]) -> dict[str, Any]:
    node_id = run.graph.variables[name]
    grad = run.trace.grads[node_id]
    assert grad is not None
    engine_value = _element(grad, index)
    given = run.grad_spread[node_id]
    spread = _element(0.0 if given is None else given, index)
    slack = compare.SPREAD_SLACK * spread
    label = shapes.element_name(name, index)
    row: dict[str, Any] = {
        "variable": name,
        "index": list(index),
        "element": label,
        "engine": engine_value,
        "spread": spread,
    }
    status: dict[str, str] = {}
    _symbolic_part(run, label, name, engine_value, slack, row, status)

    if run.torch is None:
        row["torch"] = None
        status["torch"] = "skipped"
    else:
        tgrad = run.torch.grads[node_id]
        row["torch"] = None if tgrad is None else _element(tgrad, index)
        status["torch"] = compare.judge(engine_value, row["torch"], *run.tol("torch"), slack)

    key = (name, index)
    estimate = run.fd.get(key) if run.fd is not None else None
    if estimate is None:
        row["finite_difference"] = None
        status["finite_difference"] = "skipped"
    else:
        row["finite_difference"] = estimate.value
        row["fd_error_estimate"] = estimate.error_estimate
        status["finite_difference"] = _fd_status(run, engine_value, estimate, slack)
    row["status"] = status
    row["ok"] = all(s in OK_STATUSES for s in status.values())
    return row


def _output_finite(run: _Run) -> bool:
    return bool(np.isfinite(np.asarray(run.trace.values[run.graph.output], dtype=float)).all())


_MASKED_NAN = (
    "autograd's nan: a non-finite local derivative times a zero factor (torch gives the same)"
)


def _masked_nan(run: _Run, engine_value: float) -> bool:
    """A nan partial of a finite output: reverse mode multiplied a non-finite local
    derivative (log of a negative, 0**-1, exp overflow) by zero, as torch does too."""
    return math.isnan(engine_value) and _output_finite(run)


def _symbolic_part(
    run: _Run,
    label: str,
    name: str,
    engine_value: float,
    slack: float,
    row: dict[str, Any],
    status: dict[str, str],
) -> None:
    info = run.sym.partials.get(label)
    row["symbolic"] = info.get("formula") if info else None
    row["symbolic_value"] = info.get("value") if info else None
    row["simplified"] = label in run.sym.simplified
    if run.options.latex:
        row["latex"] = info.get("latex") if info else None
    if run.options.latex == "mathml":
        row["mathml"] = info.get("mathml") if info else None
    if info is None:
        if not run.options.symbolic or run.sym.reason:
            status["symbolic"] = "skipped"
        else:
            status["symbolic"] = "error" if run.sym.error else "budget"
        return
    if "error" in info:
        status["symbolic"] = "error"
        row["symbolic_note"] = f"SymPy failed here: {info['error']}"
        return
    if info.get("undefined"):
        status["symbolic"] = "undefined"
        row["symbolic_note"] = info["undefined"]
        return
    verdict = compare.judge(engine_value, info["value"], *run.tol("symbolic"), slack)
    if verdict == "mismatch" and _masked_nan(run, engine_value):
        verdict = "convention"
        row["symbolic_note"] = _MASKED_NAN
    elif verdict == "mismatch" and not _output_finite(run):
        # SymPy's algebra may have cancelled what makes the function undefined here
        # (x/x, exp(log(x)) at x < 0, x**y/y at y = 0); the engine's warning names the node.
        verdict = "undefined"
        row["symbolic_note"] = "the function is not finite here; SymPy's form extends it"
    elif verdict != "ok" and (info.get("convention") or name in run.kinked):
        # On a kink the derivative is a convention: the engine takes torch's subgradient.
        verdict = "convention"
        row["symbolic_note"] = "on a kink SymPy's value is a different convention"
    status["symbolic"] = verdict


def _fd_status(
    run: _Run, engine_value: float, estimate: finite.FiniteDifference, slack: float
) -> str:
    if estimate.kink:
        return "kink"
    if estimate.value is None:
        return "undefined" if estimate.reliable else "inconclusive"
    if _masked_nan(run, engine_value):
        return "convention"
    if not math.isfinite(engine_value) and not _output_finite(run):
        return "undefined"
    rtol, atol = run.tol("finite_difference")
    err = estimate.error_estimate if estimate.error_estimate is not None else math.inf
    scale = max(abs(engine_value), abs(estimate.value)) if math.isfinite(engine_value) else 0.0
    if not estimate.reliable or err > FD_RESOLUTION * scale + atol:
        return "inconclusive"  # the differences cannot resolve this derivative
    return compare.judge(engine_value, estimate.value, rtol, atol, 2 * err + slack)


def _torch_summary(run: _Run) -> dict[str, Any]:
    rtol, atol = run.tol("torch")
    summary: dict[str, Any] = {"rtol": rtol, "atol": atol}
    if run.torch is None:
        reason = "--no-torch" if not run.options.torch else "no variables"
        summary.update(ok=None, skipped=reason, max_error=None)
        return summary
    tally = _Tally(rtol, atol)
    trace, torch = run.trace, run.torch
    # Nodes holding one number (most of a long graph) are judged as whole arrays; the
    # others array by array.
    one = [not core for core in run.cores]
    for what, ours, theirs, spread in (
        ("value", trace.values, torch.values, run.value_spread),
        ("grad", trace.grads, torch.grads, run.grad_spread),
    ):
        present = [i for i, v in enumerate(ours) if v is not None]
        for i in present:
            if theirs[i] is None:
                tally.missing(i, what, ours[i])
            elif not one[i]:
                tally.compare(i, what, ours[i], theirs[i], spread[i])
        ids = [i for i in present if one[i] and theirs[i] is not None]
        tally.compare_scalars(what, ids, ours, theirs, spread)
    summary.update(
        ok=not tally.mismatches,
        skipped=None,
        device=torch.device,
        dtype=run.options.dtype,
        version=torch.version,
        compared=tally.compared,
        inconclusive=tally.unresolved,
        max_error=tally.worst,
        mismatches=tally.first_mismatches(),
    )
    return summary


class _Tally:
    """The engine against torch, node by node: counts, the worst error and the first
    mismatches in node order (value before gradient)."""

    SHOWN = 20

    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol, self.atol = rtol, atol
        self.compared = self.unresolved = 0
        self.worst = 0.0
        self.mismatches: list[tuple[tuple[int, int, tuple[int, ...]], dict[str, Any]]] = []

    def missing(self, node_id: int, what: str, ours: Any) -> None:
        self.compared += 1
        self.worst = math.inf
        entry = {"node": node_id, "what": what, "engine": _plain(ours), "torch": None}
        self.mismatches.append(((node_id, what == "grad", ()), entry))

    def _judge(self, ours: Any, theirs: Any, spread: Any) -> tuple[np.ndarray, Any]:
        slack = compare.SPREAD_SLACK * np.asarray(spread if spread is not None else 0.0)
        verdicts = compare.judge_many(ours, theirs, self.rtol, self.atol, slack)
        self.unresolved += int(np.sum(verdicts == "inconclusive"))
        judged = verdicts != "inconclusive"
        self.compared += int(np.sum(judged))
        if judged.any():
            errors = compare.abs_errors(ours, theirs)
            self.worst = max(self.worst, float(np.max(errors[judged])))
        return verdicts, np.argwhere(verdicts == "mismatch")[: self.SHOWN]

    def compare(self, node_id: int, what: str, ours: Any, theirs: Any, spread: Any) -> None:
        _, wrong = self._judge(ours, theirs, spread)
        for index in wrong:
            where = tuple(int(i) for i in index)
            entry = {
                "node": node_id,
                "what": what,
                "engine": _element(ours, where),
                "torch": _element(theirs, where),
            }
            if where:
                entry["index"] = list(where)
            self.mismatches.append(((node_id, what == "grad", where), entry))

    def compare_scalars(
        self, what: str, ids: list[int], ours: list[Any], theirs: list[Any], spread: list[Any]
    ) -> None:
        """The nodes `ids`, each holding one number, judged in one numpy pass."""
        if not ids:
            return
        mine = np.array([ours[i] for i in ids], dtype=np.float64)
        other = np.array([theirs[i] for i in ids], dtype=np.float64)
        room = np.array([0.0 if spread[i] is None else spread[i] for i in ids], dtype=np.float64)
        _, wrong = self._judge(mine, other, room)
        for (k,) in wrong:
            entry = {"node": ids[k], "what": what, "engine": _num(mine[k]), "torch": _num(other[k])}
            self.mismatches.append(((ids[k], what == "grad", ()), entry))

    def first_mismatches(self) -> list[dict[str, Any]]:
        return [entry for _, entry in sorted(self.mismatches, key=lambda m: m[0])][: self.SHOWN]


def _fd_summary(run: _Run, partials: list[dict[str, Any]]) -> dict[str, Any]:
    rtol, atol = run.tol("finite_difference")
    if run.directional is not None:
        return finite.directional_summary(run.directional, (rtol, atol))
    summary: dict[str, Any] = {"rtol": rtol, "atol": atol, "method": "5-point central"}
    if run.fd is None:
        summary.update(ok=None, skipped="disabled", max_error=None)
        return summary
    compared = [p for p in partials if p["status"]["finite_difference"] in ("ok", "mismatch")]
    summary.update(
        ok=all(p["status"]["finite_difference"] == "ok" for p in compared) if compared else None,
        skipped=None if compared else "nothing comparable",
        compared=len(compared),
        max_error=max(
            (compare.abs_error(p["engine"], p["finite_difference"]) for p in compared), default=0.0
        ),
        mismatches=[p["element"] for p in compared if p["status"]["finite_difference"] != "ok"],
        not_compared={
            p["element"]: p["status"]["finite_difference"] for p in partials if p not in compared
        },
    )
    return summary


def _symbolic_summary(run: _Run, partials: list[dict[str, Any]]) -> dict[str, Any]:
    rtol, atol = run.tol("symbolic")
    summary: dict[str, Any] = {"rtol": rtol, "atol": atol}
    if run.sym.state == "skipped":
        skipped = "--no-symbolic" if not run.options.symbolic else run.sym.reason or "no variables"
        summary.update(ok=None, skipped=skipped, max_error=None)
        return summary
    compared = [p for p in partials if p["status"]["symbolic"] in ("ok", "mismatch")]
    summary.update(
        ok=all(p["status"]["symbolic"] == "ok" for p in compared) if compared else None,
        skipped=None,
        compared=len(compared),
        state=run.sym.state,
        simplified=bool(partials) and len(run.sym.simplified) == len(partials),
        budget_seconds=run.options.symbolic_timeout,
        max_error=max(
            (compare.abs_error(p["engine"], p["symbolic_value"]) for p in compared), default=0.0
        ),
        mismatches=[p["element"] for p in compared if p["status"]["symbolic"] != "ok"],
        error=run.sym.error,
    )
    return summary
