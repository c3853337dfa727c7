"""Loss curves as image files (PNG, SVG or PDF) through matplotlib, imported only here and
only when a plot is asked for."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..core.errors import BackpropError
from ..io.files import check_target, replacing

FORMATS = (".png", ".svg", ".pdf")


def check_path(path: str) -> None:
    """Fail before training, not after, on a file we could not write."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise BackpropError(f"--plot {path}: the file must end in {', '.join(FORMATS)}")
    parent = Path(path).parent
    if not parent.is_dir():
        raise BackpropError(f"--plot {path}: the folder {str(parent)!r} does not exist")
    check_target(path)


def loss_figure(per_epoch: list[tuple[int, float]], title: str, pyplot: bool = False) -> Any:
    """The loss curve as a matplotlib Figure (log scale when the loss falls a hundredfold).
    With `pyplot`, made through pyplot so that a notebook shows it inline; otherwise a
    standalone Figure that needs no display."""
    points = [(epoch, loss) for epoch, loss in per_epoch if math.isfinite(loss)]
    try:
        if pyplot:
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=(6.4, 4.0), dpi=120)
        else:
            from matplotlib.figure import Figure

            fig = Figure(figsize=(6.4, 4.0), dpi=120)
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise BackpropError("plots need matplotlib: pip install matplotlib") from None
    ax = fig.add_subplot()
    if points:
        epochs, losses = zip(*points, strict=True)
        ax.plot(epochs, losses, marker="." if len(points) < 60 else None, color="#c0392b")
        if min(losses) > 0 and max(losses) / min(losses) > 100:
            ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def loss_plot(per_epoch: list[tuple[int, float]], path: str, title: str) -> None:
    fig = loss_figure(per_epoch, title)
    try:
        with replacing(path) as temporary:  # the old plot stays whole if this fails
            fig.savefig(temporary, format=Path(path).suffix.lower()[1:])
    except OSError as exc:
        raise BackpropError(f"cannot write {path}: {exc.strerror or exc}") from None
