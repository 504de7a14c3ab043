"""Stage `report`: the robustness summary and the audit report.

Reads every model's scores and relearning curves, calibrates each attack on the oracle,
and writes ``metrics/summary.json`` (one row per method), the relearning-curve figures
and ``reports/robustness.{md,html}``.
"""

import argparse
import json
from pathlib import Path

from ssiuu.attacks import curve_path
from ssiuu.errors import DataError
from ssiuu.params import load_params
from ssiuu.report import plot_relearning, robustness_markdown, write_report
from ssiuu.robustness import summarise
from ssiuu.runtime import run_stage
from ssiuu.tables import read_numeric_rows


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: not found (run `dvc repro` for the stage that writes it)")
    return json.loads(path.read_text())


def main() -> None:
    """Write metrics/summary.json, plots/relearning_*.png and reports/robustness.*."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--curves", default="plots/relearn")
    args = parser.parse_args()
    params = load_params(args.params)
    methods, attacks = params.unlearn.methods, params.relearn.attacks
    metrics = Path(args.metrics)
    scores = {name: _read_json(metrics / f"{name}.json") for name in ("base", "oracle")}
    scores.update({m: _read_json(metrics / "unlearned" / f"{m}.json") for m in methods})
    curves = {attack: {name: {lr: read_numeric_rows(curve_path(args.curves, attack, name, lr))
                              for lr in params.relearn.train.lrs}
                       for name in ["base", "oracle", *methods]}
              for attack in attacks}
    summary = summarise(methods, attacks, scores, curves, params.relearn.min_oracle_retain)
    summary = {"seed": params.relearn.seed, **summary}
    out = metrics / "summary.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    windows = {attack: {c["lr"]: c["counted_steps"] for c in summary["calibration"][attack]}
               for attack in attacks}
    figures = {}
    for key, caption in (("heldout_mcq", "Held-out forget MCQ while relearning"),
                         ("heldout_logprob", "Held-out forget log-prob while relearning")):
        path = plot_relearning(curves, windows, key, f"plots/relearning_{key}.png")
        figures[caption] = f"../{path}"
    figures["Attribution shift: D+ (erasing) and D- (hiding)"] = "../plots/spurious_curves.png"
    text = robustness_markdown(summary, methods, attacks, figures, [params.relearn.seed])
    for path in write_report(text, "reports/robustness.md"):
        print(path)


if __name__ == "__main__":
    run_stage(main)
