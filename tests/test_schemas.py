"""Every JSON document the commands and the Python API write starts with its "schema" key
(backprop-cli/<kind>/<major>) and follows the JSON Schema that ships for that kind in
backprop_cli/schemas/<kind>.json; the schemas themselves are valid draft 2020-12 schemas
strict enough to catch a renamed, missing or retyped key."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

import backprop_cli as bp
from backprop_cli.render.gradient import SCHEMA_MAJOR, schema_id
from tests.conftest import run

SCHEMAS = resources.files("backprop_cli") / "schemas"
KINDS = sorted(p.name[: -len(".json")] for p in SCHEMAS.iterdir() if p.name.endswith(".json"))


def load(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{kind}.json").read_text(encoding="utf-8"))
    return schema


def validate(document: Any) -> str:
    """Check one document against the schema its first key names; its kind."""
    assert isinstance(document, dict), document
    assert next(iter(document)) == "schema", list(document)[:3]
    prefix, kind, major = document["schema"].split("/")
    assert prefix == "backprop-cli" and major == str(SCHEMA_MAJOR)
    assert kind in KINDS, f"no schema for {kind}"
    Draft202012Validator(load(kind)).validate(document)
    return kind


def documents(stdout: str, jsonl: bool) -> list[Any]:
    if jsonl:
        return [json.loads(line) for line in stdout.splitlines()]
    return [json.loads(stdout)]


# ---- the schemas themselves ------------------------------------------------------------------


def test_the_kinds():
    expected = [
        "check", "diff", "explain", "grad", "grad-point", "graph", "hessian", "jacobian",
        "model", "models", "op", "ops", "train", "train-epoch", "train-final",
    ]  # fmt: skip
    assert sorted(expected) == KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_each_schema_is_a_valid_schema_with_id_and_descriptions(kind):
    schema = load(kind)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:backprop-cli:schema:{kind}:{SCHEMA_MAJOR}"
    assert schema["title"] and schema["description"]
    assert schema["properties"]["schema"] == {
        "const": schema_id(kind),
        "description": schema["properties"]["schema"]["description"],
    }
    assert "schema" in schema["required"]
    assert schema["additionalProperties"] is False  # a document's keys are fixed
    for name, prop in schema["properties"].items():
        target = prop
        if "$ref" in prop:
            target = schema["$defs"][prop["$ref"].rsplit("/", 1)[1]]
        assert "description" in prop or "description" in target, f"{kind}.{name}"


def test_the_schemas_and_the_page_assets_ship_in_the_wheel(tmp_path):
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).parent.parent
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(root)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"backprop_cli/schemas/{kind}.json" for kind in KINDS} <= names
    assert {"backprop_cli/render/assets/page.js", "backprop_cli/render/assets/page.css"} <= names


# ---- strict enough ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grad_document() -> dict[str, Any]:
    r = run("grad", "(x+y)*z", "x=-2", "y=5", "z=-4", "--format", "json", "--no-torch")
    assert r.code == 0, r.stderr
    document: dict[str, Any] = r.json()
    return document


def _broken(document: dict[str, Any], change: str) -> dict[str, Any]:
    d = copy.deepcopy(document)
    if change == "renamed top key":
        d["gradients"] = d.pop("gradient")
    elif change == "missing top key":
        del d["ok"]
    elif change == "unknown top key":
        d["extra"] = 1
    elif change == "retyped":
        d["statements"] = "1"
    elif change == "renamed node key":
        d["nodes"][0]["values"] = d["nodes"][0].pop("value")
    elif change == "partial without status":
        del d["partials"][0]["status"]
    elif change == "number as text":
        d["gradient"]["x"] = "-4"
    elif change == "wrong schema":
        d["schema"] = "backprop-cli/grad/2"
    elif change == "schema not first":
        d = {k: v for k, v in d.items() if k != "schema"}
        d["schema"] = document["schema"]
    return d


@pytest.mark.parametrize(
    "change",
    [
        "renamed top key", "missing top key", "unknown top key", "retyped", "renamed node key",
        "partial without status", "number as text", "wrong schema", "schema not first",
    ],
)  # fmt: skip
def test_a_changed_document_fails(grad_document, change):
    validate(grad_document)
    with pytest.raises((ValidationError, AssertionError)):
        validate(_broken(grad_document, change))


# ---- every JSON output of every command ------------------------------------------------------

W = "W=[[1,2],[3,4]]"
NET = ("x1=1", "x2=1", "y=0", "--init", "examples/network.json")
POINTS_CSV = "x,y\n1,2\n3,4\n-1,0.5\n"
POINTS_JSONL = '{"x": 1, "y": 2, "tag": "a"}\n{"x": 3, "y": 4}\n'

# (arguments, stdin, the kinds of the documents written)
CASES: list[tuple[tuple[str, ...], str | None, set[str]]] = [
    (("grad", "(x+y)*z", "x=-2", "y=5", "z=-4", "--format", "json"), None, {"grad"}),
    (("grad", "q = x + y; f = q * z", "x=-2", "y=5", "z=-4", "--format", "json", "--no-torch"),
     None, {"grad"}),
    (("grad", "sum(sigmoid(W @ x + b))", W, "x=[1,-1]", "b=0", "--format", "json"), None,
     {"grad"}),
    (("grad", "2*x*x", "x=arange(4)", "--seed-grad", "[1,1,1,1]", "--format", "json"), None,
     {"grad"}),
    (("grad", "x**3 + 2*x**2 - 3*x + 1", "x=1", "--order", "2", "--format", "json"), None,
     {"grad"}),
    (("grad", "mlp:2-3-1", *NET, "--format", "json", "--no-torch"), None, {"grad"}),
    (("grad", "mlp:3-6-1", "x1=1", "x2=2", "x3=3", "y=1", "--format", "json", "--no-torch"),
     None, {"grad"}),
    (("grad", "x*y", "x=1", "y=2", "--latex", "--dtype", "float32", "--format", "json"), None,
     {"grad"}),
    (("grad", "x*y", "x=nan", "y=2", "--allow-nonfinite", "--no-torch", "--format", "json"),
     None, {"grad"}),
    (("grad", "log(x)", "x=-1", "--no-torch", "--format", "json"), None, {"grad"}),
    (("grad", "abs(x)", "x=0", "--order", "2", "--no-torch", "--format", "json"), None,
     {"grad"}),
    (("grad", "x*y", "x=1", "y=2", "--no-torch", "--format", "jsonl"), None, {"grad"}),
    (("grad", "x*y", "--points", "-", "--format", "jsonl"), POINTS_CSV, {"grad-point"}),
    (("grad", "x*y", "--points", "-", "--format", "jsonl"), POINTS_JSONL, {"grad-point"}),
    (("grad", "x*y", "y=3", "--points", "-", "--format", "jsonl", "--check"), "x\n1\n2\n",
     {"grad-point"}),
    (("explain", "(x*w - y)**2", "x=2", "w=1", "y=4", "--format", "json"), None, {"explain"}),
    (("explain", "x*x + x", "x=3", "--mode", "forward", "--format", "json"), None, {"explain"}),
    (("explain", "q = x*y; f = sin(q) + q", "x=1", "y=2", "--format", "json"), None,
     {"explain"}),
    (("explain", "sum(sigmoid(W @ x))", W, "x=[1,-1]", "--format", "json"), None, {"explain"}),
    (("explain", "mlp:2-3-1", *NET, "--format", "jsonl"), None, {"explain"}),
    (("explain", " + ".join(f"x*y{i}" for i in range(3)) + " + x*x*x", "x=1",
      *(f"y{i}=2" for i in range(3)), "--format", "json"), None, {"explain"}),
    (("jacobian", "sigmoid(W @ x)", W, "x=[1,-1]", "--format", "json"), None, {"jacobian"}),
    (("jacobian", "sin(x)", "x=1", "--no-symbolic", "--format", "jsonl"), None, {"jacobian"}),
    (("hessian", "x1**2*x2 + exp(x1*x2)", "x1=1", "x2=2", "--format", "json"), None,
     {"hessian"}),
    (("hessian", "abs(x)*y", "x=0", "y=1", "--no-torch", "--format", "json"), None,
     {"hessian"}),
    (("check", "x**3 - x", "--samples", "20", "--format", "json"), None, {"check"}),
    (("check", "q = x*y; f = exp(q)", "--samples", "5", "--format", "json"), None, {"check"}),
    (("jacobian", "q = x*y; f = sin(q)", "x=[1,2]", "y=3", "--no-torch", "--format", "json"),
     None, {"jacobian"}),
    (("check", "sum(sigmoid(W @ x + b))", W, "x=[1,-1]", "--samples", "5", "--format", "json"),
     None, {"check"}),
    (("check", "x*y", "--points", "-", "--no-torch", "--format", "jsonl"), POINTS_CSV,
     {"check"}),
    (("check", "mlp:2-3-1:tanh", "--samples", "3", "--no-symbolic", "--format", "json"), None,
     {"check"}),
    (("diff", "x**2*sin(x)", "--format", "json"), None, {"diff"}),
    (("diff", "x/(1 + exp(-x))", "--steps", "--format", "json"), None, {"diff"}),
    (("diff", "--file", "examples/cs231n_add_mul.bp", "--order", "2", "--format", "jsonl"),
     None, {"diff"}),
    (("train", "linear", "--epochs", "5", "--format", "json"), None, {"train"}),
    (("train", "mlp", "--hidden", "2", "--x", "1,2,3,4", "--y", "0,1,1,0", "--epochs", "3",
      "--check", "--format", "json"), None, {"train"}),
    (("train", "w1*x**2 + w2*x + b", "--x", "1,2,3", "--y", "6,17,34", "--init", "w1=0,b=0",
      "--epochs", "2", "--predict", "2", "--format", "json"), None, {"train"}),
    (("train", "mlp:2-3-1", "--data", "examples/xor.csv", "--epochs", "3", "--format", "jsonl"),
     None, {"train-epoch", "train-final"}),
    (("train", "--list", "--format", "json"), None, {"models"}),
    (("train", "--list", "--format", "jsonl"), None, {"model"}),
    (("ops", "--format", "jsonl"), None, {"op"}),
    (("ops", "--format", "json"), None, {"ops"}),
    (("graph", "(x+y)*z", "x=-2", "y=5", "z=-4", "--format", "json"), None, {"graph"}),
    (("graph", "q = x + y; f = q * z", "--format", "json"), None, {"graph"}),
    (("graph", "sum(sigmoid(W @ x + b))", W, "x=[1,-1]", "b=0", "--format", "json"), None,
     {"graph"}),
]  # fmt: skip


def test_every_kind_is_exercised():
    assert set().union(*(kinds for _, _, kinds in CASES)) == set(KINDS)


@pytest.mark.parametrize(("args", "stdin", "kinds"), CASES, ids=lambda v: None)
def test_every_json_output_follows_its_schema(args, stdin, kinds):
    r = run(*args, stdin=stdin)
    assert r.code == 0, r.stderr
    docs = documents(r.stdout, "jsonl" in args)
    assert docs
    assert {validate(doc) for doc in docs} == kinds


def test_a_diverged_training_still_follows_the_schema():
    r = run("train", "linear", "--epochs", "3", "--lr", "1e6", "--format", "json")
    assert r.code == 1 and "diverged" in r.stderr
    assert validate(r.json()) == "train" and r.json()["diverged_at"] == 1
    r = run("train", "linear", "--epochs", "3", "--lr", "1e6", "--format", "jsonl")
    assert [validate(d) for d in documents(r.stdout, True)] == ["train-epoch", "train-final"]


def test_a_json_file_written_by_o_follows_the_schema(tmp_path):
    target = tmp_path / "g.json"
    r = run("grad", "x*y", "x=1", "y=2", "--no-torch", "-o", str(target))
    assert r.code == 0 and r.stdout == ""
    assert validate(json.loads(target.read_text())) == "grad"
    rows = tmp_path / "p.jsonl"
    r = run("grad", "x*y", "--points", "-", "-o", str(rows), stdin=POINTS_CSV)
    assert r.code == 0, r.stderr
    assert {validate(d) for d in documents(rows.read_text(), True)} == {"grad-point"}


@pytest.mark.parametrize(
    "args",
    [
        ("grad", "x*", "x=1", "--format", "json"),
        ("grad", "x*y", "x=1", "--format", "jsonl"),
        ("explain", "x*y", "x=1", "--format", "json"),
        ("check", "x*", "--format", "json"),
        ("diff", "x*", "--format", "json"),
        ("train", "linear", "--lr", "-1", "--format", "json"),
        ("grad", "x*y", "--points", "-", "--format", "jsonl"),
    ],
)
def test_errors_are_not_json(args):
    r = run(*args, stdin="x,y\n1,oops\n")
    assert r.code == 2
    assert r.stdout == ""
    assert r.stderr.startswith("error: ")


# ---- the Python API ----------------------------------------------------------------------------


def test_the_api_documents_follow_the_schemas():
    results = {
        "grad": bp.grad("(x+y)*z", x=-2, y=5, z=-4, torch=False),
        "explain": bp.explain("x*x + x", x=3),
        "jacobian": bp.jacobian("x*y", x=[1, 2], y=3, torch=False),
        "hessian": bp.hessian("x1**2*x2", x1=1, x2=2, torch=False),
        "check": bp.check("x*x", points=[{"x": 1}, {"x": 2}], torch=False),
        "diff": bp.diff("x*y", wrt="y"),
        "train": bp.train("linear", epochs=3),
    }
    for kind, result in results.items():
        document = result.to_dict()
        assert validate(document) == kind
        assert json.loads(result.to_json()) == document
    # the API and the CLI write the same document
    cli = run("grad", "(x+y)*z", "x=-2", "y=5", "z=-4", "--no-torch", "--format", "json")
    assert results["grad"].to_dict() == cli.json()
    trained = run("train", "linear", "--epochs", "3", "--format", "json").json()
    assert {**results["train"].to_dict(), "predictions": trained["predictions"]} == trained


def test_the_trainers_history_past_its_budget_has_null_parameters(monkeypatch):
    from backprop_cli import api

    monkeypatch.setattr(api, "HISTORY_ELEMENTS", 2)
    with pytest.warns(bp.BackpropWarning, match="history keeps the parameters"):
        document = bp.train("linear", epochs=4).to_dict()
    assert validate(document) == "train"
    assert [e["params"] is None for e in document["history"]] == [False, False, True, True]
