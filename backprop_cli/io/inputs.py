"""What the user hands over: programs from arguments, files or stdin, model specs
(`linear`, `mlp:2-3-1`, ... expanded by core.specs), NAME=VALUE bindings, training data,
initial parameters and prediction points, each checked, each error a BackpropError that
says what and where."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import specs
from ..core.errors import BackpropError, LimitError, visible
from ..core.parse import Limits, Program, parse_binding, parse_program
from ..core.shapes import MAX_TOTAL_ELEMENTS
from .files import read_text


@dataclass(frozen=True)
class ModelOptions:
    """How a model spec given where an expression goes is expanded and started. None: not
    given on the command line (the defaults: the spec's loss, the named form, seed 0)."""

    loss: str | None = None
    form: str | None = None
    seed: int | None = None
    init: str | None = None  # name=value pairs or a JSON file, as train's --init
    fill: bool = True  # start the parameters without a value from the model's initialisation


def load_program(
    expression: str | None,
    values: list[str],
    file: str | None,
    limits: Limits,
    model: ModelOptions | None = None,
) -> tuple[Program, list[str]]:
    """The program of an expression, a program file, stdin or a model spec (expanded with
    `model`'s loss and form), and the arguments left over (the NAME=VALUE values)."""
    program, rest, _ = load_model(expression, values, file, limits, model or ModelOptions())
    return program, rest


def load_model(
    expression: str | None,
    values: list[str],
    file: str | None,
    limits: Limits,
    model: ModelOptions,
) -> tuple[Program, list[str], specs.Expansion | None]:
    """load_program, with the spec's expansion (None for anything but a spec)."""
    if file is None and expression is not None and not specs.is_spec(expression):
        specs.refuse_a_mistyped_spec(expression)
    if file is None and specs.is_spec(expression):
        assert expression is not None
        expansion = specs.expand(
            expression,
            loss=model.loss,
            form=model.form or "named",
            max_length=limits.max_length,
        )
        what = expansion.spec.shown
        return parse_program(expansion.text, limits=limits, what=what), values, expansion
    program, rest = _load_source(expression, values, file, limits)
    if model.init is not None:
        raise BackpropError(
            "--init starts a model spec's parameters; the program is not a model spec",
            hint="give an expression's values as NAME=VALUE or --values FILE.json",
        )
    for option, value in (("--loss", model.loss), ("--form", model.form)):
        if value is not None:
            program.warnings.append(f"{option} does nothing: the program is not a model spec")
    if model.seed is not None and model.fill:
        program.warnings.append("--seed does nothing: the program is not a model spec")
    return program, rest, None


def spec_point(
    program: Program,
    expansion: specs.Expansion,
    point: dict[str, Any],
    model: ModelOptions,
) -> dict[str, Any]:
    """The point with the spec's parameters: NAME=VALUE (and --values) first, then --init,
    then, unless `model.fill` is off, the model's initialisation, said in a warning that
    names them and the seed (it goes to stderr and the JSON's warnings). The data's shapes
    are checked (check_data_shapes) before anything is said."""
    given = read_init(model.init, list(expansion.params)) if model.init is not None else {}
    merged = {**given, **point}
    check_data_shapes(expansion, merged)
    if not model.fill:
        return merged
    missing = [p for p in expansion.params if p not in merged]
    if not missing:
        return merged
    seed = model.seed if model.seed is not None else 0
    start = expansion.initial(seed)
    merged.update({p: start[p] for p in missing})
    program.warnings.append(_init_note(expansion, missing, start, seed))
    return merged


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in np.shape(value))


def _show_shape(shape: tuple[int, ...]) -> str:
    from ..core.shapes import show

    return show(shape)


