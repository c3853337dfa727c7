"""What a point and --wrt must be before anything is computed: a value for every variable
(values the expression does not use are warnings), and --wrt naming only its variables."""

from __future__ import annotations

from ..core.errors import BackpropError
from ..core.graph import Graph


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
