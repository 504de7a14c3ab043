"""Stage `evaluate`: score a saved model on the forget, retain and utility sets."""

import argparse
import json
from pathlib import Path

from ssiuu.finetune import read_splits
from ssiuu.metrics import evaluate_rows
from ssiuu.models import load_saved
from ssiuu.params import load_params
from ssiuu.runtime import configure, device, run_stage


def main() -> None:
    """Write metrics/<model>.json with <split>_acc, <split>_mcq and <split>_logprob."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="name of a folder under models/ (base, oracle, ...)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/prepared")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    splits = read_splits(args.data, tuple(params.evaluate.splits))
    model, tokenizer = load_saved(Path("models") / args.model)
    model.to(device())
    provenance = Path("models") / args.model / "training.json"
    seed = json.loads(provenance.read_text())["seed"] if provenance.is_file() else None
    metrics: dict[str, float | int | str | None] = {"model": args.model, "seed": seed}
    for split, rows in splits.items():
        scores = evaluate_rows(model, tokenizer, rows, params.model.max_length,
                               params.evaluate.batch_size)
        for key, value in scores.items():
            metrics[f"{split}_{key}"] = round(value, 4) if isinstance(value, float) else value
    out = Path("metrics") / f"{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))


if __name__ == "__main__":
    run_stage(main)