def check_data_shapes(expansion: specs.Expansion, point: dict[str, Any]) -> None:
    """Refuse inputs and targets whose shapes would broadcast to a wrong loss.

    The matrix form: X is N × N0 (one row per sample) and the target is y of shape (N,),
    or Y of shape (N, K) for K outputs. The named form is elementwise: every input and
    target is a number or an array of one shape shared by all that are arrays (numbers
    broadcast to every sample; arrays of different shapes would pair the wrong samples).
    Values not given are left to the missing-variable error."""
    spec = expansion.spec
    if expansion.form == "matrix":
        if specs.MATRIX not in point:
            return
        x = _shape(point[specs.MATRIX])
        n0 = spec.sizes[0]
        if len(x) != 2 or x[1] != n0:
            raise BackpropError(
                f"{spec.shown} --form matrix: X must be N × {n0} (one row of {n0} input"
                f"{'s' if n0 > 1 else ''} per sample), not {_show_shape(x)}"
            )
        k = spec.sizes[-1]
        target = expansion.targets[0]
        if target not in point:
            return
        y = _shape(point[target])
        want = (x[0],) if k == 1 else (x[0], k)
        if y != want:
            raise BackpropError(
                f"{spec.shown} --form matrix: X is {_show_shape(x)}, so the target {target} "
                f"must be {_show_shape(want)}, not {_show_shape(y)}"
            )
        return
    arrays = {
        name: _shape(point[name])
        for name in (*expansion.inputs, *expansion.targets)
        if name in point and np.ndim(point[name])
    }
    if len(set(arrays.values())) > 1:
        shapes = ", ".join(f"{name} {_show_shape(shape)}" for name, shape in arrays.items())
        raise BackpropError(
            f"{spec.shown}: the inputs and targets are one sample each or arrays of one "
            f"shape, elementwise; they are {shapes}"
        )


_NOTE_SHOWN = 12  # parameters whose starts the note shows


def _init_note(
    expansion: specs.Expansion, missing: list[str], start: dict[str, Any], seed: int
) -> str:
    def shown(name: str) -> str:
        value = start[name]
        if np.ndim(value):
            return f"{name} ({'×'.join(map(str, np.shape(value)))})"
        return f"{name}={float(value):.4g}"

    items = ", ".join(shown(p) for p in missing[:_NOTE_SHOWN])
    if len(missing) > _NOTE_SHOWN:
        items += f", … ({len(missing) - _NOTE_SHOWN:,} more)"
    if expansion.spec.kind == "mlp":
        about = f"uniform in ±1/sqrt(fan_in) as nn.Linear, --seed {seed}"
    else:
        about = f"as backprop train starts {expansion.spec.kind}"
    count = f"{len(missing)} parameters start" if len(missing) > 1 else "1 parameter starts"
    return (
        f"{expansion.spec.shown}: {count} from the model's initialisation ({about}): {items}; "
        "give values as NAME=VALUE, --values or --init"
    )


def program_listing(program: Program, expansion: specs.Expansion | None) -> str:
    """--show-program: the program as text (a spec's expansion under one comment line),
    which `--file` reads back."""
    if expansion is None:
        return program.graph.source.rstrip("\n") + "\n"
    inputs = ", ".join(expansion.inputs)
    targets = ", ".join(expansion.targets)
    count = len(expansion.params)
    head = (
        f"# {expansion.spec.text} --loss {expansion.loss} --form {expansion.form}: "
        f"input{'s' if len(expansion.inputs) > 1 else ''} {inputs}; "
        f"target{'s' if len(expansion.targets) > 1 else ''} {targets}; "
        f"{count} parameter{'s' if count > 1 else ''}"
    )
    return f"{head}\n{expansion.text}\n"


def _load_source(
    expression: str | None, values: list[str], file: str | None, limits: Limits
) -> tuple[Program, list[str]]:
    if file is not None:
        if expression is not None:
            values = [expression, *values]
        what = "stdin" if file == "-" else file
        source = read_text(file, what, limits.max_length)
    elif expression is None:
        raise BackpropError("missing the expression", hint='backprop grad "(x+y)*z" x=-2 y=5 z=-4')
    elif expression == "-":
        what = "stdin"
        source = read_text("-", what, limits.max_length)
    elif expression.endswith(".bp") and "\n" not in expression:
        what = expression  # a program file named where the expression goes
        if not os.path.isfile(expression):
            raise BackpropError(f"cannot read {what}: no such file")
        source = read_text(expression, what, limits.max_length)
    else:
        what = "expression"
        source = expression
    return parse_program(source, limits=limits, what=what), values


def parse_values(args: list[str], limits: Limits, warnings: list[str]) -> dict[str, float]:
    point: dict[str, float] = {}
    for arg in args:
        if arg.startswith("-") and "=" not in arg:
            raise BackpropError(
                f"unexpected argument {arg!r}: not an option of this command, nor NAME=VALUE",
                hint="see the command's --help",
            )
        name, value = parse_binding(arg, limits=limits, warnings=warnings)
        if name in point:
            raise BackpropError(f"{name} is given twice (the second time as {visible(arg)})")
        point[name] = value
        held = sum(int(np.size(v)) for v in point.values())
        if held > MAX_TOTAL_ELEMENTS:  # each value is bounded; together they are too
            raise LimitError(
                f"the values hold {held:,} elements in all, more than {MAX_TOTAL_ELEMENTS:,}",
                hint="use smaller arrays",
            )
    return point


