"""What the public functions return: plain-data reports (the CLI's JSON schema) wrapped with
attributes for Python and the display methods Jupyter looks for (`_repr_html_`,
`_repr_svg_`, `_repr_markdown_`, `_repr_latex_`). Display code comes from the renderers,
and heavy libraries (SymPy, Graphviz, matplotlib) are reached only when asked for."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .core.graph import Graph
from .core.parse import Program


def _array(value: Any) -> Any:
    """A report's number stays a float; nested lists become a float64 numpy array."""
    if isinstance(value, list):
        return np.array(value, dtype=np.float64)
    return value


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape})" if value.size > 6 else repr(value.tolist())
    return repr(value)


def _json_round_trip(report: dict[str, Any], kind: str) -> dict[str, Any]:
    """Exactly what `--format json` prints, as Python objects."""
    from .render.gradient import to_json

    result: dict[str, Any] = json.loads(to_json(report, kind))
    return result


class _Report:
    """A result over one report dict: `to_dict()` is the CLI's `--format json`, whose first
    key, "schema", names the JSON Schema it follows (backprop-cli/<kind>/<major>)."""

    report: dict[str, Any]
    kind: str = ""  # grad, explain, jacobian, hessian, check, diff

    def to_dict(self) -> dict[str, Any]:
        """The report as `--format json` prints it (a fresh copy each time)."""
        return _json_round_trip(self.report, self.kind)

    def to_json(self) -> str:
        """The report as the JSON text `--format json` prints."""
        from .render.gradient import to_json

        return to_json(self.report, self.kind)

    @property
    def ok(self) -> bool:
        """True when every check that ran agreed."""
        return bool(self.report.get("ok"))

    @property
    def warnings(self) -> list[str]:
        """The warnings the CLI prints on stderr, as sentences."""
        return [w["message"] if isinstance(w, dict) else str(w) for w in self.report["warnings"]]


