"""Stage `report`: the robustness summary and the audit report.

Reads every model's scores and relearning curves of every seed and whether each method
reached its unlearning stop (``metrics/unlearn``), calibrates each attack on that seed's
oracle, and writes ``metrics/summary.json`` (one row per method, mean and standard deviation
across seeds), the relearning-curve figures and ``reports/robustness.{md,html}``.
"""

import argparse
import json
from pathlib import Path

from ssiuu.attacks import curve_path
from ssiuu.errors import DataError
from ssiuu.params import load_params
from ssiuu.report import plot_relearning, robustness_markdown, write_report
from ssiuu.robustness import headline, summarise
from ssiuu.runtime import run_stage
from ssiuu.seeds import seed_record
from ssiuu.tables import read_numeric_rows


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: not found (run `dvc repro` for the stage that writes it)")
    return json.loads(path.read_text())


def main() -> None:
    """Write metrics/summary.json, metrics/headline/<model>.json, plots/relearning_*.png
    and reports/robustness.*."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--curves", default="plots/relearn")
    args = parser.parse_args()
    params = load_params(args.params)
    methods, attacks, seeds = params.unlearn.methods, params.relearn.attacks, params.seeds
    metrics = Path(args.metrics)
    names = ["base", "oracle", *methods]
    files = {name: metrics / f"{name}.json" for name in ("base", "oracle")}
    files.update({m: metrics / "unlearned" / f"{m}.json" for m in methods})
    evaluations = {name: _read_json(path) for name, path in files.items()}
    scores = {seed: {name: seed_record(evaluations[name], seed, str(files[name]))
                     for name in names} for seed in seeds}
    stop_files = {m: metrics / "unlearn" / f"{m}.json" for m in methods}
    stop_runs = {m: _read_json(path) for m, path in stop_files.items()}
    stops = {seed: {m: seed_record(stop_runs[m], seed, str(stop_files[m])) for m in methods}
             for seed in seeds}
    curves = {seed: {attack: {name: {lr: read_numeric_rows(curve_path(
                                          args.curves, attack, name, seed, lr))
                                     for lr in params.relearn.train.lrs}
                              for name in names}
                     for attack in attacks}
              for seed in seeds}
    summary = summarise(methods, attacks, scores, curves, params.relearn.min_oracle_retain,
                        stops)
    out = metrics / "summary.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    for name, row in headline(summary, attacks).items():
        path = metrics / "headline" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row, indent=2) + "\n")
    windows = {attack: {entry["lr"]: min(entry["counted_steps"].values())
                        for entry in summary["calibration"][attack]} for attack in attacks}
    figures = {}
    for key, caption in (("heldout_mcq", "Held-out forget MCQ while relearning"),
                         ("heldout_logprob", "Held-out forget log-prob while relearning")):
        path = plot_relearning(curves, windows, key, f"plots/relearning_{key}.png")
        figures[caption] = f"../{path}"
    figures["Attribution shift: D+ (erasing) and D- (hiding)"] = "../plots/spurious_curves.png"
    text = robustness_markdown(summary, methods, attacks, figures)
    for path in write_report(text, "reports/robustness.md"):
        print(path)


if __name__ == "__main__":
    run_stage(main)
