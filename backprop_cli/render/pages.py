"""The pages of grad, explain and train: what each command shows in the terminal, laid out
as one HTML document around the step-through of render/page.py."""

from __future__ import annotations

from typing import Any

from . import numbers
from .chart import line_chart
from .page import (
    _cell,
    _table,
    document,
    fragment,
    full,
    graph_section,
    nodes_table,
    shown,
    text,
)


def _program(expression: str) -> str:
    """The program without its comments: on the heading's line when short, else below it."""
    lines = [line.split("#", 1)[0].rstrip() for line in expression.splitlines()]
    kept = [line for line in lines if line.strip()]
    one = " ".join(" ".join(kept).split())
    if len(kept) <= 1 and len(one) <= 100:
        return f' <code class="bp-expression">{text(one)}</code></h1>'
    return f'</h1><pre class="bp-program"><code>{text(chr(10).join(kept))}</code></pre>'


def _title(command: str, expression: str) -> str:
    lines = [line.split("#", 1)[0].strip() for line in expression.splitlines()]
    shown_text = "; ".join(line for line in lines if line)
    if len(shown_text) > 80:
        shown_text = shown_text[:79] + "…"
    return f"backprop {command} {shown_text}"


def _point_line(variables: dict[str, Any]) -> str:
    if not variables:
        return ""
    parts = ", ".join(f"{name} = {shown(value)}" for name, value in variables.items())
    return f'<p class="bp-muted">at {text(parts)}</p>'


def _verdicts(lines: list[tuple[str, str]]) -> str:
    items = []
    for mark, line in lines:
        kind = "bp-ok" if mark == "✓" else ("bp-bad" if mark in ("✗", "!") else "bp-muted")
        items.append(f'<li class="{kind}">{text(mark)} {text(line)}</li>')
    return '<ul class="bp-verdicts">' + "".join(items) + "</ul>"


def _warnings(report: dict[str, Any]) -> str:
    """The report's warnings: entries with a message (grad, explain) or plain text (train)."""
    said = [w["message"] if isinstance(w, dict) else str(w) for w in report.get("warnings", [])]
    return "".join(f'<p class="bp-bad">warning: {text(w)}</p>' for w in said)


def _formula_cell(p: dict[str, Any]) -> str:
    if p.get("mathml"):
        return f"<td>{p['mathml']}</td>"  # SymPy's MathML: its printer escapes every name
    if p.get("symbolic"):
        return f"<td><code>{text(p['symbolic'])}</code></td>"
    return '<td class="bp-muted">—</td>'


def _mark(p: dict[str, Any]) -> str:
    """The agreement cell: ✓, ✗, or ✓* with the checks that were not a plain ok."""
    from .gradient import _mark as mark

    shown_mark = mark(p)
    if shown_mark == "✗":
        return '<td class="bp-bad">✗ mismatch</td>'
    if shown_mark == "✓":
        return '<td class="bp-ok">✓</td>'
    notes = ", ".join(f"{k}: {v}" for k, v in p["status"].items() if v != "ok")
    return f'<td class="bp-muted">✓* {text(notes)}</td>'


def partials_table(report: dict[str, Any], out: str) -> str:
    """Each partial from every source: SymPy's formula, the engine, the exact value, torch,
    finite differences, and whether they agree."""
    rows = [
        f'<tr data-partial="{text(p["element"])}"><td>{text("∂" + out + "/∂" + p["element"])}</td>'
        f"{_formula_cell(p)}{_cell(p['engine'])}{_cell(p.get('symbolic_value'))}"
        f"{_cell(p.get('torch'))}{_cell(p.get('finite_difference'))}{_mark(p)}</tr>"
        for p in report["partials"]
    ]
    head = [("partial", False), ("SymPy formula", False), ("engine", True), ("exact", True),
            ("torch", True), ("finite diff.", True), ("agree", False)]  # fmt: skip
    return _table(head, rows, f"Partial derivatives of {out}")


