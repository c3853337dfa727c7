"""`backprop codegen`: the backward pass as readable source code (Python, NumPy, PyTorch, JAX
or C), generated from the graph, and with --check run and compared with the engine."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..core.errors import BackpropError, InputError
from ..core.parse import DEFAULT_LIMITS, Limits
from .common import (
    _Expression,
    _fail,
    _File,
    _Form,
    _form,
    _Init,
    _load,
    _Loss,
    _MaxLength,
    _ModelSeed,
    _names,
    _output,
    _show_program,
    _ShowProgram,
    _stderr,
    _Values,
    _ValuesFile,
    _Wrt,
)
from .output import Output

EXIT_DISAGREE = 1


class Target(str, Enum):
    python = "python"
    numpy = "numpy"
    torch = "torch"
    jax = "jax"
    c = "c"


CODEGEN_EXAMPLES = """\
[bold]Examples[/bold]

  Python: def f_and_grad(x, y, z) returning f, (d_x, d_y, d_z):
    backprop codegen "(x+y)*z"

  NumPy, two of the gradients only:
    backprop codegen examples/chain_rule_network.bp --target numpy --wrt w11

  PyTorch tensor ops, no autograd:
    backprop codegen mlp:2-3-1 --target torch

  JAX, and a C99 function:
    backprop codegen "sum(W @ x)" --target jax
    backprop codegen "(x+y)*z" --target c -o f.c

  Run the code at 20 random points and compare it with the engine:
    backprop codegen "1/(1+exp(-(w*x+b)))" --target numpy --check
"""


def codegen(
    expression: _Expression = None,
    values: _Values = None,
    file: _File = None,
    values_file: _ValuesFile = None,
    target: Annotated[
        Target | None,
        typer.Option(
            "--target",
            help="python (the math module, numbers), numpy, torch, jax (arrays) or c (C99, "
            "numbers). Default: python, or c for -o FILE.c.",
            show_default=False,
        ),
    ] = None,
    wrt: _Wrt = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            metavar="NAME",
            help="The function's name (default f_and_grad; f_and_tangent with "
            "--forward-mode, f_grad_and_hessian with --hessian).",
            show_default=False,
        ),
    ] = None,
    forward_mode: Annotated[
        bool,
        typer.Option(
            "--forward-mode",
            help="The forward-mode (tangent) code: f_and_tangent(*variables, *tangents) "
            "returns the value and the derivative along the tangents.",
        ),
    ] = False,
    hessian: Annotated[
        bool,
        typer.Option(
            "--hessian",
            help="Forward over reverse: the value, the gradient and the Hessian's rows "
            "(scalar variables).",
        ),
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Run the code at 20 random points (the given values first) and compare "
            "its value and derivatives with the engine's; exit 1 if they disagree.",
        ),
    ] = False,
    output: Output = None,
    max_length: _MaxLength = DEFAULT_LIMITS.max_length,
    loss: _Loss = None,
    form: _Form = None,
    seed: _ModelSeed = None,
    init: _Init = None,
    show_program: _ShowProgram = False,
) -> None:
    """Generate the code of the backward pass from the graph: one statement per node
    forward with the program's names (q = x + y), then the reverse sweep, one statement per
    wire, adjoints d_q accumulated with += on fan-out, each with a comment naming its rule.
    Kinks and ties follow torch, as the engine does. The code imports only its own library.

    Exit codes: 0 done (with --check: the code agrees), 1 --check found a disagreement,
    2 bad usage or bad input."""
    from .. import api
    from ..io.inputs import ModelOptions
    from . import output as out

    limits = Limits(max_length=max_length)
    fill = bool(values) or values_file is not None or init is not None
    model = ModelOptions(loss=loss, form=_form(form), seed=seed, init=init, fill=fill)
    if show_program:
        _show_program(expression, file, limits, model)
        return
    try:
        chosen = _target(target, output)
        if output is not None and output != "-":
            out.refuse(output, [("the program", expression), ("--file", file),
                                ("--values", values_file)])  # fmt: skip
            from ..io.files import check_target

            check_target(output)
        program, point, _ = _load(expression, values, file, values_file, limits, model, "codegen")
        source, built = api.generate(program, chosen, _names(wrt), name, forward_mode, hessian)
        agreement = None
        if check:
            agreement = api.check_generated(program, source, built, chosen, point)
        with _output():
            out.write(output, source)
    except BackpropError as exc:
        _fail(exc)
    if output is not None and output != "-":
        _stderr(f"wrote {output}")
    if agreement is not None:
        _report(chosen, agreement)


def _target(target: Target | None, output: str | None) -> str:
    if target is not None:
        return target.value
    if output is not None and output != "-":
        suffix = Path(output).suffix.lower()
        if suffix in (".c", ".h"):
            return "c"
        if suffix not in (".py", ".txt", ""):
            raise InputError(
                f"-o {output}: cannot tell the target from the extension",
                hint="give --target (python, numpy, torch, jax, c), or end the file in .py or .c",
            )
    return "python"


def _report(target: str, agreement: object) -> None:
    from ..checks.generated import Agreement

    assert isinstance(agreement, Agreement)
    if agreement.ok:
        notes = []
        if agreement.skipped:
            notes.append(f"{agreement.skipped} skipped: the engine's numbers are not finite")
        if agreement.raised:
            notes.append(f"{agreement.raised} where Python's math raised on an inf or nan")
        skipped = f" ({'; '.join(notes)})" if notes else ""
        _stderr(
            f"check: the {target} code agrees with the engine at {agreement.points} points"
            f"{skipped}; largest relative difference {agreement.worst:.1e}"
        )
        return
    if not agreement.failures:
        tried = agreement.skipped + agreement.raised
        if agreement.raised:
            _stderr(f"check failed: at {agreement.raised} of the {tried} points tried Python's "
                    "math raised on an inf or nan inside the sweep, and the others are not "
                    "finite")  # fmt: skip
            _stderr("hint: the numpy and c targets follow IEEE arithmetic, as the engine does")
        else:
            _stderr(f"check failed: no point of the {tried} tried had finite numbers")
            _stderr("hint: give values where the function is defined, e.g. x=3")
    for failure in agreement.failures[:5]:
        _stderr(f"check failed: {failure}")
    raise typer.Exit(EXIT_DISAGREE)


def register(app: typer.Typer) -> None:
    app.command(context_settings={"ignore_unknown_options": True}, epilog=CODEGEN_EXAMPLES)(codegen)
