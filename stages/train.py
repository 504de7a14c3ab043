"""Stages `base` and `oracle`: train the model on its recipe's splits and save it.

`base` learns every fact (forget included): the model that leaked the data. `oracle`
follows the same recipe without the forget set: the model that never saw it.
"""

import argparse
import csv
import json
from pathlib import Path

from ssiuu.finetune import initial_model, load_tokenizer_dir, read_splits, train_on_splits
from ssiuu.models import save_model
from ssiuu.params import load_params
from ssiuu.runtime import configure, run_stage


def main() -> None:
    """Write models/<role>/, plots/train_<role>.csv and metrics/train_<role>.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["base", "oracle"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/prepared")
    parser.add_argument("--tokenizer", default="models/tokenizer")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    recipe = getattr(params, args.role)
    splits = read_splits(args.data, tuple(recipe.splits))
    tokenizer = load_tokenizer_dir(args.tokenizer)
    model = initial_model(params.model, tokenizer, recipe.seed)
    result = train_on_splits(model, tokenizer, splits, recipe, params.model.max_length,
                             desc=args.role)
    if not result.main_process:
        return
    save_model(model, tokenizer, Path("models") / args.role)
    plot = Path("plots") / f"train_{args.role}.csv"
    plot.parent.mkdir(parents=True, exist_ok=True)
    with plot.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(result.history[0]) if result.history
                                else ["step", "loss", "lr"])
        writer.writeheader()
        writer.writerows(result.history)
    summary = {"steps": result.steps, "seconds": round(result.seconds, 2), "seed": recipe.seed,
               "final_loss": result.history[-1]["loss"] if result.history else None}
    out = Path("metrics") / f"train_{args.role}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    provenance = {"role": args.role, "seed": recipe.seed, "model": params.model.name,
                  "recipe": recipe.model_dump()}
    (Path("models") / args.role / "training.json").write_text(json.dumps(provenance, indent=2))
    print(f"{args.role}: {result.steps} steps in {result.seconds:.1f}s -> models/{args.role}")


if __name__ == "__main__":
    run_stage(main)