def grad_body(report: dict[str, Any], walk: dict[str, Any]) -> str:
    from .gradient import check_lines, output_name

    out = output_name(report)
    value = report["value"]
    return (
        f"<header><h1>backprop grad{_program(report['expression'])}"
        f"{_point_line(report['variables_used'])}"
        f'<p>{text(out)} = <b title="{text(full(value))}">{text(shown(value))}</b> '
        f'<span class="bp-muted">({text(report["dtype"])})</span></p>'
        f"{_verdicts(check_lines(report))}{_warnings(report)}</header>"
        f"{graph_section(walk)}"
        f"<section><h2>Nodes</h2>{nodes_table(walk)}</section>"
        f"<section><h2>Partial derivatives</h2>{partials_table(report, out)}</section>"
        f"{_second_order(report, out)}"
    )


def _second_order(report: dict[str, Any], out: str) -> str:
    """--order 2: each second partial from every source, as the terminal's table."""
    second = report.get("second_order")
    if not second:
        return ""
    rows = [
        f"<tr><td>{text('∂²' + out + '/∂' + e['row'] + '∂' + e['column'])}</td>"
        f"<td><code>{text(e.get('symbolic') or '—')}</code></td>{_cell(e['engine'])}"
        f"{_cell(e.get('symbolic_value'))}{_cell(e.get('torch'))}"
        f"{_cell(e.get('finite_difference'))}{_mark(e)}</tr>"
        for e in second["entries"]
    ]
    head = [("second partial", False), ("SymPy formula", False), ("engine", True),
            ("exact", True), ("torch", True), ("finite diff.", True), ("agree", False)]  # fmt: skip
    return "<section><h2>Second derivatives</h2>" + _table(head, rows, "--order 2") + "</section>"


def grad_page(report: dict[str, Any], walk: dict[str, Any]) -> str:
    return document(_title("grad", report["expression"]), grad_body(report, walk))


def grad_fragment(report: dict[str, Any], walk: dict[str, Any]) -> str:
    return fragment(grad_body(report, walk))


# ---- explain ---------------------------------------------------------------------------


def _explain_partial(v: dict[str, Any], out: str) -> str:
    """One variable's chain rule: its paths, each with its factors and product, and the sum."""
    name = v["variable"]
    rows = []
    for j, path in enumerate(v.get("paths", []), start=1):
        factors = []
        for link in path["links"]:
            if "omitted" in link:
                factors.append(f"… {link['omitted']} more …")
                continue
            where = f" ({link['operand']})" if link.get("operand") else ""
            formula = (link.get("formula") or {}).get("text")
            said = f"∂{link['from']}/∂{link['to']}{where}"
            said += f" = {formula}" if formula and formula != shown(link["value"]) else ""
            factors.append(f"{said} = {shown(link['value'])}")
        rows.append(
            f'<tr class="bp-path"><td class="bp-num">{j}</td>'
            f"<td><code>{text(' → '.join(path['names']))}</code></td>"
            f"<td>{text(' · '.join(factors) or '1')}</td>{_cell(path['product'])}</tr>"
        )
    for group in v.get("groups", []):
        rows.append(
            f"<tr><td></td><td>{text(numbers.plural(group['count'], 'path'))} through "
            f"<code>{text(group['via'])}</code></td><td>local {text(shown(group['local']))}"
            f"</td>{_cell(group['sum'])}</tr>"
        )
    verdict = "bp-ok" if v.get("verdict") != "mismatch" else "bp-bad"
    said = "equals the reverse sweep's" if v.get("agrees") else f"reverse sweep: {v.get('verdict')}"
    head = [("#", True), ("path", False), ("local derivatives", False), ("product", True)]
    return (
        f"<h3>∂{text(out)}/∂{text(name)} = {text(shown(v['sum']))} "
        f'<span class="{verdict}">({text(said)})</span></h3>'
        + _table(head, rows, f"{numbers.plural(v['count'], 'path')} from {out} to {name}")
    )


def explain_body(report: dict[str, Any], walk: dict[str, Any]) -> str:
    out = report["output"]["name"]
    parts = [
        f"<header><h1>backprop explain{_program(report['expression'])}"
        f"{_point_line(report['variables'])}"
        f"<p>{text(out)} = <b>{text(shown(report['output']['value']))}</b></p>"
        f"{_warnings(report)}</header>",
        graph_section(walk),
    ]
    if report.get("partials"):
        chain = "".join(_explain_partial(v, out) for v in report["partials"])
        parts.append(
            "<section><h2>The chain rule, path by path</h2><p>Each partial is the sum over "
            "every path from the output down to the variable of the product of the local "
            f"derivatives along it.</p>{chain}</section>"
        )
    for sweep in report.get("forward_sweeps", []):
        parts.append(_forward_sweep(sweep, out))
    parts.append(_cost(report))
    parts.append(f"<section><h2>Nodes</h2>{nodes_table(walk)}</section>")
    return "".join(parts)


