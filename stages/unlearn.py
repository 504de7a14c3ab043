"""Stage `unlearn@<method>`: unlearn the forget set from the base model with one method.

For every seed, starts from that seed's base model and stops as soon as the forget score
reaches the threshold of ``unlearn.stop`` (``oracle`` is that seed's oracle), with
``unlearn.train.max_steps`` as a cap, at the lowest learning rate of ``unlearn.train.lrs``
that gets there. Every step's forget / retain scores and loss terms go to a DVC plot.
Runs as it is under ``accelerate launch`` (every process computes, the first writes).
"""

import argparse
import sys
from dataclasses import asdict

from ssiuu import layout
from ssiuu.finetune import read_splits
from ssiuu.models import save_model
from ssiuu.params import METHODS, load_params
from ssiuu.provenance import prepared_manifest, provenance_of, write_provenance
from ssiuu.runtime import configure, device, is_main_process, run_stage
from ssiuu.seeds import across_seeds, existing_seed_dir, seed_dir, seed_record
from ssiuu.tables import write_rows
from ssiuu.unlearning import gradient_summary, stop_thresholds, unlearn


def main() -> None:
    """Write models/unlearned/<method>/seed_<s>/ (with provenance.json),
    metrics/unlearn/<method>.json and plots/unlearn/<method>/seed_<s>.csv."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads, params.runtime.gradient_checkpointing)
    oracle_path = layout.evaluation_metrics("oracle")
    oracle = layout.read_json(oracle_path) if oracle_path.is_file() else None
    rules = {seed: stop_thresholds(params.unlearn.stop, None if oracle is None else
                                   seed_record(oracle, seed, str(oracle_path)))
             for seed in params.seeds}
    thresholds = {seed: rule.thresholds for seed, rule in rules.items()}
    bases = {seed: existing_seed_dir(layout.model_root("base"), seed) for seed in params.seeds}
    splits = read_splits(layout.PREPARED, ("forget", "retain"))
    manifest = prepared_manifest()
    knobs = getattr(params.unlearn.losses, args.method).model_dump()
    settings = {"train": params.unlearn.train.model_dump(),
                "stop": params.unlearn.stop.model_dump(), "losses": knobs}
    per_seed = {}
    for seed in params.seeds:
        outcome = unlearn(args.method, bases[seed], splits["forget"], splits["retain"],
                          params.unlearn, thresholds[seed], params.model.max_length,
                          params.evaluate.batch_size, device(), seed)
        if not is_main_process():
            continue
        out_dir = save_model(outcome.model, outcome.tokenizer,
                             seed_dir(layout.model_root(args.method), seed))
        summary = {"lr": outcome.lr, "steps": outcome.steps, "reached": outcome.reached,
                   **{f"stop_forget_{metric}": round(value, 4)
                      for metric, value in thresholds[seed].items()},
                   **{key: float(f"{value:.4g}")
                      for key, value in gradient_summary(outcome.history).items()}}
        if rules[seed].note:
            summary["stop_note"] = rules[seed].note
            print(f"{args.method} seed {seed}: {rules[seed].note}")
        if outcome.note:
            print(f"{args.method} seed {seed}: {outcome.note}")
        per_seed[seed] = summary
        write_provenance(provenance_of(
            "unlearned", seed, model_source=params.model.name, splits=("forget", "retain"),
            params={"unlearn": settings}, manifest=manifest, parent=bases[seed],
            method=args.method,
            run={**summary, "seconds": round(sum(a.seconds for a in outcome.attempts), 2),
                 "attempts": [asdict(attempt) for attempt in outcome.attempts]}), out_dir)
        write_rows(layout.unlearning_curve(args.method, seed), outcome.history)
        verdict = "reached" if outcome.reached else "did NOT reach"
        goal = " and ".join(f"forget {metric} <= {value:.3f}"
                            for metric, value in thresholds[seed].items())
        print(f"{args.method} seed {seed}: {verdict} {goal} in {outcome.steps} steps at lr "
              f"{outcome.lr:g} -> {out_dir}")
        if not outcome.reached:
            print(f"warning: {args.method} seed {seed} did not reach the stop threshold; "
                  "raise unlearn.train.lrs or unlearn.train.max_steps in params.yaml",
                  file=sys.stderr)
    if not per_seed:  # not the main process
        return
    layout.write_json({"method": args.method,
                       "reached": all(r["reached"] for r in per_seed.values()),
                       **across_seeds(per_seed)}, layout.unlearning_metrics(args.method))


if __name__ == "__main__":
    run_stage(main)
