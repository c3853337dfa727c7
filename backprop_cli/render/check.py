"""The `backprop check` report for people: one row per check, then the worst point."""

from __future__ import annotations

from typing import Any

from .gradient import error, short

_NAMES = {
    "torch": "torch autograd",
    "finite_difference": "finite differences",
    "symbolic": "SymPy, evaluated exactly",
}


def _point(point: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} = {short(v, 'float64', 10) if isinstance(v, float) else v}"
        for name, v in point.items()
    )


def check_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    where = (
        f"{report['points']:,} random points in [{report['range'][0]:g}, {report['range'][1]:g}]"
        f" (seed {report['seed']})"
        if report["source"] == "random"
        else f"{report['points']:,} points from {report['source']}"
    )
    table = Table(title=where[0].upper() + where[1:], title_justify="left")
    table.add_column("check")
    table.add_column("compared", justify="right")
    table.add_column("agree", justify="right")
    table.add_column("disagree", justify="right")
    table.add_column("not compared")
    table.add_column("max error", justify="right")
    for check, summary in report["checks"].items():
        if summary["skipped"]:
            table.add_row(_NAMES[check], "", "", "", f"skipped ({summary['skipped']})", "")
            continue
        others = ", ".join(f"{n} {status}" for status, n in summary["not_compared"].items())
        table.add_row(
            _NAMES[check],
            f"{summary['compared']:,}",
            f"{summary['agree']:,}",
            f"[bold red]{summary['mismatches']:,}[/]" if summary["mismatches"] else "0",
            others,
            error(summary["max_error"]) if summary["max_error"] is not None else "—",
        )
    return table


def check_heading(report: dict[str, Any]) -> str:
    return f"gradient check of {report['expression']}"


def check_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    worst = report["worst"]
    if worst is not None:
        other = worst["other"]
        shown = short(other, "float64", 10) if isinstance(other, float) else str(other)
        lines.append(
            f"worst point: {_point(worst['point'])}: ∂/∂{worst['partial']} engine "
            f"{short(worst['engine'], 'float64', 10)} vs {_NAMES[worst['check']]} {shown}"
            + (f" ({worst['status']})" if worst["status"] != "ok" else "")
        )
    for m in report["mismatches"][:5]:
        what = f"∂/∂{m['partial']}" if m["partial"] else "a node's value or gradient"
        lines.append(
            f"[bold red]✗[/] {_NAMES[m['check']]} disagrees at {_point(m['point'])}: {what}: "
            f"engine {m['engine']} vs {m['other']}"
        )
    total = sum(s["mismatches"] for s in report["checks"].values())
    if report["ok"]:
        n = report["points"]
        lines.append(f"[green]✓[/] every comparison agrees at {n:,} point{'s' if n != 1 else ''}")
    else:
        lines.append(f"[bold red]✗[/] {total:,} disagreement{'s' if total != 1 else ''}")
    return lines
