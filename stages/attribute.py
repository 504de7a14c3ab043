"""Stage `attribute`: neuron attribution of the base model on the forget set.

For every seed's base model, every neuron (each output of each linear layer inside a
transformer block) and every forget fact: the max and the min over answer positions of
``A = h · ∂P(answer)/∂h``. The `diagnose` stages compare each unlearned model against it.
"""

import argparse

from ssiuu.config import layout
from ssiuu.config.params import load_params
from ssiuu.config.seeds import existing_seed_dir
from ssiuu.data.encoding import encode_rows
from ssiuu.model.finetune import read_splits
from ssiuu.model.loading import load_saved
from ssiuu.model.runtime import configure, device, run_stage
from ssiuu.unlearning.attribution import neuron_attribution


def main() -> None:
    """Write models/attribution/<model>/seed_<s>.pt."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?", default="base",
                        help="base, oracle or an unlearning method (default: base)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    forget = read_splits(layout.PREPARED, ("forget",))["forget"]
    model_dirs = {seed: existing_seed_dir(layout.model_root(args.model), seed)
                  for seed in params.seeds}
    for seed, model_dir in model_dirs.items():
        model, tokenizer = load_saved(model_dir)
        model.to(device())
        examples = encode_rows(tokenizer, forget, params.model.max_length)
        attribution = neuron_attribution(model, examples, tokenizer.pad_token_id,
                                         params.attribution.batch_size)
        out = layout.attribution_file(args.model, seed)
        attribution.save(out)
        n_examples, n_neurons = attribution.maxima.shape
        print(f"{args.model} seed {seed}: {n_neurons} neurons in {len(attribution.sites)} "
              f"linear layers, {n_examples} forget facts -> {out}")

if __name__ == "__main__":
    run_stage(main)
