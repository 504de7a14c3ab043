"""Stage `evaluate`: score a saved model, every seed, on the forget, retain and utility sets."""

import argparse
import json

from ssiuu import layout
from ssiuu.finetune import read_splits
from ssiuu.metrics import evaluate_rows
from ssiuu.models import load_saved
from ssiuu.params import load_params
from ssiuu.runtime import configure, device, run_stage
from ssiuu.seeds import across_seeds, existing_seed_dir


def main() -> None:
    """Write metrics/<model>.json (metrics/unlearned/<method>.json for a method):
    <split>_acc, <split>_mcq and <split>_logprob per seed, their mean and standard
    deviation."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="base, oracle or an unlearning method")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    splits = read_splits(layout.PREPARED, tuple(params.evaluate.splits))
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
        per_seed[seed] = scores
    metrics = {"model": args.model, **across_seeds(per_seed)}
    layout.write_json(metrics, layout.evaluation_metrics(args.model))
    print(json.dumps(metrics["mean"]))


if __name__ == "__main__":
    run_stage(main)