def _forward_sweep(sweep: dict[str, Any], out: str) -> str:
    """--mode forward: one tangent sweep, ∂node/∂variable node by node."""
    name = sweep["variable"]
    rows = [
        f"<tr><td><code>{text(s['to'])}</code></td><td><code>{text(s['from'])}"
        f"{' (' + text(s['operand']) + ')' if s.get('operand') else ''}</code></td>"
        f"{_cell(s['tangent_in'])}{_cell(s['local'])}{_cell(s['contribution'])}"
        f"{_cell(s['tangent'])}</tr>"
        for s in sweep["steps"]
    ]
    more = sweep["steps_total"] - len(sweep["steps"])
    head = [("node", False), ("from", False), (f"∂from/∂{name}", True), ("local", True),
            ("contribution", True), (f"∂node/∂{name} so far", True)]  # fmt: skip
    caption = f"The tangent sweep for {name}" + (f" ({more:,} more steps)" if more else "")
    return (
        f"<section><h2>Forward mode: ∂{text(out)}/∂{text(name)} = "
        f"{text(shown(sweep['result']))}</h2>{_table(head, rows, caption)}</section>"
    )


def _cost(report: dict[str, Any]) -> str:
    cost = report.get("cost")
    if not cost:
        return ""
    items = "".join(
        f"<li>{text(mode)}: {text(numbers.plural(cost[mode]['sweeps'], 'sweep'))}, "
        f"{text(cost[mode]['stored'])} values kept ({text(cost[mode]['note'])})</li>"
        for mode in ("reverse", "forward")
        if mode in cost
    )
    operations = numbers.plural(cost["operations"], "operation")
    return (
        f"<section><h2>What each mode costs here</h2><p>{text(operations)}</p>"
        f"<ul>{items}</ul></section>"
    )


def explain_page(report: dict[str, Any], walk: dict[str, Any]) -> str:
    return document(_title("explain", report["expression"]), explain_body(report, walk))


def explain_fragment(report: dict[str, Any], walk: dict[str, Any]) -> str:
    return fragment(explain_body(report, walk))


# ---- train -----------------------------------------------------------------------------


def _settings_table(doc: dict[str, Any]) -> str:
    rows = [
        f"<tr><th scope=row>{text(k)}</th><td><code>{text(v)}</code></td></tr>"
        for k, v in doc["settings"].items()
    ]
    rows.insert(0, f"<tr><th scope=row>data</th><td>{text(doc['data_size'])} samples</td></tr>")
    return _table([("setting", False), ("value", False)], rows, "Settings")


MAX_SERIES = 12  # parameter elements drawn; the rest are named under the chart


def _history_series(doc: dict[str, Any]) -> tuple[list[tuple[str, list[tuple[float, float]]]], int]:
    """Each parameter element's value by epoch (W1[0,1] for an array's), the first
    MAX_SERIES of them; and how many more there are."""
    import numpy as np

    series: dict[str, list[tuple[float, float]]] = {}
    for entry in doc["history"]:
        for name, value in (entry.get("params") or {}).items():
            array = np.asarray(value, dtype=np.float64)
            for index in np.ndindex(array.shape):
                label = name if not index else f"{name}[{','.join(map(str, index))}]"
                series.setdefault(label, []).append((entry["epoch"], float(array[index])))
    items = list(series.items())
    return items[:MAX_SERIES], max(0, len(items) - MAX_SERIES)


def _sample(step: dict[str, Any]) -> str:
    if step["sample"] is None:
        return f"a batch of {step['size']}"
    return ", ".join(f"{k} = {shown(v)}" for k, v in step["sample"].items())


def _grads_table(steps: list[dict[str, Any]], params: list[str], caption: str) -> str:
    rows = [
        f'<tr><td class="bp-num">{s["step"]}</td><td>{text(_sample(s))}</td>'
        + "".join(_cell(s["grads"].get(p)) for p in params)
        + _cell(s["loss"])
        + "</tr>"
        for s in steps
    ]
    head = [
        ("step", True),
        ("sample", False),
        *((f"∂loss/∂{p}", True) for p in params),
        ("loss", True),
    ]
    return _table(head, rows, caption)


