"""Values and gradients over data that does not fit one machine: `bp.compile` mapped over the
partitions of a Dask DataFrame (or the rows of a 2-D Dask array), one row per point, with the
columns `grad --points` writes. Dask is imported when `gradients` is first called."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .api import Compiled, _errors, _limits, _point, _program, _warn, _wrt
from .core.errors import InputError
from .core.parse import DEFAULT_LIMITS, Program

INSTALL = 'pip install "backprop-cli[dask]"'
CALL_ROWS = 1 << 20  # rows of a partition per call of the compiled function


def gradients(
    data: Any,
    expr: str | Program | os.PathLike[str],
    values: Mapping[str, Any] | None = None,
    /,
    *,
    wrt: str | list[str] | None = None,
    columns: Sequence[str] | None = None,
    allow_nonfinite: bool = False,
    max_length: int = DEFAULT_LIMITS.max_length,
    **named: Any,
) -> Any:
    """The value and gradient of `expr` at every row of `data`, lazily: a Dask DataFrame with
    `data`'s columns, then the fixed values (`values` or keywords, as NAME=VALUE on the
    command line), `value` and `d_<var>` for each variable of `wrt` (all by default); an
    array-shaped value `W` gives the columns `W[0,0]`, `W[0,1]`, … and `d_W[0,0]`, …

        >>> import dask.dataframe as dd, pandas as pd
        >>> ddf = dd.from_pandas(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), npartitions=2)
        >>> out = bp.dask.gradients(ddf, "w*x*x", w=0.5)
        >>> print(out.compute())
             x    w  value  d_w  d_x
        0  1.0  0.5    0.5  1.0  1.0
        1  2.0  0.5    2.0  4.0  2.0
        2  3.0  0.5    4.5  9.0  3.0

    `data` may also be a 2-D Dask array of numbers, its columns named by `columns`. Bad
    input (a missing or non-numeric column, a parse error) raises here; a nan or inf in a
    variable's column raises InputError when that partition is computed, unless
    `allow_nonfinite`."""
    dd = _dask_dataframe()
    with _errors():
        program = _program(expr, _limits(allow_nonfinite, max_length))
        graph = program.graph
        fixed = _point(values, named, allow_nonfinite)
        unused = [n for n in fixed if n not in graph.variables]
        fixed = {n: v for n, v in fixed.items() if n in graph.variables}
        frame = _frame(data, columns, dd)
        needed = _needed(graph.variables, fixed, list(frame.columns))
        _check_numeric(frame, needed)
        compiled = Compiled(program, {n: np.shape(v) for n, v in fixed.items()})
        chosen = _chosen(list(graph.variables), _wrt(wrt))
        added = _added_columns(compiled, fixed, chosen)
        _check_unique([*frame.columns, *added])
    _warn(
        [*program.warnings]
        + [f"a value was given for '{n}', but the expression does not use it" for n in unused]
    )
    meta = _meta(frame, added, dd)
    return frame.map_partitions(
        _partition, compiled, needed, fixed, chosen, allow_nonfinite, meta=meta
    )


def _dask_dataframe() -> Any:
    try:
        import dask.dataframe as dd
    except ImportError:
        raise InputError(
            "bp.dask needs Dask's DataFrames, which are not installed", hint=INSTALL
        ) from None
    return dd


def _frame(data: Any, columns: Sequence[str] | None, dd: Any) -> Any:
    """A Dask DataFrame of the points: `data` itself, or a 2-D Dask array with its columns
    named."""
    import dask.array as da

    if isinstance(data, dd.DataFrame):
        if columns is not None:
            raise InputError("columns names a Dask array's columns; a DataFrame has its own")
        return data
    if isinstance(data, da.Array):
        if data.ndim != 2:
            raise InputError(
                f"a Dask array of points has one row per point and one column per name "
                f"(2 axes), not {data.ndim}"
            )
        if columns is None or isinstance(columns, str):
            raise InputError(
                "a Dask array's columns need names: pass columns=[...], one per column",
                hint='e.g. columns=["x", "y"]',
            )
        names = [str(c) for c in columns]
        if len(names) != data.shape[1]:
            raise InputError(
                f"columns names {len(names)} columns, but the array has {data.shape[1]}"
            )
        _check_unique(names)
        if data.dtype.kind not in "iuf":
            raise InputError(f"the array holds {data.dtype}, not numbers")
        return dd.from_dask_array(data, columns=names)
    hint = None
    if type(data).__module__.split(".")[0] == "pandas":
        hint = "make it a Dask DataFrame: dask.dataframe.from_pandas(df, npartitions=4)"
    raise InputError(
        f"the data must be a Dask DataFrame or a 2-D Dask array, not {type(data).__name__}",
        hint=hint,
    )


def _needed(variables: Mapping[str, int], fixed: Mapping[str, Any], names: list[Any]) -> list[str]:
    """The variables each row gives: those without a fixed value, each a column."""
    both = [n for n in variables if n in fixed and n in names]
    if both:
        raise InputError(
            f"{both[0]} is given both as a column of the data and as a value: drop one"
        )
    needed = [n for n in variables if n not in fixed]
    if not needed:
        raise InputError(
            "every variable has a value, so the rows have nothing to vary",
            hint="drop the values of the variables the data gives",
        )
    missing = [n for n in needed if n not in names]
    if missing:
        raise InputError(
            f"the data has no column for {', '.join(missing)}",
            hint=f"add the column, or give a value for {missing[0]} (the same for every row)",
        )
    return needed


def _check_numeric(frame: Any, needed: list[str]) -> None:
    """A variable's column holds numbers: integers or floats (nullable ones included), not
    booleans, text, dates or categories."""
    import pandas as pd

    for name in needed:
        dtype = frame.dtypes[name]
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        if not numeric or pd.api.types.is_complex_dtype(dtype):
            raise InputError(
                f"column {name} holds {dtype}, not numbers: a variable's column must be "
                "integers or floats"
            )


def _chosen(variables: list[str], wrt: list[str] | None) -> list[str]:
    if wrt is None:
        return variables
    if not wrt:
        raise InputError("wrt names no variable", hint='e.g. wrt=["x", "y"]')
    unknown = [n for n in wrt if n not in variables]
    if unknown:
        raise InputError(
            f"wrt names {', '.join(unknown)}, which the expression does not use "
            f"(its variables: {', '.join(variables) or 'none'})"
        )
    return list(dict.fromkeys(wrt))


def _element_names(name: str, shape: tuple[int, ...]) -> list[str]:
    from .core import shapes

    return [shapes.element_name(name, i) for i in shapes.elements(shape)]


def _added_columns(compiled: Any, fixed: Mapping[str, Any], chosen: list[str]) -> list[str]:
    """The columns after the data's, as `grad --points` writes them: the fixed values (by
    name), value, then d_<var> in the order of `chosen`; arrays element by element."""
    found = [c for n in sorted(fixed) for c in _element_names(n, compiled.shapes[n])]
    found.append("value")
    for name in chosen:
        found += _element_names(f"d_{name}", compiled.shapes[name])
    return found


def _check_unique(names: list[Any]) -> None:
    seen: set[Any] = set()
    for name in names:
        if name in seen:
            raise InputError(
                f"the output would have two columns called {name!r}: rename that column"
            )
        seen.add(name)


def _meta(frame: Any, added: list[str], dd: Any) -> Any:
    """The result's empty frame: the data's columns and dtypes, then float64 columns."""
    import pandas as pd

    empty = dd.utils.make_meta(frame)
    extra = pd.DataFrame({c: np.empty(0) for c in added}, index=empty.index)
    return pd.concat([empty, extra], axis=1)


def _partition(
    df: Any,
    compiled: Any,
    needed: list[str],
    fixed: Mapping[str, Any],
    chosen: list[str],
    allow_nonfinite: bool,
    partition_info: Mapping[str, Any] | None = None,
) -> Any:
    """One partition's rows with their values and gradients (on a worker)."""
    import pandas as pd

    where = "" if partition_info is None else f" of partition {partition_info['number']}"
    columns = {}
    for name in needed:
        column = df[name].to_numpy(dtype=np.float64, na_value=np.nan)
        if not allow_nonfinite:
            _check_finite(name, column, df.index, where)
        columns[name] = column
    n = len(df)
    value, grads = _sweep(compiled, columns, fixed, n, chosen)
    added: dict[str, np.ndarray] = {}
    for name in sorted(fixed):
        flat = np.reshape(fixed[name], -1)
        for j, col in enumerate(_element_names(name, compiled.shapes[name])):
            added[col] = np.full(n, flat[j])
    added["value"] = value
    for name in chosen:
        for j, col in enumerate(_element_names(f"d_{name}", compiled.shapes[name])):
            added[col] = grads[name][:, j]
    return pd.concat([df, pd.DataFrame(added, index=df.index)], axis=1)


