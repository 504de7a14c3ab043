"""Stage `diagnose@<method>`: erase or hide? D+ and D− of an unlearned model vs the base.

For every seed, attributes the unlearned model on the forget set as `attribute` did that
seed's base, then computes the paper's D+ (lost positive influence: erased) and D− (grown
negative influence: hidden): their top-m sums per seed (mean and standard deviation across
seeds), and the top-m cumulative curves and per-layer-and-module sums averaged over seeds.
"""

import argparse
import json

import torch

from ssiuu.config import layout
from ssiuu.config.errors import DataError
from ssiuu.config.params import METHODS, load_params
from ssiuu.config.seeds import across_seeds, existing_seed_dir
from ssiuu.data.encoding import encode_rows
from ssiuu.data.tables import write_rows
from ssiuu.model.finetune import read_splits
from ssiuu.model.loading import load_saved
from ssiuu.model.runtime import configure, device, run_stage
from ssiuu.unlearning.attribution import (
    NeuronAttribution,
    attribution_shift,
    most_hiding_site,
    neuron_attribution,
)

CURVE_LENGTH = 10


def main() -> None:
    """Write metrics/diagnose/<method>.json, plots/diagnose{,_sites}/<method>.csv."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    bases = {seed: layout.attribution_file("base", seed) for seed in params.seeds}
    for path in bases.values():
        if not path.is_file():
            raise DataError(f"{path}: not found (run `dvc repro attribute`)")
    models = {seed: existing_seed_dir(layout.model_root(args.method), seed)
              for seed in params.seeds}
    forget = read_splits(layout.PREPARED, ("forget",))["forget"]
    top_m = params.attribution.top_m
    per_seed, curves, sites = {}, [], []
    for seed in params.seeds:
        model, tokenizer = load_saved(models[seed])
        model.to(device())
        unlearned = neuron_attribution(
            model, encode_rows(tokenizer, forget, params.model.max_length),
            tokenizer.pad_token_id, params.attribution.batch_size)
        shift = attribution_shift(NeuronAttribution.load(bases[seed]), unlearned)
        d_plus, d_minus = shift.top_sums(top_m)
        by_site = shift.by_site()
        per_seed[seed] = {f"d_plus_top{top_m}": round(d_plus, 6),
                          f"d_minus_top{top_m}": round(d_minus, 6),
                          "verdict": "hiding" if d_minus > d_plus else "erasing",
                          "most_hiding_site": most_hiding_site(by_site)}
        curves.append(torch.stack(shift.curves(CURVE_LENGTH * top_m)))
        sites.append(by_site)
    summary = across_seeds(per_seed, digits=6)
    d_plus, d_minus = summary["mean"][f"d_plus_top{top_m}"], summary["mean"][f"d_minus_top{top_m}"]
    verdicts = [record["verdict"] for record in per_seed.values()]
    metrics = {"method": args.method,
               "verdict": "hiding" if d_minus > d_plus else "erasing",
               "seeds_hiding": f"{verdicts.count('hiding')} of {len(verdicts)}",
               "hiding_ratio": round(d_minus / d_plus, 4) if d_plus > 0 else None, **summary}
    layout.write_json(metrics, layout.diagnosis_metrics(args.method))
    mean_curve = torch.stack(curves).mean(dim=0)
    write_rows(layout.diagnosis_curve(args.method),
               [{"m": m + 1, "d_plus": f"{p:.6g}", "d_minus": f"{n:.6g}"}
                for m, (p, n) in enumerate(zip(*mean_curve.tolist(), strict=True))])
    write_rows(layout.diagnosis_sites(args.method),
               [{"layer": layer, "module": module,
                 "d_plus": f"{sum(s[(layer, module)][0] for s in sites) / len(sites):.6g}",
                 "d_minus": f"{sum(s[(layer, module)][1] for s in sites) / len(sites):.6g}"}
                for layer, module in sites[0]])
    print(json.dumps({key: metrics[key] for key in ("method", "verdict", "seeds_hiding")}
                     | metrics["mean"]))


if __name__ == "__main__":
    run_stage(main)
