"""A long fuzzing campaign against the `backprop` command line.

    python fuzz/campaign.py --minutes 20 --seed 1 --out fuzz-report.json

Cases come from a seeded generator, in six kinds: random text as the expression; almost-valid
expressions (a valid one with a character deleted, inserted or a slice cut); valid random
expression trees over the registry, scalar and array, at random points with every check on
(torch, finite differences, SymPy); hostile NAME=VALUE values; hostile option combinations;
and hostile --points / train --data files on stdin.

Each case runs in a worker process (two by default, one per core), in an empty working
directory: most in-process through the command-line app, and one in ten as a new
`python -m backprop_cli` process, which also takes `backprop grad`'s quick path. A case
fails when it ends with an exit code other than 0, 1 or 2, prints a traceback or an internal
error, exits 2 without a one-line `error:`, takes longer than --case-seconds, raises the
worker's peak memory above --case-mb, or leaves a file behind. A valid tree that exits 1
(a cross-check disagreed) is listed for review.

The summary (inputs tried, time, slowest input, peak memory, failures, disagreements) goes to
stdout and, with --out, to a JSON file; every failing case is kept there with its arguments,
so it can be replayed: `backprop ARGS...`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# ---- generators --------------------------------------------------------------------------

UNARY = ("exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "abs", "softplus")
BINARY_CALLS = ("max", "min", "pow", "log")
INFIX = ("+", "-", "*", "/", "**", "^")
SCALARS = ("x", "y", "z")
PIECES = [
    *"xyzwvWb012345.e+-*/^()=,;# \n\t_[]{}'\"@%<>!&|~:\\`$?",
    *("**", "exp(", "log(", "max(", "sqrt(", "sum(", "reshape(", "arange(", "zeros(", ".T"),
    *("lambda", "import", "__", "__class__", "1e999", "9**9**9", "((9**9)**9999)**9999"),
    *("ｘ", "\u200b", "\u202e", "\x00", "−", "×", "²", "٣", "\ufeff", "\u0301", "🙂", "\r"),
]


def _leaf(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.6:
        return rng.choice(SCALARS)
    if pick < 0.85:
        return f"{rng.uniform(-4, 4):.3g}"
    return rng.choice(("pi", "e", "2", "0.5", "0", "1"))


def scalar_tree(rng: random.Random, depth: int) -> str:
    if depth <= 0 or rng.random() < 0.25:
        return _leaf(rng)
    pick = rng.random()
    if pick < 0.35:
        return f"{rng.choice(UNARY)}({scalar_tree(rng, depth - 1)})"
    if pick < 0.8:
        a, b = scalar_tree(rng, depth - 1), scalar_tree(rng, depth - 1)
        return f"({a} {rng.choice(INFIX)} {b})"
    a, b = scalar_tree(rng, depth - 1), scalar_tree(rng, depth - 1)
    return f"{rng.choice(BINARY_CALLS)}({a}, {b})"


def vector_tree(rng: random.Random, depth: int) -> str:
    """An expression of shape (3,) over x, v (vectors) and W (3×3)."""
    if depth <= 0 or rng.random() < 0.2:
        return rng.choice(("x", "v", "W @ x", "T(W) @ v", "W[0]", "W[:, 1]", "v[::-1]"))
    pick = rng.random()
    if pick < 0.3:
        return f"{rng.choice(UNARY)}({vector_tree(rng, depth - 1)})"
    if pick < 0.6:
        a, b = vector_tree(rng, depth - 1), vector_tree(rng, depth - 1)
        return f"({a} {rng.choice(('+', '-', '*'))} {b})"
    if pick < 0.75:
        return f"({scalar_tree(rng, 1)} * {vector_tree(rng, depth - 1)})"
    if pick < 0.9:
        return f"(W @ {vector_tree(rng, depth - 1)})"
    return f"reshape({vector_tree(rng, depth - 1)}, 3)"


def array_tree(rng: random.Random) -> str:
    inner = vector_tree(rng, rng.randint(1, 3))
    return rng.choice(
        (
            f"sum({inner})",
            f"mean({inner})",
            f"dot({inner}, x)",
            f"max({inner})",
            f"min({inner})",
            f"({inner})[1]",
            f"sum(reshape({inner}, 3, 1) @ reshape(v, 1, 3))",
        )
    )


def _point(rng: random.Random) -> list[str]:
    vec = ", ".join(f"{rng.uniform(-2, 2):.3g}" for _ in range(3))
    mat = ", ".join(
        "[" + ", ".join(f"{rng.uniform(-1, 1):.3g}" for _ in range(3)) + "]" for _ in range(3)
    )
    return [
        *(f"{n}={rng.choice((rng.uniform(-3, 3), 0.0, 1.0, -1.0)):.4g}" for n in SCALARS),
        f"x=[{vec}]",
        f"v=[{', '.join(f'{rng.uniform(-2, 2):.3g}' for _ in range(3))}]",
        f"W=[{mat}]",
    ]


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 3)):
        i, j = sorted((rng.randint(0, len(text)), rng.randint(0, len(text))))
        pick = rng.random()
        if pick < 0.35:
            text = text[:i] + text[i + 1 :]
        elif pick < 0.7:
            text = text[:i] + rng.choice(PIECES) + text[i:]
        elif pick < 0.85:
            text = text[:i] + text[j:]
        else:
            text = text[:i] + text[i:j] * rng.randint(2, 5) + text[j:]
    return text


HOSTILE_VALUES = (
    "nan", "inf", "-inf", "NaN", "1e999", "-1e-999", "1_000", "0x10", "1j", "٣", "ｘ", " 1.5 ",
    "[1, 2", "[[1, 2], [3]]", "[]", "[[[]]]", "zeros(100000000)", "ones(0)", "arange(-1)",
    "[1, nan]", "9**9**9", "((9**9)**9999)**9999", "x", "1; 2", "a = 1", "'1'", "[1]*3",
    "reshape(arange(6), 4, 2)", "pi/0", "log(0)", "sqrt(-1)", "e**710", "-0", "+.5", "1e-320",
)  # fmt: skip

OPTIONS = (
    ["--format", "json"], ["--format", "csv"], ["--format", "markdown"], ["--format", "jsonl"],
    ["--format", "tsv"], ["--format", "nope"], ["--dtype", "float32"], ["--dtype", "float16"],
    ["--order", "2"], ["--order", "3"], ["--order", "-1"], ["--wrt", "x"], ["--wrt", "q"],
    ["--wrt", ""], ["--seed-grad", "2"], ["--seed-grad", "[1, 2]"], ["--seed-grad", "nan"],
    ["--max-length", "5"], ["--max-length", "0"], ["--max-length", "99999999999999"],
    ["--symbolic-timeout", "0.1"], ["--symbolic-timeout", "-1"], ["--no-symbolic"],
    ["--no-torch"], ["--device", "cuda"], ["--device", "tpu"], ["--device", "cuda:99"],
    ["--max-rows", "1"], ["--max-rows", "-3"], ["--expand"], ["--allow-nonfinite"],
    ["--on-error", "skip"], ["--check"], ["--file"], ["--values"], ["--latex"], ["--bogus"],
)  # fmt: skip


def _csv_junk(rng: random.Random) -> str:
    rows = ["x,y"] if rng.random() < 0.8 else [rng.choice(("", "x", "y,x,y", "1,2", "{"))]
    for _ in range(rng.randint(0, 8)):
        cells = [
            rng.choice(("1", "-2.5", "nan", "inf", "", " 3 ", "1e999", "a", "٣", '"4"', "5,6"))
            for _ in range(rng.randint(1, 3))
        ]
        rows.append(",".join(cells))
    if rng.random() < 0.2:
        rows.append(json.dumps({"x": rng.choice((1, None, [1], "2", 1e308)), "y": 2}))
    if rng.random() < 0.1:
        rows.append("9" * rng.choice((10, 200_000, 1_000_001)))
    text = "\n".join(rows)
    if rng.random() < 0.2:
        text = "\ufeff" + text
    if rng.random() < 0.2:
        text = text.replace("\n", rng.choice(("\r", "\r\n", "\t")))
    return text + ("\n" if rng.random() < 0.8 else "")


def generate(rng: random.Random) -> dict[str, Any]:
    case = _generate(rng)
    case["process"] = rng.random() < 0.1  # through the real entry point, in a new process
    return case


def _generate(rng: random.Random) -> dict[str, Any]:
    kind = rng.choices(
        ("text", "almost", "tree", "array", "values", "options", "files"),
        weights=(20, 25, 20, 10, 10, 10, 5),
    )[0]
    fast = ["--no-torch", "--no-symbolic"]
    if kind == "text":
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40)))
        return {"kind": kind, "args": ["grad", "--format", "json", *fast, "--", text, "x=0.7"]}
    if kind == "almost":
        base = scalar_tree(rng, 3) if rng.random() < 0.7 else array_tree(rng)
        text = mutate(rng, base)
        return {
            "kind": kind,
            "args": ["grad", "--format", "json", *fast, "--", text, *_point(rng)[:3]],
        }
    if kind == "tree":
        source = scalar_tree(rng, rng.randint(1, 4))
        used = [f"{n}={rng.uniform(-3, 3):.4g}" for n in SCALARS]
        return {"kind": kind, "args": ["grad", "--format", "json", "--", source, *used]}
    if kind == "array":
        source = array_tree(rng)
        return {"kind": kind, "args": ["grad", "--format", "json", "--", source, *_point(rng)[3:]]}
    if kind == "values":
        chosen = rng.choice(HOSTILE_VALUES)
        if rng.random() < 0.5:
            chosen = mutate(rng, chosen)
        command = rng.choice(("grad", "jacobian", "hessian", "explain", "graph"))
        return {"kind": kind, "args": [command, "sum(x*y)", f"x={chosen}", "y=2", *fast]}
    if kind == "options":
        command = rng.choice(("grad", "grad", "jacobian", "hessian", "explain", "check"))
        args = [command, rng.choice(("x*y", "sum(x)", "x**3 - y", "relu(x)*y")), "x=1.5", "y=-2"]
        for _ in range(rng.randint(1, 4)):
            args += rng.choice(OPTIONS)
        if command == "check":
            args += ["--samples", str(rng.choice((1, 3, 0, -1)))]
        return {"kind": kind, "args": args}
    stdin = _csv_junk(rng)
    if rng.random() < 0.5:
        args = ["grad", "x*y", "--points", "-", *fast]
        args += rng.choice(
            ([], ["--on-error", "skip"], ["--allow-nonfinite"], ["--format", "jsonl"])
        )
    else:
        args = ["train", rng.choice(("linear", "affine")), "--data", "-", "--epochs", "3"]
        args += rng.choice(([], ["--lr", "1e9"], ["--optimizer", "adam"], ["--batch-size", "0"]))
    return {"kind": "files", "args": args, "stdin": stdin}


# ---- the worker: runs cases in-process, one JSON line in, one out ------------------------


def _peak_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def worker() -> None:
    from typer.testing import CliRunner

    from backprop_cli.cli.app import app

    runner = CliRunner()
    here = tempfile.mkdtemp(prefix="bp-fuzz-")
    os.chdir(here)
    for line in sys.stdin:
        case = json.loads(line)
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak so it belongs to this case
        except OSError:
            pass
        start = time.perf_counter()
        if case.get("process") and not any("\x00" in a for a in case["args"]):  # argv has no NUL
            result = _in_a_process(case, here)
        else:
            result = runner.invoke(app, case["args"], input=case.get("stdin"))
        seconds = time.perf_counter() - start
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        left = os.listdir(here)
        for name in left:
            Path(here, name).unlink(missing_ok=True)
        out = {
            "code": 3 if crashed else result.exit_code,
            "stderr": result.stderr[:4000],
            "stdout_ok": _stdout_ok(case, result.stdout, result.exit_code),
            "seconds": seconds,
            "peak_kb": max(_peak_kb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
            "files": left,
            "exception": repr(result.exception)[:300] if crashed else None,
        }
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


class _Done:
    """What CliRunner's result holds, for a case run as its own process."""

    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.exit_code, self.stdout, self.stderr = done.returncode, done.stdout, done.stderr
        self.exception = None


