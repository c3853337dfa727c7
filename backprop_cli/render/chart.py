"""Line charts as inline SVG for pages (the loss curve, the parameters' trajectories):
framed axes with round ticks, a log scale when the values span decades, a legend."""

from __future__ import annotations

import math

from . import numbers

WIDTH, HEIGHT = 640.0, 300.0
LEFT, RIGHT, TOP, BOTTOM = 64.0, 16.0, 16.0, 40.0
COLOURS = ("#1f5fbf", "#b3261e", "#2e7d32", "#8e44ad", "#e67e22", "#00838f", "#6d4c41")
DASHES = ("", "6 3", "2 3")  # after the colours, the same colours dashed
LEGEND = 130.0  # room on the right for the names, where there is more than one line
MAX_TICKS = 8
MAX_POINTS = 2_000  # points drawn per line; a longer one is thinned evenly


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = len(points) / MAX_POINTS
    kept = [points[int(j * stride)] for j in range(MAX_POINTS)]
    return [*kept, points[-1]]


def line_chart(
    series: list[tuple[str, list[tuple[float, float]]]],
    x_label: str,
    y_label: str,
    log: bool | None = None,
) -> str:
    """An SVG chart of each named series of (x, y) points; `log` None: log scale when every
    y is positive and they span more than two decades."""
    from .page import text

    finite = [(x, y) for _, pts in series for x, y in pts if math.isfinite(y)]
    if not finite:
        said = "no values to draw" if not any(pts for _, pts in series) else "no finite values"
        return f'<p class="bp-muted">nothing to draw: {said}</p>'
    ys = [y for _, y in finite]
    if log is None:
        log = min(ys) > 0 and max(ys) / min(ys) > 100

    def fy(y: float) -> float:
        return math.log10(y) if log else y

    x_low, x_high = min(x for x, _ in finite), max(x for x, _ in finite)
    y_low, y_high = min(fy(y) for y in ys), max(fy(y) for y in ys)
    if x_high == x_low:
        x_high = x_low + 1
    if y_high == y_low:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    margin = (y_high - y_low) * 0.05  # no line runs along the frame
    y_low, y_high = y_low - margin, y_high + margin
    right = RIGHT + (LEGEND if len(series) > 1 else 0.0)
    plot_w, plot_h = WIDTH - LEFT - right, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_low) / (x_high - x_low) * plot_w

    def py(y: float) -> float:
        return TOP + (1 - (fy(y) - y_low) / (y_high - y_low)) * plot_h

    parts = [
        f'<svg class="bp-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH:.0f} '
        f'{HEIGHT:.0f}" width="{WIDTH:.0f}" role="img" aria-label="{text(y_label)} by '
        f'{text(x_label)}">'
    ]
    if log:
        powers = list(range(math.ceil(y_low), math.floor(y_high) + 1)) or [round(y_low)]
        every = max(1, math.ceil(len(powers) / MAX_TICKS))
        y_ticks = [10.0**e for e in powers[::every]]
    else:
        y_ticks = _ticks(y_low, y_high)
    for t in y_ticks:
        y = py(t)
        label = f"1e{round(math.log10(t))}" if log else numbers.number(t, 3)
        parts.append(
            f'<line class="bp-gridline" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" '
            f'y2="{y:.1f}"/><text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{text(label)}</text>"
        )
    x_ticks = _ticks(x_low, x_high)
    if all(float(x).is_integer() for x, _ in finite):  # epochs: whole numbers only
        x_ticks = [t for t in x_ticks if float(t).is_integer()] or [x_low]
    for t in x_ticks:
        x = px(t)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
            f"{text(numbers.number(t, 4))}</text>"
        )
    parts.append(
        f'<rect class="bp-axis" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" '
        'fill="none"/>'
    )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">{text(x_label)}'
        f'</text><text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">{text(y_label)}'
        f"{' (log scale)' if log else ''}</text>"
    )
    for j, (name, pts) in enumerate(series):
        colour = COLOURS[j % len(COLOURS)]
        dash = DASHES[(j // len(COLOURS)) % len(DASHES)]
        style = f' stroke-dasharray="{dash}"' if dash else ""
        kept = [(px(x), py(y)) for x, y in _thin(pts) if math.isfinite(y)]
        drawn = " ".join(f"{x:.1f},{y:.1f}" for x, y in kept)
        parts.append(
            f'<polyline points="{drawn}" stroke="{colour}"{style}><title>{text(name)}</title>'
            "</polyline>"
        )
        if len(kept) == 1:  # one point draws no line: a dot
            parts.append(
                f'<circle cx="{kept[0][0]:.1f}" cy="{kept[0][1]:.1f}" r="3" fill="{colour}"/>'
            )
        if len(series) > 1:
            ly, lx = TOP + 10 + 16 * j, LEFT + plot_w + 12
            parts.append(
                f'<line x1="{lx}" x2="{lx + 18}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" '
                f'stroke-width="3"{style}/><text x="{lx + 24}" y="{ly}">{text(name)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
