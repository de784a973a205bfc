"""The report's figures, each drawn from numbers read off the run's files and returned as PNG bytes.

Matplotlib's object API on the Agg canvas: no pyplot, so no global figure state and no GUI backend is ever
picked, whatever the machine has. Every function returns None when its input holds nothing to draw, and the
report then shows no figure for it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
# Matplotlib's default cycle, named so the stacked and grouped bars of one figure keep their colours apart.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")


def png(figure: Figure) -> bytes:
    """Render a figure to PNG bytes (Agg), without metadata that changes from one matplotlib to the next; the
    bounding box is fitted so legends placed beside the axes are not cut off."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
    return buffer.getvalue()


def _series(log: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the log lines that have both `step` and a numeric `key`: Trainer logs mix training
    lines, eval lines and a final summary line, each with its own keys."""
    points = [(row["step"], row[key]) for row in log
              if isinstance(row.get("step"), int | float) and isinstance(row.get(key), int | float)
              and not isinstance(row.get(key), bool)]
    return [p[0] for p in points], [p[1] for p in points]


def loss_curves(log: Sequence[dict[str, Any]], title: str) -> bytes | None:
    """Training and evaluation loss against the optimizer step (a Trainer's log history)."""
    figure = Figure(figsize=(7, 3.6))
    axes = figure.add_subplot()
    drawn = False
    for key, label, style in (("loss", "train loss", "-o"), ("eval_loss", "eval loss", "-s")):
        steps, values = _series(log, key)
        if steps:
            axes.plot(steps, values, style, markersize=3, label=label)
            drawn = True
    if not drawn:
        return None
    axes.set(title=title, xlabel="step", ylabel="loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return png(figure)


def curve_panels(log: Sequence[dict[str, Any]], title: str, panels: Sequence[tuple[str, Sequence[str]]]
                 ) -> bytes | None:
    """One panel per (y label, log keys) side by side, each key a line against the step; panels whose keys are
    all absent from the log are left out."""
    present = [(label, [key for key in keys if _series(log, key)[0]]) for label, keys in panels]
    present = [(label, keys) for label, keys in present if keys]
    if not present:
        return None
    figure = Figure(figsize=(4.2 * len(present), 3.4))
    for index, (label, keys) in enumerate(present, start=1):
        axes = figure.add_subplot(1, len(present), index)
        for key in keys:
            axes.plot(*_series(log, key), "-", marker="o", markersize=2, label=key)
        axes.set(xlabel="step", ylabel=label, title=label)
        axes.grid(alpha=0.3)
        if len(keys) > 1:
            axes.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    return png(figure)


def bars(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str, *,
         ylim: tuple[float, float] | None = None, value_format: str = "{:.2f}") -> bytes | None:
    """Plain bars with their value written on top."""
    if not labels:
        return None
    figure = Figure(figsize=(max(5.0, 1.4 * len(labels) + 1.5), 3.8))
    axes = figure.add_subplot()
    drawn = axes.bar(range(len(labels)), values, color=COLORS[0])
    axes.bar_label(drawn, labels=[value_format.format(v) for v in values], fontsize=8, padding=2)
    axes.set_xticks(range(len(labels)), labels, fontsize=8)
    axes.set(title=title, ylabel=ylabel)
    if ylim:
        axes.set_ylim(*ylim)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return png(figure)


def grouped_bars(groups: Sequence[str], series: dict[str, Sequence[float | None]], title: str, ylabel: str, *,
                 errors: dict[str, Sequence[tuple[float, float] | None]], ylim: tuple[float, float] | None = None
                 ) -> bytes | None:
    """Vertical bars, one group per label on the x axis and one coloured bar per series within it, each with its
    (low, high) interval from `errors` where known; a None value leaves its bar out."""
    if not groups or not series:
        return None
    figure = Figure(figsize=(max(6.0, 0.35 * len(groups) * len(series) + 2.5), 4.2))
    axes = figure.add_subplot()
    width = 0.8 / len(series)
    for index, (name, values) in enumerate(series.items()):
        shift = (index - (len(series) - 1) / 2) * width
        kept = [(g, value, errors[name][g]) for g, value in enumerate(values) if value is not None]
        if not kept:
            continue
        below = [max(0.0, value - interval[0]) if interval else 0.0 for _, value, interval in kept]
        above = [max(0.0, interval[1] - value) if interval else 0.0 for _, value, interval in kept]
        axes.bar([g + shift for g, _, _ in kept], [value for _, value, _ in kept], width, label=name,
                 color=COLORS[index % len(COLORS)], yerr=[below, above], capsize=2)
    axes.set_xticks(range(len(groups)), groups, rotation=25 if len(groups) > 3 else 0,
                    ha="right" if len(groups) > 3 else "center", fontsize=8)
    axes.set(title=title, ylabel=ylabel)
    if ylim:
        axes.set_ylim(*ylim)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return png(figure)


def stacked_bars(groups: Sequence[str], layers: dict[str, Sequence[float]], title: str, ylabel: str
                 ) -> bytes | None:
    """Horizontal stacked bars: one bar per group, one coloured segment per layer (e.g. failure class)."""
    if not groups or not layers:
        return None
    figure = Figure(figsize=(8, 1.6 + 0.45 * len(groups)))
    axes = figure.add_subplot()
    left = [0.0] * len(groups)
    for index, (name, values) in enumerate(layers.items()):
        axes.barh(range(len(groups)), values, left=left, label=name, color=COLORS[index % len(COLORS)])
        left = [a + b for a, b in zip(left, values, strict=True)]
    axes.set_yticks(range(len(groups)), groups, fontsize=8)
    axes.invert_yaxis()
    axes.set(title=title, xlabel=ylabel)
    axes.grid(axis="x", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return png(figure)


def horizontal_grouped_bars(groups: Sequence[str], series: dict[str, Sequence[float | None]], xlabel: str
                            ) -> bytes | None:
    """Horizontal grouped bars for many groups (per-domain rates): one row per group, one bar per series; the
    figure grows with the rows so the labels stay legible, and the rate axis is labelled at the top too. No
    title: the legend sits above the axes, and the report's caption says what it shows."""
    if not groups or not series:
        return None
    bar = 0.8 / len(series)
    figure = Figure(figsize=(9, 1.2 + len(groups) * (0.12 + 0.09 * len(series))))
    axes = figure.add_subplot()
    for index, (name, values) in enumerate(series.items()):
        rows = [(g + (index - (len(series) - 1) / 2) * bar, v) for g, v in enumerate(values) if v is not None]
        axes.barh([r[0] for r in rows], [r[1] for r in rows], bar, label=name, color=COLORS[index % len(COLORS)])
    axes.set_yticks(range(len(groups)), groups, fontsize=8)
    axes.set_ylim(len(groups) - 0.5, -0.5)
    axes.set(xlabel=xlabel)
    axes.set_xlim(0, 1)
    axes.tick_params(axis="x", labeltop=True)
    axes.grid(axis="x", alpha=0.3)
    axes.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.02), ncol=min(3, len(series)))
    figure.tight_layout()
    return png(figure)


def side_by_side_bars(labels: Sequence[str], left: tuple[str, Sequence[float]], right: tuple[str, Sequence[float]],
                      title: str) -> bytes | None:
    """Two horizontal bar panels over the same labels (wall time and peak memory per stage)."""
    if not labels:
        return None
    figure = Figure(figsize=(10, 1.2 + 0.35 * len(labels)))
    for index, (xlabel, values) in enumerate((left, right), start=1):
        axes = figure.add_subplot(1, 2, index)
        drawn = axes.barh(range(len(labels)), values, color=COLORS[index - 1])
        axes.bar_label(drawn, labels=[f"{v:,.0f}" if v >= 10 else f"{v:.2g}" for v in values], fontsize=7, padding=2)
        axes.set_yticks(range(len(labels)), labels if index == 1 else [""] * len(labels), fontsize=8)
        axes.invert_yaxis()
        axes.set_xlabel(xlabel)
        axes.set_xlim(0, max(values, default=0) * 1.2 or 1)
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return png(figure)