def init_is_file(init: str) -> bool:
    """`--init` names a file when it has no '=', or is written as a path (./w=1, /tmp/p,
    p.json); otherwise it is name=value pairs, whatever files exist (`--init w=1` never
    reads a file called w=1)."""
    return "=" not in init or init.startswith(("./", "../", "/")) or init.endswith(".json")


def with_init(built: Any, init: str) -> Any:
    import dataclasses

    given = read_init(init, built.params)
    merged = dataclasses.replace(built, init={**built.init, **given})
    _check_init_shapes(merged, built.init, given)
    return merged


def read_init(init: str, params: list[str]) -> dict[str, Any]:
    """--init's values (name=value pairs or a JSON file), each naming one of `params`."""
    from ..core.parse import parse_constant
    from .data import read_values

    if init_is_file(init):
        given = read_values(init, "--init")
    else:
        given = {}
        for item in _items(init):
            name, sep, text = item.partition("=")
            if not sep or not name.strip():
                raise BackpropError(f"--init: expected name=value, got {item!r}")
            if name.strip() in given:
                raise BackpropError(f"--init names {name.strip()} twice")
            try:
                given[name.strip()] = parse_constant(text, what=f"--init value for {name.strip()}")
            except BackpropError as exc:
                if os.path.exists(init):  # `--init run=1/params` meant the file
                    exc.hint = f"to read the file {init!r}, write it as ./{init}"
                raise
    unknown = [name for name in given if name not in params]
    if unknown:
        raise BackpropError(
            f"--init names {', '.join(unknown)}, which the model does not have "
            f"(its parameters: {', '.join(params)})"
        )
    return given


def _items(text: str) -> list[str]:
    """`w=[1,2],b=0` → ['w=[1,2]', 'b=0']: commas inside brackets belong to the value."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return items


PROBE_SAMPLES = 7919  # a batch size no parameter's shape will match by chance


def _check_init_shapes(merged: Any, defaults: dict[str, Any], given: dict[str, Any]) -> None:
    """Every sample's loss must stay one number with the parameters given."""
    import numpy as np

    from ..core import shapes
    from ..core.errors import ParseError

    inputs: dict[str, tuple[int, ...]] = {
        name: tuple(np.shape(v)) for name, v in merged.init.items() if name in merged.params
    }
    if merged.matrix is not None:
        inputs[merged.matrix] = (PROBE_SAMPLES, len(merged.features))
    else:
        inputs.update({f: (PROBE_SAMPLES,) for f in merged.features})
    inputs[merged.target] = (PROBE_SAMPLES,)
    try:
        found = shapes.infer(merged.graph, inputs, what="model", budget=False)
        fits = found[merged.graph.output] in ((), (PROBE_SAMPLES,))
    except ParseError:
        fits = False
    if fits:
        return
    changed = [
        f"{name}: given {shapes.show(tuple(np.shape(given[name])))}, the model's is "
        f"{shapes.show(tuple(np.shape(defaults[name])))}"
        for name in given
        if np.shape(given[name]) != np.shape(defaults[name])
    ]
    raise BackpropError(
        "--init: the parameters' shapes do not fit the model"
        + (f" ({'; '.join(changed)})" if changed else "")
    )


def predict_points(text: str | None, built: Any) -> list[dict[str, float]]:
    from .data import number

    if text is None:
        return []
    if "=" in text:
        point = {}
        for item in text.split(","):
            name, _, value = item.partition("=")
            if name.strip() in point:
                raise BackpropError(f"--predict names {name.strip()} twice")
            point[name.strip()] = number(value, f"--predict {name.strip()}")
        missing = [f for f in built.features if f not in point]
        if missing or set(point) - set(built.features):
            raise BackpropError(f"--predict needs exactly the inputs {', '.join(built.features)}")
        return [point]
    if len(built.features) != 1:
        raise BackpropError(
            f"--predict: the model has {len(built.features)} inputs; "
            "give them as name=value,name=value"
        )
    return [
        {built.features[0]: number(item, "--predict")} for item in text.split(",") if item.strip()
    ]


def check_writable(path: str, option: str) -> None:
    from .files import check_target

    try:
        check_target(path)
    except BackpropError as exc:
        raise BackpropError(f"{option} {exc.message}") from None
