"""Two small plots as inline SVG: class probabilities over the last 30 s and a histogram of
glass-to-label latency. SVG because it costs a few string joins per update (no image encode,
no temp file per refresh) and the browser draws it crisply at any size. Every text that goes
into the SVG is escaped: class names come from a model file (a --data folder's names), and the
page puts the SVG into its HTML as it is.
"""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np

from realtime.messages import Prediction

# Ten distinguishable colours (one per gesture class; they repeat beyond ten).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _frame(width: int, height: int, body: str, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
            f'style="max-width:{width}px;background:#fff;font:11px sans-serif">'
            f'<text x="6" y="14" font-weight="bold">{html.escape(title)}</text>{body}</svg>')


def probability_svg(history: Sequence[Prediction], now: float, span_s: float = 30.0,
                    width: int = 640, height: int = 230, max_points: int = 150) -> str:
    """One line per class: probability (0..1) against seconds before ``now`` (monotonic),
    over the last ``span_s`` s of ``history``. At most ``max_points`` points per line."""
    left, right, top, bottom = 34, 130, 22, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    recent = [p for p in history if now - p.t_scored <= span_s]
    axes = (f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
            f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">1</text>'
            f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>'
            f'<text x="{left}" y="{height - 6}">-{span_s:g} s</text>'
            f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end">now</text>')
    if not recent:
        return _frame(width, height, axes + f'<text x="{left + 8}" y="{top + 20}">no predictions yet</text>',
                      "class probabilities")
    step = max(1, len(recent) // max_points)
    recent = recent[::step]
    t = np.array([p.t_scored for p in recent])
    probs = np.stack([p.probs for p in recent])  # (N, K)
    xs = left + plot_w * (1.0 - (now - t) / span_s)
    lines, legend = [], []
    for k, name in enumerate(recent[-1].classes):
        color = PALETTE[k % len(PALETTE)]
        ys = top + plot_h * (1.0 - probs[:, k])
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
        lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>')
        ly = top + 4 + 14 * k
        legend.append(f'<rect x="{width - right + 8}" y="{ly}" width="10" height="10" fill="{color}"/>'
                      f'<text x="{width - right + 22}" y="{ly + 9}">{html.escape(name)} {probs[-1, k]:.2f}</text>')
    return _frame(width, height, axes + "".join(lines) + "".join(legend), "class probabilities, last 30 s")


def latency_histogram_svg(latencies_ms: Sequence[float], bins: int = 24,
                          width: int = 640, height: int = 200) -> str:
    """A histogram of glass-to-label latencies (ms) with p50 and p95 marked."""
    left, right, top, bottom = 34, 12, 22, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    axes = f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
    values = np.asarray(latencies_ms, np.float64)
    if values.size == 0:
        return _frame(width, height, axes + f'<text x="{left + 8}" y="{top + 20}">no predictions yet</text>',
                      "glass-to-label latency")
    hi = max(float(values.max()), 1.0) * 1.05
    counts, edges = np.histogram(values, bins=bins, range=(0.0, hi))
    bar_w = plot_w / bins
    scale = plot_h / max(int(counts.max()), 1)
    bars = "".join(
        f'<rect x="{left + i * bar_w + 1:.1f}" y="{top + plot_h - c * scale:.1f}" width="{bar_w - 2:.1f}" '
        f'height="{c * scale:.1f}" fill="#4a7fb5"/>' for i, c in enumerate(counts) if c)
    marks = []
    for name, q, color in (("p50", 50, "#2ca02c"), ("p95", 95, "#d62728")):
        value = float(np.percentile(values, q))
        x = left + plot_w * value / hi
        marks.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="{color}" '
                     f'stroke-dasharray="4 3"/><text x="{x + 3:.1f}" y="{top + 12}" fill="{color}">'
                     f'{name} {value:.0f} ms</text>')
    labels = (f'<text x="{left}" y="{height - 6}">0 ms</text>'
              f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end">{hi:.0f} ms</text>')
    return _frame(width, height, axes + bars + "".join(marks) + labels,
                  f"glass-to-label latency, last {values.size} predictions")
