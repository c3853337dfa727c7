"""The shape of the code: one folder per stage with imports pointing one way (core ← io ←
checks ← analyses ← render ← the public API ← cli), no import cycles, one module per heavy
dependency, nothing heavy at `import backprop_cli`, and no eval anywhere."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "backprop_cli"
MODULES = sorted(PACKAGE.rglob("*.py"))

# A module may import from its own layer and the layers below it, never from one above.
LAYERS = ["core", "io", "checks", "analyses", "render", "api", "cli"]
HEAVY = (
    "typer",
    "rich",
    "sympy",
    "torch",
    "matplotlib",
    "pyarrow",
    "dask",
    "distributed",
    "symengine",
)


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    """The stage a module belongs to; the package's own modules (`__init__`, `api`,
    `results`, …) are the public API, `__main__` is the command line."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS):
        return parts[1]
    return "cli" if module.endswith("__main__") else "api"


def _imports(path: Path) -> set[str]:
    """Every module of the package this file imports, at the top or inside a function."""
    me = _name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    known = {_name(p) for p in MODULES}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != me}
    return found


GRAPH = {_name(p): _imports(p) for p in MODULES}


def test_layers_point_one_way():
    wrong = [
        f"{module} ({_layer(module)}) imports {target} ({_layer(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if LAYERS.index(_layer(target)) > LAYERS.index(_layer(module))
    ]
    assert not wrong, wrong


def test_nothing_imports_the_cli():
    importers = {
        module
        for module, targets in GRAPH.items()
        if any(_layer(t) == "cli" for t in targets) and _layer(module) != "cli"
    }
    assert importers == set(), importers


def test_no_import_cycles():
    # A depth-first search over modules (subpackage __init__ files only hold docstrings).
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_the_layers_are_the_folders():
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert folders == sorted(set(LAYERS) - {"api"})
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "api.py", "dask.py", "results.py"]


def test_below_the_cli_nothing_heavy_is_imported():
    below = [m for m in GRAPH if _layer(m) not in ("cli",)]
    code = (
        "import importlib, sys\n"
        f"for m in {below!r}: importlib.import_module(m)\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_import_backprop_cli_is_light():
    code = (
        "import sys\n"
        "import backprop_cli as bp\n"
        "bp.grad, bp.diff, bp.ParseError  # names are reachable without importing more\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def _top_names(node: ast.AST) -> list[str]:
    """The top-level packages an import statement reaches outside our package."""
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom) and not node.level:
        return [(node.module or "").split(".")[0]]
    return []


def _importers(module: str) -> set[str]:
    return {
        str(p.relative_to(PACKAGE))
        for p in MODULES
        for node in ast.walk(ast.parse(p.read_text()))
        if module in _top_names(node)
    }


def test_one_module_per_heavy_dependency():
    assert _importers("sympy") == {"checks/symbolic.py"}
    assert _importers("torch") == {"checks/autograd.py", "analyses/train_torch.py"}
    assert {p.split("/")[0] for p in _importers("typer")} == {"cli"}
    assert {p.split("/")[0] for p in _importers("rich")} <= {"render", "cli"}
    assert _importers("matplotlib") == {"render/plot.py"}
    assert _importers("pyarrow") == {"io/arrow.py"}
    assert _importers("symengine") == {"checks/fast_symbolic.py"}
    assert _importers("dask") | _importers("distributed") == {"dask.py"}


def test_no_eval_exec_or_sympy_parsers():
    calls = {"eval", "exec", "sympify", "parse_expr"}
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
                assert name not in calls, f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}"


def test_every_module_says_what_it_is_for():
    for path in MODULES:
        assert path.read_text().lstrip().startswith('"""'), path


def test_no_module_special_cases_an_op_name():
    # Op names appear in the registry only; others go through ops.OPS / ops.INFIX / ...
    names = {"relu", "sigmoid", "softplus", "tanh", "sqrt", "log_base"}
    for path in MODULES:
        if path.name == "ops.py":
            continue
        text = path.read_text()
        for name in names:
            assert f'"{name}"' not in text, (path.relative_to(PACKAGE), name)
