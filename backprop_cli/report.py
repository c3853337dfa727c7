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
OK_STATUSES = {"ok", "kink", "convention", "undefined", "skipped", "budget", "error"}


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
class _Collected:
    output: dict[str, Any] | None = None
    partials: dict[str, dict[str, Any]] = field(default_factory=dict)
    simplified: set[str] = field(default_factory=set)
    error: str | None = None


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
    return [
        f"a value was given for '{name}', but the expression does not use it"
        for name in point
        if name not in graph.variables
    ]


def resolve_wrt(graph: Graph, wrt: list[str] | None) -> list[str]:
    if wrt is None:
        return list(graph.variables)
    unknown = [name for name in wrt if name not in graph.variables]
    if unknown:
        have = ", ".join(graph.variables) or "none"
        raise BackpropError(
            f"--wrt names {', '.join(unknown)}, which the expression does not use "
            f"(its variables: {have})"
        )
    seen: list[str] = []
    for name in wrt:
        if name not in seen:
            seen.append(name)
    return seen


def gradient_report(program: Program, point: dict[str, float], options: Options) -> dict[str, Any]:
    graph = program.graph
    warnings: list[dict[str, Any]] = [{"message": w} for w in program.warnings]
    warnings += [{"message": w} for w in check_point(graph, point)]
    wrt = resolve_wrt(graph, options.wrt)
    point = {name: point[name] for name in graph.variables}
    if options.torch and options.device != "cpu":
        checks.check_device(options.device, options.dtype)  # a bad device fails before any work

    trace = engine.run(graph, point, options.dtype)
    symbolic_job = None
    if options.symbolic and wrt:
        from . import symbolic

        symbolic_job = Bounded(
            symbolic.partials,
            (graph, point, wrt, options.latex, options.simplify),
            seconds=options.symbolic_timeout,
            memory_mb=options.symbolic_memory_mb,
        )
    fd = checks.finite_differences(graph, point, wrt) if options.finite_difference else None
    torch_run = None
    if options.torch and graph.variables:
        try:
            torch_run = checks.torch_run(graph, point, options.dtype, options.device)
        except BaseException:
            if symbolic_job is not None:
                symbolic_job.deadline = 0.0
                symbolic_job.collect()
            raise
    collected = _collect(symbolic_job)

    nodes = _nodes(graph, trace)
    for issue in trace.issues:
        warnings.append({"node": issue.node, "message": f"node {issue.node}: {issue.message}"})
    for node_id in trace.kinks:
        warnings.append(
            {
                "node": node_id,
                "message": f"node {node_id} ({graph.nodes[node_id].op}) is evaluated on its "
                "kink: the subgradient torch uses was taken",
            }
        )
    tol = checks.TOLERANCES[options.dtype]
    report: dict[str, Any] = {
        "expression": graph.source,
        "source": program.origin,
        "statements": program.statements,
        "dtype": options.dtype,
        "output": {
            "id": graph.output,
            "label": graph.label(graph.output),
            "text": graph.text(graph.output, TEXT_LIMIT),
            "value": _num(trace.values[graph.output]),
        },
        "value": _num(trace.values[graph.output]),
        "variables": dict(point),
        "wrt": wrt,
        "gradient": {name: _num(trace.grads[graph.variables[name]]) for name in wrt},
        "nodes": nodes,
    }
    partials = _partials(graph, trace, wrt, fd, torch_run, collected, options, tol)
    report["symbolic"] = {
        p["variable"]: p["symbolic"] for p in partials if p["symbolic"] is not None
    }
    report["symbolic_output"] = collected.output["formula"] if collected.output else None
    if options.latex:
        report["latex"] = {
            p["variable"]: p["latex"] for p in partials if p.get("latex") is not None
        }
    report["partials"] = partials
    report["checks"] = {
        "torch": _torch_summary(graph, trace, torch_run, options, tol["torch"]),
        "finite_difference": _fd_summary(partials, fd, tol["finite_difference"]),
        "symbolic": _symbolic_summary(partials, symbolic_job, collected, options, tol),
    }
    report["warnings"] = warnings
    report["ok"] = all(c["ok"] is not False for c in report["checks"].values())
    return report


def _collect(job: Bounded | None) -> _Collected:
    got = _Collected()
    if job is None:
        return got
    for message in job.collect():
        if "error" in message:
            got.error = str(message["error"])
            continue
        if message.get("output"):
            got.output = message["output"]
        for name, info in message.get("partials", {}).items():
            got.partials[name] = info
            if message["stage"] == "simplified":
                got.simplified.add(name)
    return got


def _nodes(graph: Graph, trace: engine.Trace) -> list[dict[str, Any]]:
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


