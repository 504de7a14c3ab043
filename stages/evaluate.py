"""Stage `evaluate`: score a saved model, every seed, on the forget, retain and utility sets,
and measure membership inference on the forget set against the holdout set."""

import argparse
import json

from ssiuu.config import layout
from ssiuu.config.params import HOLDOUT, load_params
from ssiuu.config.seeds import across_seeds, existing_seed_dir
from ssiuu.model.finetune import read_splits
from ssiuu.model.loading import load_saved
from ssiuu.model.runtime import configure, device, run_stage
from ssiuu.scoring.metrics import evaluate_rows
from ssiuu.scoring.privacy import membership_aucs


def main() -> None:
    """Write metrics/<model>.json (metrics/unlearned/<method>.json for a method):
    <split>_acc, <split>_mcq and <split>_logprob per seed and, where the data has a
    holdout split, mia_<attack>_auc (telling forget from holdout facts), their mean and
    standard deviation."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="base, oracle or an unlearning method")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    splits = read_splits(layout.PREPARED, tuple(params.evaluate.splits))
    membership = (read_splits(layout.PREPARED, ("forget", HOLDOUT))
                  if layout.split_file(HOLDOUT).is_file() else None)
    model_dirs = {seed: existing_seed_dir(layout.model_root(args.model), seed)
                  for seed in params.seeds}
    per_seed = {}
    for seed, model_dir in model_dirs.items():
        model, tokenizer = load_saved(model_dir)
        model.to(device())
        scores: dict[str, float] = {}
        for split, rows in splits.items():
            for key, value in evaluate_rows(model, tokenizer, rows, params.model.max_length,
                                            params.evaluate.batch_size).items():
                scores[f"{split}_{key}"] = round(value, 4) if isinstance(value, float) else value
        if membership is not None:
            aucs = membership_aucs(model, tokenizer, membership["forget"], membership[HOLDOUT],
                                   params.model.max_length, params.evaluate.mia_k,
                                   params.evaluate.batch_size)
            scores.update({f"mia_{attack}_auc": round(value, 4) for attack, value in aucs.items()})
            scores["mia_members_n"] = len(membership["forget"])
            scores["mia_nonmembers_n"] = len(membership[HOLDOUT])
        per_seed[seed] = scores
    metrics = {"model": args.model, **across_seeds(per_seed)}
    layout.write_json(metrics, layout.evaluation_metrics(args.model))
    print(json.dumps(metrics["mean"]))


if __name__ == "__main__":
    run_stage(main)
