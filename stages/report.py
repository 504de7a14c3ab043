"""Stage `report`: the robustness summary and the audit report.

Reads every model's scores and relearning curves of every seed, the attribution's rank
correlation before and after each attack (``metrics/relearn``), each held-out fact's scores
under attack (``metrics/relearn_facts``, for the paired comparison of each regularised
method with its base method under each attack and in the worst case over them), and
whether each method reached its unlearning stop (``metrics/unlearn``), calibrates each
attack on that seed's oracle, and writes ``metrics/summary.json`` (one row per method,
mean and standard deviation across seeds), the relearning-curve figures and
``reports/robustness.{md,html}``.
"""

import argparse
import os

from ssiuu.attack.paired import compare_pairs, compare_worst_case
from ssiuu.attack.robustness import headline, summarise
from ssiuu.config import layout
from ssiuu.config.catalog import regularised_pairs
from ssiuu.config.params import load_params
from ssiuu.config.seeds import seed_record
from ssiuu.data.tables import read_numeric_rows
from ssiuu.model.runtime import run_stage
from ssiuu.report.document import robustness_markdown, write_report
from ssiuu.report.figures import plot_regulariser_ratio, plot_relearning


def main() -> None:
    """Write metrics/summary.json, metrics/headline/<model>.json, plots/relearning_*.png,
    plots/regulariser_ratio.png and reports/robustness.*."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    methods, attacks, seeds = params.unlearn.methods, params.relearn.attacks, params.seeds
    names = [*layout.REFERENCES, *methods]
    files = {name: layout.evaluation_metrics(name) for name in names}
    evaluations = {name: layout.read_json(path) for name, path in files.items()}
    scores = {seed: {name: seed_record(evaluations[name], seed, str(files[name]))
                     for name in names} for seed in seeds}
    stop_files = {m: layout.unlearning_metrics(m) for m in methods}
    stop_runs = {m: layout.read_json(path) for m, path in stop_files.items()}
    stops = {seed: {m: seed_record(stop_runs[m], seed, str(stop_files[m])) for m in methods}
             for seed in seeds}
    curves = {seed: {attack: {name: {lr: read_numeric_rows(
                                          layout.relearning_curve(attack, name, seed, lr))
                                     for lr in params.relearn.train.lrs}
                              for name in names}
                     for attack in attacks}
              for seed in seeds}
    relearn_files = {(attack, name): layout.relearn_metrics(attack, name)
                     for attack in attacks for name in names}
    relearn_runs = {key: layout.read_json(path) for key, path in relearn_files.items()}
    rhos = {seed: {attack: {name: seed_record(relearn_runs[attack, name], seed,
                                              str(relearn_files[attack, name]))
                            .get("attribution_rho_min") for name in names}
                   for attack in attacks} for seed in seeds}
    summary = summarise(methods, attacks, scores, curves, params.relearn.min_oracle_retain,
                        stops, rhos)
    pairs = {m: base for m, base in regularised_pairs().items()
             if m in methods and base in methods}
    facts = {seed: {attack: {name: layout.read_json(layout.relearning_facts(attack, name,
                                                                            seed))["runs"]
                             for name in {*pairs, *pairs.values(), "oracle"}}
                    for attack in attacks} for seed in seeds}
    summary["paired"] = compare_pairs(pairs, attacks, facts, summary["calibration"])
    summary["paired_worst_case"] = compare_worst_case(pairs, attacks, facts,
                                                      summary["calibration"])
    layout.write_json(summary, layout.SUMMARY)
    for name, row in headline(summary, attacks).items():
        layout.write_json(row, layout.headline_metrics(name))
    windows = {attack: {entry["lr"]: min(entry["counted_steps"].values())
                        for entry in summary["calibration"][attack]} for attack in attacks}
    report_dir = layout.ROBUSTNESS_REPORT.parent
    figures = {}
    for key, caption in (("heldout_mcq", "Held-out forget MCQ while relearning"),
                         ("heldout_logprob", "Held-out forget log-prob while relearning")):
        path = plot_relearning(curves, windows, key, layout.relearning_figure(key))
        figures[caption] = os.path.relpath(path, report_dir)
    figures["Attribution shift: D+ (erasing) and D- (hiding)"] = os.path.relpath(
        layout.SPURIOUS_CURVES, report_dir)
    regularisers = {m: getattr(params.unlearn.losses, m).model_dump() for m in methods
                    if m in regularised_pairs()}
    ratio = plot_regulariser_ratio(
        {m: {seed: read_numeric_rows(layout.unlearning_curve(m, seed)) for seed in seeds}
         for m in regularisers}, layout.REGULARISER_FIGURE)
    if regularisers:
        figures["The regulariser's gradient against the base loss's, per unlearning step"] = (
            os.path.relpath(ratio, report_dir))
    text = robustness_markdown(summary, methods, attacks, figures, regularisers,
                               params.tuning.retain_tolerance, params.registry.gate)
    for path in write_report(text, layout.ROBUSTNESS_REPORT):
        print(path)


if __name__ == "__main__":
    run_stage(main)
