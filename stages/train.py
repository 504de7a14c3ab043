"""Stages `base` and `oracle`: train the model on its recipe's splits, once per seed.

`base` learns every fact (forget included): the model that leaked the data. `oracle`
follows the same recipe without the forget set: the model that never saw it. Seed s fixes
the initialisation of a scratch model and the batch order; base and oracle of one seed
start from the same weights.
"""

import argparse

from ssiuu.config import layout
from ssiuu.config.params import load_params
from ssiuu.config.seeds import across_seeds, seed_dir
from ssiuu.config.sources import SCRATCH
from ssiuu.data.tables import write_rows
from ssiuu.model.finetune import initial_model, load_tokenizer_dir, read_splits, train_on_splits
from ssiuu.model.loading import save_model
from ssiuu.model.runtime import configure, run_stage
from ssiuu.records.provenance import prepared_manifest, provenance_of, write_provenance


def main() -> None:
    """Write models/<role>/seed_<s>/ (with provenance.json), plots/train/<role>/seed_<s>.csv
    and metrics/train_<role>.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["base", "oracle"])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads, params.runtime.gradient_checkpointing)
    recipe = getattr(params, args.role)
    splits = read_splits(layout.PREPARED, tuple(recipe.splits))
    manifest = prepared_manifest()
    tokenizer = load_tokenizer_dir(layout.TOKENIZER)
    per_seed = {}
    for seed in params.seeds:
        model = initial_model(params.model, tokenizer, seed, layout.PRETRAINED)
        result = train_on_splits(model, tokenizer, splits, recipe, params.model.max_length,
                                 desc=f"{args.role} seed {seed}", seed=seed)
        if not result.main_process:
            continue
        out_dir = save_model(model, tokenizer, seed_dir(layout.model_root(args.role), seed))
        write_rows(layout.training_curve(args.role, seed), result.history)
        final_loss = result.history[-1]["loss"] if result.history else None
        per_seed[seed] = {"steps": result.steps, "final_loss": final_loss}
        write_provenance(provenance_of(
            args.role, seed, model_source=params.model.name, splits=recipe.splits,
            params={"model": params.model.model_dump(), args.role: recipe.model_dump()},
            manifest=manifest,
            parent=None if params.model.name == SCRATCH else params.model.name,
            run={**per_seed[seed], "seconds": round(result.seconds, 2)}), out_dir)
        print(f"{args.role} seed {seed}: {result.steps} steps in {result.seconds:.1f}s "
              f"-> {out_dir}")
    if per_seed:
        layout.write_json({"role": args.role, **across_seeds(per_seed)},
                          layout.training_metrics(args.role))


if __name__ == "__main__":
    run_stage(main)
