"""Stage `evaluate`: score a saved model, every seed, on the forget, retain and utility sets."""

import argparse
import json
from pathlib import Path

from ssiuu.finetune import read_splits
from ssiuu.metrics import evaluate_rows
from ssiuu.models import load_saved
from ssiuu.params import load_params
from ssiuu.runtime import configure, device, run_stage
from ssiuu.seeds import across_seeds, existing_seed_dir


def main() -> None:
    """Write metrics/<model>.json: <split>_acc, <split>_mcq and <split>_logprob per seed,
    with their mean and standard deviation."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="name of a folder under models/ (base, oracle, ...)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/prepared")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    splits = read_splits(args.data, tuple(params.evaluate.splits))
    model_dirs = {seed: existing_seed_dir(Path("models") / args.model, seed)
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
    out = Path("metrics") / f"{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics["mean"]))


if __name__ == "__main__":
    run_stage(main)