def _status(doc: dict[str, Any]) -> str:
    """How the training ended: diverged, interrupted, and the torch check's verdict."""
    lines = []
    if doc.get("diverged_at") is not None:
        said = f"✗ diverged at epoch {doc['diverged_at']}: the loss or a parameter went "
        lines.append(("bp-bad", said + "non-finite; the last finite parameters are kept"))
    if doc.get("interrupted"):
        lines.append(("bp-bad", f"! interrupted after {doc['epochs']} epochs"))
    check = doc.get("check")
    if check:
        said = "agree" if check.get("ok") else "disagree"
        error = check.get("max_error")
        worst = f", max error {shown(error)}" if error is not None else ""
        mark, kind = ("✓", "bp-ok") if check.get("ok") else ("✗", "bp-bad")
        lines.append((kind, f"{mark} torch autograd: the gradients {said}{worst}"))
    return "".join(f'<p class="{kind}">{text(line)}</p>' for kind, line in lines)


def _input(x: Any) -> str:
    if isinstance(x, dict):
        return ", ".join(f"{k} = {shown(v)}" for k, v in x.items())
    return shown(x)


def _predictions(doc: dict[str, Any]) -> str:
    if not doc["predictions"]:
        return ""
    rows = [
        f"<tr><td><code>{text(_input(p['x']))}</code></td>{_cell(p['y'])}</tr>"
        for p in doc["predictions"]
    ]
    return (
        "<section><h2>Predictions</h2>"
        + _table([("input", False), ("prediction", True)], rows, "The trained model's predictions")
        + "</section>"
    )


def train_body(doc: dict[str, Any], grads: dict[str, list[dict[str, Any]]]) -> str:
    """The training: settings, loss curve, parameters' trajectories, the first and the last
    epoch's gradients, the final parameters, predictions."""
    curve = [(float(e["epoch"]), float(e["loss"])) for e in doc["history"] if e["loss"] is not None]
    params = list(doc["parameters"])
    final_rows = [
        f"<tr><td><code>{text(p)}</code></td>{_cell(doc['params'].get(p))}</tr>" for p in params
    ]
    parts = [
        f'<header><h1>backprop train <code class="bp-expression">{text(doc["model"])}</code>'
        f"</h1><p>ŷ = <code>{text(doc['formula'])}</code>, {text(doc['loss_name'])} loss; "
        f"{text(numbers.plural(doc['epochs'], 'epoch'))}, final loss "
        f"<b>{text(shown(doc['loss']))}</b></p>{_status(doc)}{_warnings(doc)}</header>",
        f"<section><h2>Loss</h2>{line_chart([('loss', curve)], 'epoch', 'loss')}</section>",
    ]
    series, more = _history_series(doc)
    if series:
        left_out = f'<p class="bp-muted">{more:,} more elements are not drawn.</p>' if more else ""
        parts.append(
            "<section><h2>Parameters</h2>"
            f"{line_chart(series, 'epoch', 'value', log=False)}{left_out}</section>"
        )
    last_epoch = grads["last"][0]["epoch"] if grads.get("last") else None
    for key, title in (
        ("first", "The first epoch (0)"),
        ("last", f"The last epoch ({last_epoch})"),
    ):
        if grads.get(key):
            caption = "each step's gradients, before the step updates the parameters"
            batch = doc["settings"].get("batch_size") or doc["data_size"]
            per_epoch = -(-doc["data_size"] // max(1, batch))
            if per_epoch > len(grads[key]):
                caption += f" (the first {len(grads[key])} of the epoch's {per_epoch:,} steps)"
            table = _grads_table(grads[key], params, caption)
            parts.append(f"<section><h2>{text(title)}</h2>{table}</section>")
    parts.append(
        "<section><h2>Final parameters</h2>"
        + _table([("parameter", False), ("value", True)], final_rows, "After training")
        + "</section>"
    )
    parts.append(_predictions(doc))
    parts.append(f"<section><h2>Settings</h2>{_settings_table(doc)}</section>")
    return "".join(parts)


def train_page(doc: dict[str, Any], grads: dict[str, list[dict[str, Any]]]) -> str:
    return document(f"backprop train {doc['model']}", train_body(doc, grads))