@dataclass(frozen=True)
class Node:
    """One node of the graph at the point: `id`, `label` (what the user wrote or named),
    `op` (the registry's name; "input" and "const" for leaves), `inputs` (node ids),
    `value` and `grad` (d output / d node; None where no gradient flows)::

        >>> bp.grad("(x+y)*z", x=-2, y=5, z=-4, torch=False).nodes[2]
        Node(id=2, label='x+y', op='add', inputs=[0, 1], value=3.0, grad=-4.0)
    """

    id: int
    label: str
    op: str
    inputs: tuple[int, ...]
    value: Any
    grad: Any
    name: str | None = None
    shape: tuple[int, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Node(id={self.id}, label={self.label!r}, op={self.op!r}, inputs={list(self.inputs)}, "
            f"value={_short(self.value)}, grad={_short(self.grad)})"
        )


@dataclass
class Partial:
    """One partial derivative of the output: `value` (the engine's), `text` (SymPy's formula as
    the report prints it), `formula` (the same as a SymPy expression, built on first use),
    the checks' numbers (`exact`, `torch`, `finite_difference`), `status` and `ok`::

        >>> p = bp.grad("x**2*y", x=3, y=2, torch=False).partials["x"]
        >>> p.value, p.text, p.formula
        (12.0, '2*x*y', 2*x*y)
    """

    element: str
    variable: str
    index: tuple[int, ...]
    value: float
    text: str | None
    exact: float | None
    torch: float | None
    finite_difference: float | None
    status: dict[str, str]
    ok: bool
    _graph: Graph = field(repr=False)
    _cores: list[tuple[int, ...]] = field(repr=False)
    _seed: Any = field(default=None, repr=False)
    _output: str = field(default="f", repr=False)
    _formula: Any = field(default=None, repr=False)

    @property
    def formula(self) -> Any:
        """∂output/∂element as a SymPy expression, built from the graph (never parsed from
        text) and simplified; constants appear as typed (0.1 as 1/10)."""
        if self._formula is None:
            from .checks.symbolic import partial_formula

            self._formula = partial_formula(
                self._graph, self.variable, self.index, self._cores, self._seed
            )
        return self._formula

    def _repr_latex_(self) -> str:
        from .checks.symbolic import to_latex, to_latex_name

        out, element = to_latex_name(self._output), to_latex_name(self.element)
        return f"$\\frac{{\\partial {out}}}{{\\partial {element}}} = {to_latex(self.formula)}$"

    def __repr__(self) -> str:
        return f"Partial({self.element}: {self.value!r} = {self.text or '?'}, ok={self.ok})"


class Picture:
    """The graph with values and gradients. In Jupyter it shows as SVG laid out by Graphviz
    when `dot` is installed; otherwise as the terminal's tree with a note. `dot` is the
    DOT text, `save(path)` writes .svg/.png/.pdf (or .dot)::

        >>> pic = bp.grad("(x+y)*z", x=-2, y=5, z=-4, torch=False).picture
        >>> pic.dot.startswith("digraph")
        True
    """

    def __init__(self, graph: Graph, point: dict[str, Any] | None, max_nodes: int = 200) -> None:
        from .render import picture as pictures

        self._pic = pictures.picture(graph, point, max_nodes)
        self._svg: str | None = None

    @property
    def dot(self) -> str:
        from .render.picture import to_dot

        return to_dot(self._pic)

    def svg(self) -> str:
        """The picture as SVG text (needs Graphviz's dot)."""
        if self._svg is None:
            from .render.picture import layout

            data, _ = layout(self._pic, "svg")
            self._svg = data.decode("utf-8")
        return self._svg

    def save(self, path: str) -> None:
        """Write the picture: .svg, .png or .pdf through Graphviz, .dot as text."""
        from .io.files import write_atomically
        from .render import picture as pictures

        if str(path).lower().endswith(".dot"):
            write_atomically(str(path), self.dot)
        else:
            pictures.render(self._pic, str(path))

    def _repr_svg_(self) -> str | None:
        """The SVG, or None (Jupyter then shows `_repr_html_`) without Graphviz or when the
        graph is too large for it to lay out in seconds."""
        import shutil

        from .core.errors import BackpropError

        if shutil.which("dot") is None:
            return None
        try:
            return self.svg()
        except BackpropError:
            return None

    def _repr_html_(self) -> str | None:
        """Without Graphviz: the graph as a text tree with a note (with it, the SVG shows)."""
        import shutil

        from .render.notebook import pre

        if shutil.which("dot") is None:
            return pre(self.text(), "Graphviz's dot is not installed: the graph as a tree")
        if self._repr_svg_() is not None:
            return None
        from .core.errors import BackpropError
        from .render.picture import check_layout

        try:
            check_layout(self._pic)
            note = "Graphviz could not draw this graph: the graph as a tree"
        except BackpropError as exc:
            note = f"{exc.message}: the graph as a tree"
        return pre(self.text(), note)

    def text(self) -> str:
        """The graph as the terminal's tree (plain text)."""
        from .render.notebook import tree_text

        return tree_text(self._pic)

    def __repr__(self) -> str:
        return f"Picture({len(self._pic.keep)} nodes)"


class GradResult(_Report):
    """`bp.grad`'s result: `value`, `grads` (variable → gradient), `nodes`, `partials`
    (element → Partial), `checks`, `ok`, `warnings`, `picture`, `to_dict()`::

        >>> r = bp.grad("(x+y)*z", x=-2, y=5, z=-4)
        >>> r
        GradResult(value=-12.0, grads={'x': -4.0, 'y': -4.0, 'z': 3.0}, ok=True)
        >>> r.checks["torch"]["ok"], r.to_dict()["gradient"]["z"]
        (True, 3.0)
    """

    kind = "grad"

    def __init__(
        self,
        report: dict[str, Any],
        program: Program,
        point: dict[str, Any],
        seed: Any = None,
        symbolic: bool = True,
    ) -> None:
        self.report = report
        self.program = program
        self._point = point
        self._seed = seed
        self._symbolic = symbolic  # whether SymPy was asked for (its formulas on the page)

    @property
    def value(self) -> Any:
        """The output's value: a float, or a numpy array for an array output."""
        return _array(self.report["value"])

    @property
    def grads(self) -> dict[str, Any]:
        """Variable name → d output / d variable (floats, or arrays of the variable's shape)."""
        return {k: _array(v) for k, v in self.report["gradient"].items()}

    @cached_property
    def nodes(self) -> list[Node]:
        return [
            Node(
                n["id"],
                n["label"],
                n["op"],
                tuple(n["inputs"]),
                _array(n["value"]),
                _array(n["grad"]),
                n["name"],
                tuple(n["shape"]),
            )
            for n in self.report["nodes"]
        ]

    @cached_property
    def partials(self) -> dict[str, Partial]:
        graph = self.program.graph
        cores = [tuple(n["shape"]) for n in self.report["nodes"]]
        return {
            p["element"]: Partial(
                p["element"],
                p["variable"],
                tuple(p["index"]),
                p["engine"],
                p.get("symbolic"),
                p.get("symbolic_value"),
                p.get("torch"),
                p.get("finite_difference"),
                dict(p.get("status", {})),
                bool(p.get("ok")),
                graph,
                cores,
                self._seed,
                graph.output_name(),
            )
            for p in self.report["partials"]
        }

    @property
    def checks(self) -> dict[str, Any]:
        """Each check's verdict: torch, finite_difference, symbolic (ok, max_error, ...)."""
        return copy.deepcopy(self.report["checks"])

    @cached_property
    def picture(self) -> Picture:
        return Picture(self.program.graph, self._point)

    def walk(self) -> dict[str, Any]:
        """The step-through of this point as plain data: the forward pass node by node, the
        reverse sweep's every += with the engine's numbers, each node's paths."""
        from .analyses.walk import walk

        return walk(
            self.program.graph,
            self._point,
            self._seed,
            formulas=self._symbolic,  # SymPy's local derivatives, unless it was left out
            dtype=self.report["dtype"],
        )

    def to_html(self, standalone: bool = True) -> str:
        """The page `backprop grad ... -o page.html` writes: the graph with a step-through,
        the nodes and the partials (formulas as MathML when computed with mathml=True, as
        the command does). standalone=False: one element for a notebook's output."""
        from .render import pages

        walked = self.walk()
        if standalone:
            return pages.grad_page(self.report, walked)
        return pages.grad_fragment(self.report, walked)

    def _repr_html_(self) -> str:
        return self.to_html(standalone=False)

    def _repr_markdown_(self) -> str:
        from .render.gradient import to_markdown

        return to_markdown(self.report)

    def __repr__(self) -> str:
        grads = ", ".join(f"{k!r}: {_short(v)}" for k, v in self.grads.items())
        return f"GradResult(value={_short(self.value)}, grads={{{grads}}}, ok={self.ok})"


class ExplainResult(_Report):
    """`bp.explain`'s result: the paths from the output to each variable with their
    products, the staged reverse (or forward) sweep; markdown and LaTeX displays::

        >>> e = bp.explain("x*x + x", x=3)
        >>> [p["sum"] for p in e.partials], e.ok
        ([7.0], True)
    """

    kind = "explain"

    def __init__(
        self,
        report: dict[str, Any],
        notes: list[str] | None = None,
        graph: Any = None,
        point: dict[str, Any] | None = None,
    ) -> None:
        self.report = report
        self._notes = list(notes or [])  # the program's and the point's warnings
        self._graph, self._point = graph, point

    def to_html(self, standalone: bool = True) -> str:
        """The page `backprop explain ... -o page.html` writes: the step-through of the
        forward and backward pass, and every path with its product.
        standalone=False: one element for a notebook's output."""
        from .analyses.walk import walk
        from .render import pages

        if self._graph is None or self._point is None:
            from .core.errors import InputError

            raise InputError("this explanation was made without its graph; run bp.explain")
        walked = walk(self._graph, self._point, formulas=True)
        # the program's and the point's warnings too, as the command prints them
        report = {**self.report, "warnings": [{"message": w} for w in self.warnings]}
        if standalone:
            return pages.explain_page(report, walked)
        return pages.explain_fragment(report, walked)

    def _repr_html_(self) -> str:
        return self.to_html(standalone=False)

    @property
    def warnings(self) -> list[str]:
        """The program's and the point's warnings, then the explanation's own."""
        return [*self._notes, *super().warnings]

    @property
    def partials(self) -> list[dict[str, Any]]:
        """Per variable: its paths from the output (each with its product of local
        derivatives), their sum, and the reverse sweep's value."""
        return copy.deepcopy(self.report["partials"])

    def markdown(self) -> str:
        from .render.explain import markdown

        return markdown(self.report)

    def _latex_names(self) -> dict[str, str]:
        from .checks.symbolic import latex_names

        names = [e["name"] for e in self.report["legend"]] + [self.report["output"]["name"]]
        return dict(zip(names, latex_names(names), strict=True))

    def latex(self) -> str:
        from .render.explain import latex

        return latex(self.report, self._latex_names())

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def _repr_latex_(self) -> str:
        """The equations alone (definitions and chains as align* blocks), for MathJax."""
        from .render.explain import equations

        return equations(self.report, self._latex_names())

    def __repr__(self) -> str:
        return f"ExplainResult(mode={self.report.get('mode')!r}, ok={self.ok})"


class HigherResult(_Report):
    """`bp.jacobian` / `bp.hessian`: `matrix` (a numpy array), `rows`, `columns`, checks::

    >>> j = bp.jacobian("x*y", x=[1, 2], y=3)
    >>> j.rows, j.columns
    (['f[0]', 'f[1]'], ['x[0]', 'x[1]', 'y'])
    """

    def __init__(self, report: dict[str, Any], kind: str) -> None:
        self.report = report
        self.kind = kind

    @property
    def matrix(self) -> np.ndarray:
        """Rows: the output's elements (jacobian) or the variables' elements (hessian);
        columns: the variables' elements, as `rows` and `columns` name them."""
        key = "matrix" if self.kind == "jacobian" else "hessian"
        return np.array(self.report[key], dtype=np.float64)

    @property
    def rows(self) -> list[str]:
        return list(self.report["rows"] if self.kind == "jacobian" else self.report["elements"])

    @property
    def columns(self) -> list[str]:
        return list(self.report["columns"] if self.kind == "jacobian" else self.report["elements"])

    def _repr_markdown_(self) -> str:
        from .render.gradient import higher_markdown

        return higher_markdown(self.report, self.kind)

    def __repr__(self) -> str:
        return f"HigherResult({self.kind}, shape={self.matrix.shape}, ok={self.ok})"


class CheckResult(_Report):
    """`bp.check`: the gradient compared with torch, finite differences and SymPy at many
    random (or given) points::

        >>> bp.check("x*x", points=[{"x": 1}, {"x": 2}])
        CheckResult(samples=2, ok=True)
    """

    kind = "check"

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report

    def _repr_html_(self) -> str:
        from .render.check import check_heading, check_lines, check_table
        from .render.notebook import rich_html

        return rich_html([check_heading(self.report), check_table(self.report),
                          *check_lines(self.report)])  # fmt: skip

    def __repr__(self) -> str:
        return f"CheckResult(samples={self.report.get('samples')}, ok={self.ok})"


@dataclass(frozen=True)
class Epoch:
    """One logged epoch: its number (from 0, as the CLI's progress lines and the course's
    loop count), the last batch's loss and the parameters after that epoch's steps::

        >>> bp.train("linear", epochs=3).history[0].epoch
        0
    """

    epoch: int
    loss: float
    params: dict[str, Any] | None  # None past the history's budget (see bp.train)


class TrainResult:
    """`bp.train`'s result: `history` (Epoch per logged epoch), `params` (final), `loss`
    (mean loss over all data with them), `curve`, `plot()`, `predict(**inputs)`::

        >>> t = bp.train("linear", epochs=50)
        >>> round(float(t.predict(x=4)[0]), 2)
        8.0
    """

    def __init__(
        self,
        model: Any,
        result: Any,
        settings: Any,
        history: list[Epoch],
        data_size: int,
        columns: Any,
    ) -> None:
        self.model, self.result, self.settings = model, result, settings
        self._columns = columns  # inputs → checked columns (the API's value rules)
        self.history = history
        self.data_size = data_size

    @property
    def params(self) -> dict[str, Any]:
        return {k: _array(v) for k, v in self.result.params.items()}

    @property
    def loss(self) -> float | None:
        value: float | None = self.result.loss
        return value

    @property
    def curve(self) -> list[tuple[int, float]]:
        return list(self.result.curve)

    @property
    def ok(self) -> bool:
        """Trained without diverging, and the torch check (if asked) agreed."""
        return self.result.diverged_at is None and self.result.check_ok is not False

    @property
    def warnings(self) -> list[str]:
        return list(self.result.warnings)

    def predict(self, **inputs: Any) -> np.ndarray:
        """The trained model's predictions at the given input columns."""
        from .analyses.train import predict

        columns = self._columns(self.model, inputs)
        return predict(self.model, self.result.params, columns, self.settings.dtype)

    def plot(self, pyplot: bool = False) -> Any:
        """The loss curve as a matplotlib Figure (shown inline in a notebook; with `pyplot`,
        made through pyplot, for plt.show() in a script)."""
        from .render.plot import loss_figure

        return loss_figure(self.curve, f"{self.model.name}: {self.model.loss} loss", pyplot)

    def to_dict(self, predictions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The training as `backprop train --format json` prints it: "schema" first, the
        model, its settings, the history, the final parameters and loss (a fresh copy)."""
        from .render.train import document

        history = [
            {"epoch": e.epoch, "loss": e.loss, "params": copy.deepcopy(e.params)}
            for e in self.history
        ]
        return document(
            self.model, self.result, self.settings, history, self.data_size, predictions
        )

    def to_json(self, predictions: list[dict[str, Any]] | None = None) -> str:
        """`to_dict()` as JSON text."""
        return json.dumps(self.to_dict(predictions), indent=2, ensure_ascii=False, allow_nan=False)

    def to_html(
        self, predictions: list[dict[str, Any]] | None = None, standalone: bool = True
    ) -> str:
        """The page `backprop train ... -o training.html` writes: the loss curve and the
        parameters' trajectories as SVG, the first and last epoch's gradients, the final
        parameters, the predictions, the settings. standalone=False: one element for a
        notebook's output."""
        from .render import page, pages

        steps = {"first": self.result.first_steps, "last": self.result.last_steps}
        body = pages.train_body(self.to_dict(predictions), steps)
        if standalone:
            return page.document(f"backprop train {self.model.name}", body)
        return page.fragment(body)

    def _repr_html_(self) -> str:
        return self.to_html(standalone=False)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return (
            f"TrainResult({self.model.name}, epochs={self.result.epochs_run}, "
            f"loss={self.loss!r}, {params})"
        )


class DiffResult(_Report):
    """`bp.diff`'s result: the symbolic derivatives (no point needed), with `formulas`
    (text), `steps` (the rules applied node by node, when asked) and displays::

        >>> bp.diff("x*y", wrt="y").formula
        'x'
    """

    kind = "diff"

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report

    @property
    def ok(self) -> bool:
        check = self.report.get("check") or {}
        return bool(check.get("ok", True))

    @property
    def formulas(self) -> dict[str, str]:
        return {",".join(d["wrt"]): d["formula"] for d in self.report["derivatives"]}

    @property
    def formula(self) -> str:
        """The first derivative's formula (the only one for one variable)."""
        return str(self.report["derivatives"][0]["formula"])

    def _repr_markdown_(self) -> str:
        from .render.diff import markdown

        shown: str = markdown(self.report)
        return shown

    def _repr_latex_(self) -> str:
        from .render.diff import latex_block

        return "$$" + str(latex_block(self.report)) + "$$"

    def __str__(self) -> str:
        return "\n".join(self.formulas.values())

    def __repr__(self) -> str:
        shown = "; ".join(f"d/d{k}: {v}" for k, v in self.formulas.items())
        return f"DiffResult({shown})"
