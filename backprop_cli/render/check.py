"""The `backprop check` report for people: one row per check, then the worst point. Numbers
follow the --digits setting; two numbers that differ get the digits that tell them apart."""

from __future__ import annotations

from typing import Any

from .gradient import Column, Fitted, error, telling
from .numbers import number, plural

_NAMES = {
    "torch": "torch autograd",
    "finite_difference": "finite differences",
    "symbolic": "SymPy, evaluated exactly",
}


def _point(point: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} = {number(v) if isinstance(v, (int, float)) else v}" for name, v in point.items()
    )


def _value(x: Any, n: int | None) -> str:
    return number(x, n) if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def check_table(report: dict[str, Any]) -> Any:
    """The table of checks; it stacks (a block per check) where the terminal is narrow."""
    from rich.text import Text

    where = (
        f"{plural(report['points'], 'random point')} in "
        f"[{number(report['range'][0])}, {number(report['range'][1])}] (seed {report['seed']})"
        if report["source"] == "random"
        else f"{plural(report['points'], 'point')} from {report['source']}"
    )
    columns = [
        Column("check", head=True),
        Column("compared", justify="right", whole=True),
        Column("agree", justify="right", whole=True),
        Column("disagree", justify="right", whole=True),
        Column("not compared"),
        Column("max error", justify="right", whole=True),
    ]
    rows: list[list[Any] | None] = []
    for check, summary in report["checks"].items():
        if summary["skipped"]:
            rows.append([_NAMES[check], "", "", "", f"skipped ({summary['skipped']})", ""])
            continue
        others = ", ".join(f"{n:,} {status}" for status, n in summary["not_compared"].items())
        rows.append(
            [
                _NAMES[check],
                f"{summary['compared']:,}",
                f"{summary['agree']:,}",
                Text(
                    f"{summary['mismatches']:,}", style="bold red" if summary["mismatches"] else ""
                ),
                others,
                error(summary["max_error"]) if summary["max_error"] is not None else "—",
            ]
        )
    return Fitted(where[0].upper() + where[1:], columns, rows)


def check_heading(report: dict[str, Any]) -> str:
    return f"gradient check of {report['expression']}"


def check_lines(report: dict[str, Any]) -> list[str]:
    """The worst point, the first disagreements and the verdict (Rich markup)."""
    lines = []
    worst = report["worst"]
    if worst is not None:
        n = telling((worst["engine"], worst["other"]))
        lines.append(
            f"worst point: {_point(worst['point'])}: ∂/∂{worst['partial']} engine "
            f"{_value(worst['engine'], n)} vs {_NAMES[worst['check']]} {_value(worst['other'], n)}"
            + (f" ({worst['status']})" if worst["status"] != "ok" else "")
        )
    for m in report["mismatches"][:5]:
        what = f"∂/∂{m['partial']}" if m["partial"] else "a node's value or gradient"
        n = telling((m["engine"], m["other"]))
        lines.append(
            f"[bold red]✗[/] {_NAMES[m['check']]} disagrees at {_point(m['point'])}: {what}: "
            f"engine {_value(m['engine'], n)} vs {_value(m['other'], n)}"
        )
    total = sum(s["mismatches"] for s in report["checks"].values())
    if report["ok"]:
        lines.append(f"[green]✓[/] every comparison agrees at {plural(report['points'], 'point')}")
    else:
        lines.append(f"[bold red]✗[/] {plural(total, 'disagreement')}")
    return lines