def _in_a_process(case: dict[str, Any], here: str) -> _Done:
    done = subprocess.run(
        [sys.executable, "-m", "backprop_cli", *case["args"]],
        input=case.get("stdin") or "",
        capture_output=True,
        text=True,
        cwd=here,
    )
    return _Done(done)


def _stdout_ok(case: dict[str, Any], stdout: str, code: int) -> bool:
    """JSON asked for and the command succeeded or disagreed: the output parses."""
    if code not in (0, 1) or "--format" not in case["args"]:
        return True
    args = case["args"]
    fmt = args[len(args) - 1 - args[::-1].index("--format") + 1]  # the last one wins
    if fmt != "json" or case["args"][0] != "grad":
        return True
    try:
        json.loads(stdout)
    except ValueError:
        return False
    return True


# ---- the campaign --------------------------------------------------------------------------


class Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )

    def run(self, case: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"code": -1, "stderr": "worker died", "seconds": 0}

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def judge(case: dict[str, Any], out: dict[str, Any], limits: argparse.Namespace) -> str | None:
    """Why this case failed, or None."""
    if out["code"] not in (0, 1, 2):
        return f"exit code {out['code']}: {out.get('exception') or out['stderr'][:200]}"
    if "Traceback" in out["stderr"] or "internal error" in out["stderr"]:
        return f"traceback or internal error: {out['stderr'][:200]}"
    errors = [line for line in out["stderr"].splitlines() if line.startswith("error: ")]
    if out["code"] == 2 and len(errors) != 1:  # warnings may come first
        return f"exit 2 without one error line: {out['stderr'][:200]!r}"
    if not out.get("stdout_ok", True):
        return "--format json output does not parse"
    if out["seconds"] > limits.case_seconds:
        return f"took {out['seconds']:.1f} s"
    if out.get("peak_kb", 0) > limits.case_mb * 1024:
        return f"peak memory {out['peak_kb'] // 1024} MB"
    if out.get("files"):
        return f"left files behind: {out['files']}"
    return None