def _partials(
    graph: Graph,
    trace: engine.Trace,
    wrt: list[str],
    fd: dict[str, checks.FiniteDifference] | None,
    torch_run: checks.TorchRun | None,
    sym: _Collected,
    options: Options,
    tol: dict[str, tuple[float, float]],
) -> list[dict[str, Any]]:
    rows = []
    for name in wrt:
        node_id = graph.variables[name]
        grad = trace.grads[node_id]
        assert grad is not None
        engine_value = _num(grad)
        row: dict[str, Any] = {"variable": name, "engine": engine_value}
        status: dict[str, str] = {}

        info = sym.partials.get(name)
        row["symbolic"] = info["formula"] if info else None
        row["symbolic_value"] = info.get("value") if info else None
        row["simplified"] = name in sym.simplified
        if options.latex:
            row["latex"] = info.get("latex") if info else None
        if info is None:
            status["symbolic"] = "skipped" if not options.symbolic else "budget"
            if sym.error and options.symbolic:
                status["symbolic"] = "error"
        elif info.get("undefined"):
            status["symbolic"] = "undefined"
            row["symbolic_note"] = info["undefined"]
        elif checks.agree(engine_value, info["value"], *tol["symbolic"]):
            status["symbolic"] = "ok"
        else:
            status["symbolic"] = "convention" if info.get("convention") else "mismatch"
            if info.get("convention"):
                row["symbolic_note"] = "SymPy's value on a kink differs by convention"

        if torch_run is None:
            row["torch"] = None
            status["torch"] = "skipped"
        else:
            tgrad = torch_run.grads[node_id]
            row["torch"] = None if tgrad is None else _num(tgrad)
            agree = checks.agree(engine_value, row["torch"], *tol["torch"])
            status["torch"] = "ok" if agree else "mismatch"

        estimate = fd.get(name) if fd is not None else None
        if estimate is None:
            row["finite_difference"] = None
            status["finite_difference"] = "skipped"
        else:
            row["finite_difference"] = estimate.value
            row["fd_error_estimate"] = estimate.error_estimate
            status["finite_difference"] = _fd_status(engine_value, estimate, tol)
        row["status"] = status
        row["ok"] = all(s in OK_STATUSES for s in status.values())
        rows.append(row)
    return rows


def _fd_status(
    engine_value: float, estimate: checks.FiniteDifference, tol: dict[str, tuple[float, float]]
) -> str:
    if estimate.kink:
        return "kink"
    if estimate.value is None or not math.isfinite(engine_value):
        return "undefined"
    rtol, atol = tol["finite_difference"]
    slack = 2 * (estimate.error_estimate or 0.0)
    return "ok" if checks.agree(engine_value, estimate.value, rtol, atol + slack) else "mismatch"


def _torch_summary(
    graph: Graph,
    trace: engine.Trace,
    run: checks.TorchRun | None,
    options: Options,
    tol: tuple[float, float],
) -> dict[str, Any]:
    rtol, atol = tol
    summary: dict[str, Any] = {"rtol": rtol, "atol": atol}
    if run is None:
        reason = "--no-torch" if not options.torch else "no variables"
        summary.update(ok=None, skipped=reason)
        return summary
    mismatches = []
    worst = 0.0
    compared = 0
    for node in graph.nodes:
        pairs = [("value", trace.values[node.id], run.values[node.id])]
        if trace.grads[node.id] is not None:
            pairs.append(("grad", trace.grads[node.id], run.grads[node.id]))
        for what, ours, theirs in pairs:
            a = _num(ours)
            b = None if theirs is None else _num(theirs)
            compared += 1
            worst = max(worst, checks.abs_error(a, b))
            if not checks.agree(a, b, rtol, atol):
                mismatches.append({"node": node.id, "what": what, "engine": a, "torch": b})
    summary.update(
        ok=not mismatches,
        skipped=None,
        device=run.device,
        dtype=options.dtype,
        version=run.version,
        compared=compared,
        max_error=worst,
        mismatches=mismatches[:20],
    )
    return summary


def _fd_summary(
    partials: list[dict[str, Any]],
    fd: dict[str, checks.FiniteDifference] | None,
    tol: tuple[float, float],
) -> dict[str, Any]:
    rtol, atol = tol
    summary: dict[str, Any] = {"rtol": rtol, "atol": atol, "method": "5-point central"}
    if fd is None:
        summary.update(ok=None, skipped="disabled")
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


def _symbolic_summary(
    partials: list[dict[str, Any]],
    job: Bounded | None,
    sym: _Collected,
    options: Options,
    tol: dict[str, tuple[float, float]],
) -> dict[str, Any]:
    rtol, atol = tol["symbolic"]
    summary: dict[str, Any] = {"rtol": rtol, "atol": atol}
    if job is None:
        summary.update(ok=None, skipped="--no-symbolic" if not options.symbolic else "no variables")
        return summary
    compared = [p for p in partials if p["status"]["symbolic"] in ("ok", "mismatch")]
    if sym.error:
        state = "error"
    elif job.status == "timeout":
        state = "budget" if not sym.partials else "partial"
    else:
        state = "done" if job.status == "done" else job.status
    summary.update(
        ok=all(p["status"]["symbolic"] == "ok" for p in compared) if compared else None,
        skipped=None,
        compared=len(compared),
        state=state,
        simplified=bool(sym.simplified) and len(sym.simplified) == len(partials),
        budget_seconds=options.symbolic_timeout,
        max_error=max(
            (checks.abs_error(p["engine"], p["symbolic_value"]) for p in compared), default=0.0
        ),
        mismatches=[p["variable"] for p in compared if p["status"]["symbolic"] != "ok"],
        error=sym.error,
    )
    return summary
