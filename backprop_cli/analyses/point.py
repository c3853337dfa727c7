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
        hint = f"give {'them' if len(missing) > 1 else 'it'} as {example}"
        # X=3 for x: names are case-sensitive, and the value given is the likely slip
        other_case = {
            name: given
            for name in missing
            for given in point
            if given not in graph.variables and given.lower() == name.lower()
        }
        if other_case:
            given_as = ", ".join(f"{g}={_shown(point[g])}" for g in other_case.values())
            meant = " ".join(f"{n}={_shown(point[g])}" for n, g in other_case.items())
            verb = "were" if len(other_case) > 1 else "was"
            hint = f"{given_as} {verb} given, but names are case-sensitive: write {meant}"
            rest = [f"{name}=…" for name in missing if name not in other_case]
            if rest:
                hint += f", and give {' '.join(rest)}"
        raise BackpropError(
            f"missing value{'s' if len(missing) > 1 else ''} for {listed}",
            hint=hint,
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


def _shown(value: object) -> str:
    """A given value as it was likely typed: 3 for 3.0, 2.5, pi's digits; an array as [...]."""
    if getattr(value, "ndim", 0) != 0:
        return "[…]"
    number = float(value)  # type: ignore[arg-type]
    short = f"{number:g}"
    return short if float(short) == number else repr(number)


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
