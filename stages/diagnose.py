"""Stage `diagnose@<method>`: erase or hide? D+ and D− of an unlearned model vs the base.

Attributes the unlearned model on the forget set as `attribute` did the base, then writes
the paper's D+ (lost positive influence: erased) and D− (grown negative influence:
hidden) as top-m cumulative curves, per-layer-and-module sums, and their top-m sums.
"""

import argparse
import csv
import json
from pathlib import Path

from ssiuu.attribution import NeuronAttribution, attribution_shift, neuron_attribution
from ssiuu.data.encoding import encode_rows
from ssiuu.finetune import read_splits
from ssiuu.models import load_saved
from ssiuu.params import METHODS, load_params
from ssiuu.runtime import configure, device, run_stage

CURVE_LENGTH = 10


def main() -> None:
    """Write metrics/diagnose/<method>.json, plots/diagnose{,_sites}/<method>.csv."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/prepared")
    parser.add_argument("--base", default="models/attribution/base.pt")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    base = NeuronAttribution.load(args.base)
    forget = read_splits(args.data, ("forget",))["forget"]
    model, tokenizer = load_saved(Path("models/unlearned") / args.method)
    model.to(device())
    unlearned = neuron_attribution(model, encode_rows(tokenizer, forget, params.model.max_length),
                                   tokenizer.pad_token_id, params.attribution.batch_size)
    shift = attribution_shift(base, unlearned)
    top_m = params.attribution.top_m
    d_plus, d_minus = shift.top_sums(top_m)
    sites = shift.by_site()
    hiding_site = max(sites, key=lambda key: sites[key][1] - sites[key][0])
    metrics = {"method": args.method, f"d_plus_top{top_m}": round(d_plus, 6),
               f"d_minus_top{top_m}": round(d_minus, 6),
               "hiding_ratio": round(d_minus / d_plus, 4) if d_plus > 0 else None,
               "verdict": "hiding" if d_minus > d_plus else "erasing",
               "most_hiding_site": f"layer {hiding_site[0]} {hiding_site[1]}"}
    out = Path("metrics/diagnose") / f"{args.method}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    plots = Path("plots/diagnose")
    plots.mkdir(parents=True, exist_ok=True)
    curve_plus, curve_minus = shift.curves(CURVE_LENGTH * top_m)
    with (plots / f"{args.method}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["m", "d_plus", "d_minus"])
        writer.writerows((m + 1, f"{p:.6g}", f"{n:.6g}") for m, (p, n) in
                         enumerate(zip(curve_plus.tolist(), curve_minus.tolist(), strict=True)))
    site_plots = Path("plots/diagnose_sites")
    site_plots.mkdir(parents=True, exist_ok=True)
    with (site_plots / f"{args.method}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["layer", "module", "d_plus", "d_minus"])
        writer.writerows((layer, module, f"{p:.6g}", f"{n:.6g}")
                         for (layer, module), (p, n) in sites.items())
    print(json.dumps(metrics))


if __name__ == "__main__":
    run_stage(main)
