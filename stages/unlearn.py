"""Stage `unlearn@<method>`: unlearn the forget set from the base model with one method.

Stops as soon as the forget score reaches the threshold of ``unlearn.stop`` (with
``unlearn.train.max_steps`` as a cap), at the lowest learning rate of ``unlearn.train.lrs``
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
from ssiuu.tables import write_rows
from ssiuu.unlearning import stop_thresholds, unlearn


def main() -> None:
    """Write models/unlearned/<method>/, metrics/unlearn/<method>.json, plots/unlearn/."""
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
    thresholds = stop_thresholds(params.unlearn.stop, oracle)
    splits = read_splits(args.data, ("forget", "retain"))
    outcome = unlearn(args.method, args.base, splits["forget"], splits["retain"],
                      params.unlearn, thresholds, params.model.max_length,
                      params.evaluate.batch_size, device())
    out_dir = save_model(outcome.model, outcome.tokenizer, Path("models/unlearned") / args.method)
    knobs = getattr(params.unlearn.losses, args.method).model_dump()
    summary = {"method": args.method, "seed": params.unlearn.seed, "lr": outcome.lr,
               "steps": outcome.steps, "reached": outcome.reached,
               **{f"stop_forget_{metric}": round(value, 4) for metric, value in thresholds.items()},
               "seconds": round(sum(a.seconds for a in outcome.attempts), 2)}
    provenance = {**summary, "role": "unlearned", "losses": knobs,
                  "attempts": [asdict(attempt) for attempt in outcome.attempts]}
    (out_dir / "training.json").write_text(json.dumps(provenance, indent=2) + "\n")
    metrics = Path("metrics/unlearn") / f"{args.method}.json"
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps(summary, indent=2) + "\n")
    write_rows(Path("plots/unlearn") / f"{args.method}.csv", outcome.history)
    verdict = "reached" if outcome.reached else "did NOT reach"
    goal = " and ".join(f"forget {metric} <= {value:.3f}" for metric, value in thresholds.items())
    print(f"{args.method}: {verdict} {goal} in {outcome.steps} steps at lr {outcome.lr:g} "
          f"-> {out_dir}")
    if not outcome.reached:
        print(f"warning: {args.method} did not reach the stop threshold; raise "
              "unlearn.train.lrs or unlearn.train.max_steps in params.yaml", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
