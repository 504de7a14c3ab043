"""Stage `spurious`: every method's D+ / D− curves side by side, and their heat maps (PNG)."""

import argparse
import csv
from pathlib import Path

from ssiuu.config import layout
from ssiuu.config.params import load_params
from ssiuu.model.runtime import run_stage
from ssiuu.report.figures import plot_shift_curves, plot_shift_heatmaps


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    """Write plots/spurious_curves.png and plots/spurious_heatmap.png."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    methods = params.unlearn.methods
    curves, cells = {}, {}
    for method in methods:
        rows = _read(layout.diagnosis_curve(method))
        curves[method] = ([float(r["d_plus"]) for r in rows], [float(r["d_minus"]) for r in rows])
        cells[method] = {(int(r["layer"]), r["module"]): (float(r["d_plus"]), float(r["d_minus"]))
                         for r in _read(layout.diagnosis_sites(method))}
    print(plot_shift_curves(curves, params.attribution.top_m, layout.SPURIOUS_CURVES))
    print(plot_shift_heatmaps(cells, layout.SPURIOUS_HEATMAP))


if __name__ == "__main__":
    run_stage(main)
