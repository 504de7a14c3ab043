"""Figures: the erase-or-hide plots (neuron shifts, regulariser ratio) and the relearning curves."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ssiuu.config.seeds import mean_std  # noqa: E402

Curves = tuple[Sequence[float], Sequence[float]]
Cells = Mapping[tuple[int, str], tuple[float, float]]
# attack -> model -> learning rate -> relearning curve (one dict of scores per scored step)
RelearnCurves = Mapping[str, Mapping[str, Mapping[float, Sequence[Mapping[str, float]]]]]


def plot_shift_curves(curves: Mapping[str, Curves], top_m: int, out: str | Path) -> Path:
    """One panel per method: cumulative top-m sums of D+ (erasing) and D− (hiding)."""
    methods = list(curves)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.0),
                             sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        d_plus, d_minus = curves[method]
        m = range(1, len(d_plus) + 1)
        ax.plot(m, d_plus, label="D+ (erasing)", color="tab:blue")
        ax.plot(m, d_minus, label="D− (hiding)", color="tab:red")
        ax.axvline(top_m, color="grey", linewidth=0.6, linestyle=":")
        ax.set_title(method)
        ax.set_xlabel("top-m neurons")
    axes[0][0].set_ylabel("cumulative attribution shift")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def plot_shift_heatmaps(cells: Mapping[str, Cells], out: str | Path) -> Path:
    """Per method, D− minus D+ summed per module (rows) and layer (columns).

    Red cells hide more than they erase, blue cells erase more than they hide.
    """
    methods = list(cells)
    first = cells[methods[0]]
    modules = list(dict.fromkeys(module for _, module in first))
    layers = sorted({layer for layer, _ in first})
    grids = {method: [[cells[method][(layer, module)][1] - cells[method][(layer, module)][0]
                       for layer in layers] for module in modules] for method in methods}
    scale = max((abs(v) for grid in grids.values() for row in grid for v in row), default=1.0)
    scale = scale if scale > 0 and math.isfinite(scale) else 1.0
    fig, axes = plt.subplots(1, len(methods), squeeze=False, layout="constrained",
                             figsize=(2.5 + len(methods) * (0.8 + 0.35 * len(layers)),
                                      0.4 * len(modules) + 1.5))
    for ax, method in zip(axes[0], methods, strict=True):
        image = ax.imshow(grids[method], cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
        ax.set_title(method)
        ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_xlabel("layer")
        ax.set_yticks(range(len(modules)), modules if ax is axes[0][0] else [""] * len(modules))
    fig.colorbar(image, ax=axes[0].tolist(), label="D− − D+ (hiding − erasing)")
    return _save(fig, out)


def plot_regulariser_ratio(curves: Mapping[str, Mapping[int, Sequence[Mapping[str, float]]]],
                           out: str | Path) -> Path:
    """One panel per regularised method: ‖regulariser gradient‖ / ‖base loss gradient‖ at
    each unlearning step (log scale), one line per seed; ``curves[method][seed]`` is that
    run's unlearning curve (rows without the ratio, such as evaluation rows, are skipped).
    With no method, one panel that says so (the figure is a pipeline output either way)."""
    methods = list(curves)
    if not methods:
        fig, ax = plt.subplots(figsize=(3.4, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no regularised method in unlearn.methods", ha="center",
                va="center")
        return _save(fig, out)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.4 * len(methods), 3.0),
                             sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        for seed, rows in curves[method].items():
            points = [(row["step"], row["reg_grad_ratio"]) for row in rows
                      if row.get("reg_grad_ratio") and row["step"] > 1]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=f"seed {seed}")
        ax.set_yscale("log")
        ax.set_title(method)
        ax.set_xlabel("unlearning step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[0][0].set_ylabel("‖regulariser grad‖ / ‖loss grad‖")
    fig.tight_layout()
    return _save(fig, out)


def _save(fig: plt.Figure, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _mean_curve(curves: Sequence[Sequence[Mapping[str, float]]],
                key: str) -> tuple[list[float], list[float], list[float]]:
    """Steps, mean and standard deviation of ``key`` over the seeds' curves, per step."""
    by_step: dict[float, list[float]] = {}
    for curve in curves:
        for point in curve:
            if key in point:
                by_step.setdefault(point["step"], []).append(point[key])
    steps = sorted(by_step)
    stats = [mean_std(by_step[step]) for step in steps]
    return steps, [mean for mean, _ in stats], [std for _, std in stats]


def plot_relearning(curves: Mapping[int, RelearnCurves],
                    windows: Mapping[str, Mapping[float, int]], key: str,
                    out: str | Path) -> Path:
    """Grid of relearning curves: one row per attack, one column per learning rate, one
    line per model (the mean over seeds, a band of ± one standard deviation); the steps
    that the oracle calibration does not count in every seed are shaded."""
    seeds = list(curves)
    first = curves[seeds[0]]
    attacks = list(first)
    lrs = sorted({lr for attack in attacks for model in first[attack].values() for lr in model})
    fig, axes = plt.subplots(len(attacks), len(lrs), squeeze=False, sharey=True,
                             figsize=(3.6 * len(lrs), 2.6 * len(attacks)), layout="constrained")
    for row, attack in enumerate(attacks):
        for col, lr in enumerate(lrs):
            ax = axes[row][col]
            last = 0.0
            for name in first[attack]:
                steps, mean, std = _mean_curve(
                    [curves[seed][attack][name].get(lr, []) for seed in seeds], key)
                last = max([last, *steps])
                style = {"color": "black", "linestyle": "--"} if name == "oracle" else (
                    {"color": "grey", "linestyle": ":"} if name == "base" else {})
                (line,) = ax.plot(steps, mean, label=name, **style)
                if len(seeds) > 1:
                    ax.fill_between(steps, [m - s for m, s in zip(mean, std, strict=True)],
                                    [m + s for m, s in zip(mean, std, strict=True)],
                                    color=line.get_color(), alpha=0.15, linewidth=0)
            counted = windows[attack].get(lr, 0)
            if counted < last:
                ax.axvspan(counted, last, color="lightgrey", alpha=0.5, linewidth=0)
            ax.set_title(f"{attack}, lr {lr:g}", fontsize=9)
            ax.set_xlabel("attack step")
        axes[row][0].set_ylabel(key.replace("_", " ")
                                + (f" (mean of {len(seeds)} seeds)" if len(seeds) > 1 else ""))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    return _save(fig, out)