def _sweep(
    compiled: Any,
    columns: dict[str, np.ndarray],
    fixed: Mapping[str, Any],
    n: int,
    chosen: list[str],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The value (n,) and each chosen gradient (n, its elements), CALL_ROWS rows per call of
    the compiled function: a partition may hold more points than one call may return."""
    size = {k: int(np.prod(compiled.shapes[k])) for k in chosen}
    values: list[np.ndarray] = []
    grads: dict[str, list[np.ndarray]] = {k: [] for k in chosen}
    for start in range(0, max(n, 1), CALL_ROWS):
        part = slice(start, min(n, start + CALL_ROWS))
        value, found = compiled(**{k: c[part] for k, c in columns.items()}, **fixed)
        m = part.stop - part.start
        values.append(np.reshape(value, (m,)))
        for k in chosen:
            grads[k].append(np.reshape(found[k], (m, size[k])))
    if len(values) == 1:
        return values[0], {k: g[0] for k, g in grads.items()}
    return np.concatenate(values), {k: np.concatenate(g) for k, g in grads.items()}


def _check_finite(name: str, column: np.ndarray, index: Any, where: str) -> None:
    bad = np.flatnonzero(~np.isfinite(column))
    if bad.size:
        k = int(bad[0])
        word = "nan" if np.isnan(column[k]) else str(column[k])
        label = index[k].item() if hasattr(index[k], "item") else index[k]
        raise InputError(
            f"column {name} holds {word} at row {label!r}{where}; pass "
            "allow_nonfinite=True to give nan or inf"
        )
