"""The `grad` pipeline: run the engine, the checks and SymPy over one graph at one point and
gather everything into one plain-data report, which is also the JSON schema.

Rendering lives elsewhere; this module never prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import checks, engine
from .errors import BackpropError
from .graph import Graph
from .parse import Program
from .sandbox import Bounded

TEXT_LIMIT = 200  # characters of a node's source text in the report; `span` locates all of it
# Statuses that are not a disagreement: the check agreed, or could not compare here.
OK_STATUSES = {
    "ok", "kink", "convention", "undefined", "inconclusive", "skipped", "budget", "error",
}  # fmt: skip
FD_RESOLUTION = 1e-3  # finite differences must resolve the derivative to 0.1% to judge it


@dataclass
class Options:
    wrt: list[str] | None = None  # None: every variable
    dtype: str = "float64"
    torch: bool = True
    device: str = "cpu"
    symbolic: bool = True
    simplify: bool = True
    latex: bool = False
    symbolic_timeout: float = 5.0
    symbolic_memory_mb: int = 2048
    finite_difference: bool = True


@dataclass
class _Symbolic:
    """What the SymPy child sent back before its budget ran out."""

    output: dict[str, Any] | None = None
    partials: dict[str, dict[str, Any]] = field(default_factory=dict)
    simplified: set[str] = field(default_factory=set)
    error: str | None = None
    state: str = "skipped"


@dataclass
class _Run:
    """Everything one report is made from."""

    graph: Graph
    point: dict[str, float]  # as given
    used: dict[str, float]  # as the engine's dtype holds them
    wrt: list[str]
    options: Options
    trace: engine.Trace
    value_spread: list[float]
    grad_spread: list[float | None]
    kinked: set[str]  # variables that feed a node evaluated on its kink
    fd: dict[str, checks.FiniteDifference] | None
    torch: checks.TorchRun | None
    sym: _Symbolic

    def tol(self, check: str) -> tuple[float, float]:
        return checks.TOLERANCES[self.options.dtype][check]


def _num(x: Any) -> float:
    return float(np.asarray(x, dtype=np.float64))


def check_point(graph: Graph, point: dict[str, float]) -> list[str]:
    """Missing values are an error (naming all of them); unused ones come back as warnings."""
    missing = [name for name in graph.variables if name not in point]
    if missing:
        listed = ", ".join(missing)
        example = " ".join(f"{name}=…" for name in missing)
        raise BackpropError(
            f"missing value{'s' if len(missing) > 1 else ''} for {listed}",
            hint=f"give {'them' if len(missing) > 1 else 'it'} as {example}",
        )
    unused = []
    for name in point:
        if name in graph.variables:
            continue
        if any(n.op == "const" and graph.text(n.id) == name for n in graph.nodes):
            unused.append(
                f"'{name}' is the constant {name} in the expression, so the value given for "
                f"it is not used (assign it in the program to shadow it: {name} = …; …)"
            )
        else:
            unused.append(f"a value was given for '{name}', but the expression does not use it")
    return unused


def resolve_wrt(graph: Graph, wrt: list[str] | None) -> list[str]:
    if wrt is None:
        return list(graph.variables)
    if not wrt:
        raise BackpropError("--wrt names no variable", hint="e.g. --wrt x,y")
    unknown = [name for name in wrt if name not in graph.variables]
    if unknown:
        have = ", ".join(graph.variables) or "none"
        raise BackpropError(
            f"--wrt names {', '.join(unknown)}, which the expression does not use "
            f"(its variables: {have})"
        )
    return list(dict.fromkeys(wrt))


def gradient_report(program: Program, point: dict[str, float], options: Options) -> dict[str, Any]:
    """Run everything and return the report (see README for the schema)."""
    graph = program.graph
    warnings: list[dict[str, Any]] = [{"message": w} for w in program.warnings]
    warnings += [{"message": w} for w in check_point(graph, point)]
    wrt = resolve_wrt(graph, options.wrt)
    point = {name: point[name] for name in graph.variables}
    if options.dtype != "float64":
        engine.check_constants(graph, dtype=options.dtype)
        warnings += [{"message": w} for w in engine.check_point_fits(point, options.dtype)]
    # The checks look at the point the engine really computed at (float32 rounds it).
    dt = engine.DTYPES[options.dtype]
    used = {name: float(dt(value)) for name, value in point.items()}
    if options.torch and options.device != "cpu":
        checks.check_device(options.device, options.dtype)  # a bad device fails before any work

    trace = engine.run(graph, used, options.dtype)
    job = _start_symbolic(graph, used, wrt, options)
    try:
        value_spread, grad_spread = engine.spread(graph, used, trace, options.dtype)
        fd = None
        if options.finite_difference:
            noise = _fd_noise(graph, used, options, value_spread[graph.output])
            fd = checks.finite_differences(graph, used, wrt, noise)
        torch_run = None
        if options.torch and graph.variables:
            torch_run = checks.torch_run(graph, used, options.dtype, options.device)
    except BaseException:
        if job is not None:
            job.deadline = 0.0
            job.collect()
        raise
    deps = graph.depends_on() if trace.kinks else []
    run = _Run(
        graph, point, used, wrt, options, trace, value_spread, grad_spread,
        {name for node in trace.kinks for name in deps[node]},
        fd, torch_run, _collect(job),
    )  # fmt: skip
    return _assemble(run, program, warnings)


def _fd_noise(graph: Graph, used: dict[str, float], options: Options, spread: float) -> float:
    """How far rounding moves the output in float64, where finite differences work."""
    if options.dtype == "float64":
        return spread
    trace = engine.run(graph, used, "float64")
    return engine.spread(graph, used, trace, "float64")[0][graph.output]


def _start_symbolic(
    graph: Graph, point: dict[str, float], wrt: list[str], options: Options
) -> Bounded | None:
    if not (options.symbolic and wrt):
        return None
    from . import symbolic

    return Bounded(
        symbolic.partials,
        (graph, point, wrt, options.latex, options.simplify),
        seconds=options.symbolic_timeout,
        memory_mb=options.symbolic_memory_mb,
    )


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
        for name, info in message.get("partials", {}).items():
            if simplified:
                if "error" in info:
                    continue  # keep the differentiated form
                got.simplified.add(name)
            got.partials[name] = {**got.partials.get(name, {}), **info}
    if got.error:
        got.state = "error"
    elif job.status == "timeout":
        got.state = "partial" if got.partials else "budget"
    else:
        got.state = "done" if job.status == "done" else job.status
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
    partials = [_partial(run, name) for name in run.wrt]
    report: dict[str, Any] = {
        "expression": graph.source,
        "source": program.origin,
        "statements": program.statements,
        "dtype": run.options.dtype,
        "output": {
            "id": graph.output,
            "label": graph.label(graph.output),
            "text": graph.text(graph.output, TEXT_LIMIT),
            "value": _num(trace.values[graph.output]),
        },
        "value": _num(trace.values[graph.output]),
        "variables": dict(run.point),
        "variables_used": dict(run.used),
        "wrt": run.wrt,
        "gradient": {name: _num(trace.grads[graph.variables[name]]) for name in run.wrt},
        "nodes": _nodes(run),
        "symbolic": {p["variable"]: p["symbolic"] for p in partials if p["symbolic"] is not None},
        "symbolic_output": (run.sym.output or {}).get("formula"),
    }
    if run.options.latex:
        report["latex"] = {p["variable"]: p["latex"] for p in partials if p.get("latex")}
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
    for node in graph.nodes:
        grad = trace.grads[node.id]
        notes = list(issues.get(node.id, []))
        if node.id in kinks:
            notes.insert(0, "kink: subgradient used")
        out.append(
            {
                "id": node.id,
                "label": graph.label(node.id),
                "op": node.op,
                "inputs": list(node.inputs),
                "value": _num(trace.values[node.id]),
                "grad": None if grad is None else _num(grad),
                "name": node.name,
                "text": graph.text(node.id, TEXT_LIMIT),
                "span": list(node.span),
                "output": node.id == graph.output,
                "notes": notes,
            }
        )
    return out


def _partial(run: _Run, name: str) -> dict[str, Any]:
    node_id = run.graph.variables[name]
    grad = run.trace.grads[node_id]
    assert grad is not None
    engine_value = _num(grad)
    spread = run.grad_spread[node_id] or 0.0
    slack = checks.SPREAD_SLACK * spread
    row: dict[str, Any] = {"variable": name, "engine": engine_value, "spread": spread}
    status: dict[str, str] = {}
    _symbolic_part(run, name, engine_value, slack, row, status)

    if run.torch is None:
        row["torch"] = None
        status["torch"] = "skipped"
    else:
        tgrad = run.torch.grads[node_id]
        row["torch"] = None if tgrad is None else _num(tgrad)
        status["torch"] = checks.judge(engine_value, row["torch"], *run.tol("torch"), slack)

    estimate = run.fd.get(name) if run.fd is not None else None
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
    return math.isfinite(_num(run.trace.values[run.graph.output]))


_MASKED_NAN = (
    "autograd's nan: a non-finite local derivative times a zero factor (torch gives the same)"
)


def _masked_nan(run: _Run, engine_value: float) -> bool:
    """A nan partial of a finite output: reverse mode multiplied a non-finite local
    derivative (log of a negative, 0**-1, exp overflow) by zero, as torch does too."""
    return math.isnan(engine_value) and _output_finite(run)


def _symbolic_part(
    run: _Run,
    name: str,
    engine_value: float,
    slack: float,
    row: dict[str, Any],
    status: dict[str, str],
) -> None:
    info = run.sym.partials.get(name)
    row["symbolic"] = info.get("formula") if info else None
    row["symbolic_value"] = info.get("value") if info else None
    row["simplified"] = name in run.sym.simplified
    if run.options.latex:
        row["latex"] = info.get("latex") if info else None
    if info is None:
        if not run.options.symbolic:
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
    verdict = checks.judge(engine_value, info["value"], *run.tol("symbolic"), slack)
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
    run: _Run, engine_value: float, estimate: checks.FiniteDifference, slack: float
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
    return checks.judge(engine_value, estimate.value, rtol, atol, 2 * err + slack)


def _torch_summary(run: _Run) -> dict[str, Any]:
    rtol, atol = run.tol("torch")
    summary: dict[str, Any] = {"rtol": rtol, "atol": atol}
    if run.torch is None:
        reason = "--no-torch" if not run.options.torch else "no variables"
        summary.update(ok=None, skipped=reason, max_error=None)
        return summary
    mismatches = []
    worst = 0.0
    compared = unresolved = 0
    trace = run.trace
    for node in run.graph.nodes:
        pairs: list[tuple[str, Any, Any, float | None]] = [
            ("value", trace.values[node.id], run.torch.values[node.id], run.value_spread[node.id])
        ]
        if trace.grads[node.id] is not None:
            theirs = run.torch.grads[node.id]
            pairs.append(("grad", trace.grads[node.id], theirs, run.grad_spread[node.id]))
        for what, ours, theirs, spread in pairs:
            a = _num(ours)
            b = None if theirs is None else _num(theirs)
            verdict = checks.judge(a, b, rtol, atol, checks.SPREAD_SLACK * (spread or 0.0))
            if verdict == "inconclusive":
                unresolved += 1  # too ill-conditioned here for any comparison to mean much
                continue
            compared += 1
            worst = max(worst, checks.abs_error(a, b))
            if verdict == "mismatch":
                mismatches.append({"node": node.id, "what": what, "engine": a, "torch": b})
    summary.update(
        ok=not mismatches,
        skipped=None,
        device=run.torch.device,
        dtype=run.options.dtype,
        version=run.torch.version,
        compared=compared,
        inconclusive=unresolved,
        max_error=worst,
        mismatches=mismatches[:20],
    )
    return summary


def _fd_summary(run: _Run, partials: list[dict[str, Any]]) -> dict[str, Any]:
    rtol, atol = run.tol("finite_difference")
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
            (checks.abs_error(p["engine"], p["finite_difference"]) for p in compared), default=0.0
        ),
        mismatches=[p["variable"] for p in compared if p["status"]["finite_difference"] != "ok"],
        not_compared={
            p["variable"]: p["status"]["finite_difference"] for p in partials if p not in compared
        },
    )
    return summary


def _symbolic_summary(run: _Run, partials: list[dict[str, Any]]) -> dict[str, Any]:
    rtol, atol = run.tol("symbolic")
    summary: dict[str, Any] = {"rtol": rtol, "atol": atol}
    if run.sym.state == "skipped":
        skipped = "--no-symbolic" if not run.options.symbolic else "no variables"
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
            (checks.abs_error(p["engine"], p["symbolic_value"]) for p in compared), default=0.0
        ),
        mismatches=[p["variable"] for p in compared if p["status"]["symbolic"] != "ok"],
        error=run.sym.error,
    )
    return summary
