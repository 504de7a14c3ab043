"""Stages `base` and `oracle`: train the model on its recipe's splits, once per seed.

`base` learns every fact (forget included): the model that leaked the data. `oracle`
follows the same recipe without the forget set: the model that never saw it. Seed s fixes
the initialisation of a scratch model and the batch order; base and oracle of one seed
start from the same weights.
"""

import argparse
import json
from pathlib import Path

from ssiuu.finetune import initial_model, load_tokenizer_dir, read_splits, train_on_splits
from ssiuu.models import save_model
from ssiuu.params import load_params
from ssiuu.runtime import configure, run_stage
from ssiuu.seeds import across_seeds, seed_dir
from ssiuu.tables import write_rows


def main() -> None:
    """Write models/<role>/seed_<s>/, plots/train/<role>/seed_<s>.csv and
    metrics/train_<role>.json."""
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
    per_seed = {}
    for seed in params.seeds:
        model = initial_model(params.model, tokenizer, seed)
        result = train_on_splits(model, tokenizer, splits, recipe, params.model.max_length,
                                 desc=f"{args.role} seed {seed}", seed=seed)
        if not result.main_process:
            continue
        out_dir = save_model(model, tokenizer, seed_dir(Path("models") / args.role, seed))
        write_rows(Path("plots/train") / args.role / f"seed_{seed}.csv", result.history)
        per_seed[seed] = {"steps": result.steps, "seconds": round(result.seconds, 2),
                          "final_loss": result.history[-1]["loss"] if result.history
                          else None}
        provenance = {"role": args.role, "seed": seed, "model": params.model.name,
                      "recipe": recipe.model_dump()}
        (out_dir / "training.json").write_text(json.dumps(provenance, indent=2) + "\n")
        print(f"{args.role} seed {seed}: {result.steps} steps in {result.seconds:.1f}s "
              f"-> {out_dir}")
    if per_seed:
        out = Path("metrics") / f"train_{args.role}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"role": args.role, **across_seeds(per_seed)}, indent=2)
                       + "\n")


if __name__ == "__main__":
    run_stage(main)
