"""Stage `unlearn@<method>`: unlearn the forget set from the base model with one method.

For every seed, starts from that seed's base model and stops as soon as the forget score
reaches the threshold of ``unlearn.stop`` (``oracle`` is that seed's oracle), with
``unlearn.train.max_steps`` as a cap, at the lowest learning rate of ``unlearn.train.lrs``
that gets there. Every step's forget / retain scores and loss terms go to a DVC plot.
"""

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ssiuu.finetune import read_splits
from ssiuu.models import save_model
from ssiuu.params import METHODS, load_params
from ssiuu.runtime import configure, device, run_stage
from ssiuu.seeds import across_seeds, existing_seed_dir, seed_dir, seed_record
from ssiuu.tables import write_rows
from ssiuu.unlearning import stop_thresholds, unlearn


def main() -> None:
    """Write models/unlearned/<method>/seed_<s>/, metrics/unlearn/<method>.json and
    plots/unlearn/<method>/seed_<s>.csv."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/prepared")
    parser.add_argument("--base", default="models/base")
    parser.add_argument("--oracle-metrics", default="metrics/oracle.json")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    oracle_path = Path(args.oracle_metrics)
    oracle = json.loads(oracle_path.read_text()) if oracle_path.is_file() else None
    rules = {seed: stop_thresholds(params.unlearn.stop, None if oracle is None else
                                   seed_record(oracle, seed, str(oracle_path)))
             for seed in params.seeds}
    thresholds = {seed: rule.thresholds for seed, rule in rules.items()}
    bases = {seed: existing_seed_dir(args.base, seed) for seed in params.seeds}
    splits = read_splits(args.data, ("forget", "retain"))
    knobs = getattr(params.unlearn.losses, args.method).model_dump()
    per_seed = {}
    for seed in params.seeds:
        outcome = unlearn(args.method, bases[seed], splits["forget"], splits["retain"],
                          params.unlearn, thresholds[seed], params.model.max_length,
                          params.evaluate.batch_size, device(), seed)
        out_dir = save_model(outcome.model, outcome.tokenizer,
                             seed_dir(Path("models/unlearned") / args.method, seed))
        summary = {"lr": outcome.lr, "steps": outcome.steps, "reached": outcome.reached,
                   **{f"stop_forget_{metric}": round(value, 4)
                      for metric, value in thresholds[seed].items()},
                   "seconds": round(sum(a.seconds for a in outcome.attempts), 2)}
        if rules[seed].note:
            summary["stop_note"] = rules[seed].note
            print(f"{args.method} seed {seed}: {rules[seed].note}")
        per_seed[seed] = summary
        provenance = {"method": args.method, "seed": seed, **summary, "role": "unlearned",
                      "losses": knobs,
                      "attempts": [asdict(attempt) for attempt in outcome.attempts]}
        (out_dir / "training.json").write_text(json.dumps(provenance, indent=2) + "\n")
        write_rows(Path("plots/unlearn") / args.method / f"seed_{seed}.csv", outcome.history)
        verdict = "reached" if outcome.reached else "did NOT reach"
        goal = " and ".join(f"forget {metric} <= {value:.3f}"
                            for metric, value in thresholds[seed].items())
        print(f"{args.method} seed {seed}: {verdict} {goal} in {outcome.steps} steps at lr "
              f"{outcome.lr:g} -> {out_dir}")
        if not outcome.reached:
            print(f"warning: {args.method} seed {seed} did not reach the stop threshold; "
                  "raise unlearn.train.lrs or unlearn.train.max_steps in params.yaml",
                  file=sys.stderr)
    metrics = Path("metrics/unlearn") / f"{args.method}.json"
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps({"method": args.method,
                                   "reached": all(r["reached"] for r in per_seed.values()),
                                   **across_seeds(per_seed)}, indent=2) + "\n")


if __name__ == "__main__":
    run_stage(main)
