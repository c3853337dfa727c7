"""`backprop train` against an equivalent plain-PyTorch script, both timed as whole
processes in the same run: the course (linear, 100 epochs, per-sample SGD, float32) and
`affine` for 10 000 full-batch epochs on 1 000 points.

    python benchmarks/train.py [--runs 5] [--json benchmarks/results/train.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from timing import measure, report

PY = sys.executable

COURSE = """\
import torch
x_data, y_data = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]
w = torch.tensor([1.0], requires_grad=True)
print("predict (before training)", 4, (4 * w).item())
for epoch in range(100):
    for x, y in zip(x_data, y_data):
        l = (x * w - y) ** 2
        l.backward()
        w.data = w.data - 0.01 * w.grad.data
        w.grad.data.zero_()
    print("progress:", epoch, l.item())
print("predict (after training)", 4, (4 * w).item())
"""

AFFINE = """\
import csv, sys, torch
rows = list(csv.DictReader(open(sys.argv[1])))
x = torch.tensor([float(r["x"]) for r in rows])
y = torch.tensor([float(r["y"]) for r in rows])
w = torch.tensor(1.0, requires_grad=True)
b = torch.tensor(0.0, requires_grad=True)
opt = torch.optim.SGD([w, b], lr=0.01)
for epoch in range(10000):
    loss = ((w * x + b - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if epoch % 100 == 99:
        print(epoch, loss.item())
print(w.item(), b.item())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/train.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "course.py").write_text(COURSE)
        (folder / "affine.py").write_text(AFFINE)
        points = folder / "points.csv"
        lines = ["x,y"] + [
            f"{i / 100},{2 * i / 100 + 1 + ((i * 7919) % 13 - 6) / 60}" for i in range(1000)
        ]
        points.write_text("\n".join(lines) + "\n")
        commands = {
            "train linear (course)": [
                PY,
                "-m",
                "backprop_cli",
                "train",
                "linear",
                "--dtype",
                "float32",
            ],
            "torch: the course's script": [PY, str(folder / "course.py")],
            "train affine 10k epochs": [
                PY,
                "-m",
                "backprop_cli",
                "train",
                "affine",
                "--data",
                str(points),
                "--epochs",
                "10000",
                "--format",
                "jsonl",
            ],
            "torch: affine 10k epochs": [PY, str(folder / "affine.py"), str(points)],
        }
        ratios = [
            ("train linear (course)", "torch: the course's script"),
            ("train affine 10k epochs", "torch: affine 10k epochs"),
        ]
        report(measure(commands, args.runs), ratios, args.runs, args.json)


if __name__ == "__main__":
    main()
