"""What the user hands over: programs from arguments, files or stdin, NAME=VALUE bindings,
training data, initial parameters and prediction points, each checked, each error a
BackpropError that says what and where."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from .errors import BackpropError
from .parse import Limits, Program, parse_binding, parse_program
from .shapes import MAX_TOTAL_ELEMENTS


def open_text(path: str, what: str) -> Any:
    """A file or stdin ('-') as UTF-8 text to read line by line; bytes that are not UTF-8
    become U+FFFD (so the row they are in is reported, not the whole run lost)."""
    import io

    try:
        raw = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise BackpropError(f"cannot read {what}: {exc.strerror or exc}") from None
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
    if path == "-":
        stream.close = lambda: None  # type: ignore[method-assign]  # leave stdin open
    return stream


def read_text(path: str, what: str, limit: int) -> str:
    """Read a program from a file or stdin ('-'), refusing oversize input without reading it
    all: a UTF-8 character is at most 4 bytes, so more than 4·limit bytes is too long."""
    most = 4 * limit + 4
    chunks: list[bytes] = []
    size = 0
    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        try:
            while size <= most:
                chunk = stream.read(min(1 << 20, most + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            if path != "-":
                stream.close()
    except OSError as exc:
        raise BackpropError(f"cannot read {what}: {exc.strerror or exc}") from None
    too_long = BackpropError(
        f"{what} is longer than {limit:,} characters",
        hint="raise the limit with --max-length if you really mean it",
    )
    if size > most:
        raise too_long
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BackpropError(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    if len(text) > limit:
        raise too_long
    return text


def load_program(
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
            raise BackpropError(f"{name} is given twice ({name}={point[name]!r} and {arg!r})")
        point[name] = value
        held = sum(int(np.size(v)) for v in point.values())
        if held > MAX_TOTAL_ELEMENTS:  # each value is bounded; together they are too
            raise BackpropError(
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

    from .data import read_values
    from .parse import parse_constant

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
    unknown = [name for name in given if name not in built.params]
    if unknown:
        raise BackpropError(
            f"--init names {', '.join(unknown)}, which the model does not have "
            f"(its parameters: {', '.join(built.params)})"
        )
    merged = dataclasses.replace(built, init={**built.init, **given})
    _check_init_shapes(merged, built.init, given)
    return merged


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

    from . import shapes
    from .errors import ParseError

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