def campaign(a: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(a.seed)
    lock = threading.Lock()
    deadline = time.monotonic() + 60 * a.minutes
    stats: dict[str, Any] = {
        "tried": 0, "kinds": Counter(), "codes": Counter(), "failures": [], "disagreements": [],
        "slowest": {"seconds": 0.0}, "peak_mb": 0,
    }  # fmt: skip

    def next_case() -> dict[str, Any] | None:
        with lock:
            if time.monotonic() > deadline or (a.inputs and stats["tried"] >= a.inputs):
                return None
            stats["tried"] += 1
            return generate(rng)

    def loop() -> None:
        w = Worker()
        try:
            while (case := next_case()) is not None:
                out = w.run(case, a.case_seconds * 3)
                if out is None:  # hung: kill the worker, count it, start a new one
                    w.stop()
                    w = Worker()
                    out = {"code": -1, "stderr": "", "seconds": a.case_seconds * 3}
                    reason: str | None = f"no answer within {a.case_seconds * 3:.0f} s"
                else:
                    reason = judge(case, out, a)
                with lock:
                    stats["kinds"][case["kind"]] += 1
                    stats["codes"][str(out["code"])] += 1
                    stats["peak_mb"] = max(stats["peak_mb"], out.get("peak_kb", 0) // 1024)
                    if out["seconds"] > stats["slowest"]["seconds"]:
                        stats["slowest"] = {"seconds": round(out["seconds"], 3), **case}
                    if reason is not None:
                        stats["failures"].append({"reason": reason, **case})
                    elif case["kind"] in ("tree", "array") and out["code"] == 1:
                        stats["disagreements"].append({"stderr": out["stderr"][:300], **case})
                    if out["code"] == -1 and out["stderr"] == "worker died":
                        w.stop()
                        w = Worker()
        finally:
            w.stop()

    start = time.monotonic()
    threads = [threading.Thread(target=loop) for _ in range(a.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["seconds"] = round(time.monotonic() - start, 1)
    stats["kinds"], stats["codes"] = dict(stats["kinds"]), dict(stats["codes"])
    return stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="Stop after this long.")
    p.add_argument("--inputs", type=int, default=0, help="Stop after this many (0: no cap).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="Worker processes.")
    p.add_argument("--case-seconds", type=float, default=30.0, help="Slowest allowed case.")
    p.add_argument("--case-mb", type=int, default=2048, help="Most memory a case may add.")
    p.add_argument("--out", help="Write the summary and every failing case here (JSON).")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker()
        return
    stats = campaign(a)
    print(f"inputs tried:   {stats['tried']:,} in {stats['seconds']:,} s ({a.jobs} workers)")
    print(f"by kind:        {stats['kinds']}")
    print(f"exit codes:     {stats['codes']}")
    slow = stats["slowest"]
    print(f"slowest input:  {slow['seconds']} s: {json.dumps(slow.get('args'))[:200]}")
    print(f"peak memory:    {stats['peak_mb']} MB (one worker, one case)")
    print(f"failures:       {len(stats['failures'])}")
    for f in stats["failures"][:20]:
        print(f"  {f['reason'][:120]}\n    backprop {json.dumps(f['args'])[:200]}")
    print(f"disagreements:  {len(stats['disagreements'])} (valid trees that exited 1; review)")
    for d in stats["disagreements"][:10]:
        print(f"    backprop {json.dumps(d['args'])[:200]}")
    if a.out:
        Path(a.out).write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    sys.exit(1 if stats["failures"] else 0)


if __name__ == "__main__":
    main()
