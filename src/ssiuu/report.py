"""Figures for people: the erase-vs-hide curves and heat maps of every method."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Curves = tuple[Sequence[float], Sequence[float]]
Cells = Mapping[tuple[int, str], tuple[float, float]]


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


def _save(fig: plt.Figure, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
