"""Stage `relearn@<model>-<attack>`: attack one model and record what comes back.

MODEL is ``base``, ``oracle`` or an unlearning method (``models/unlearned/<method>``);
ATTACK is ``benign`` or ``harmful_<P>``. Every learning rate of ``relearn.train.lrs`` is
one strength; each gives a relearning curve (a DVC plot) and its peak forget scores. Every
seed attacks that seed's model, with that seed's injected facts and batch order.
"""

import argparse

from ssiuu import layout
from ssiuu.attacks import SCORES, AttackData, AttackRun, attack_data, attack_kind, peak, run_attack
from ssiuu.errors import ParamsError
from ssiuu.finetune import read_splits
from ssiuu.params import METHODS, load_params
from ssiuu.provenance import prepared_manifest, provenance_of, write_provenance
from ssiuu.runtime import configure, device, run_stage
from ssiuu.seeds import across_seeds, existing_seed_dir, seed_dir
from ssiuu.tables import write_rows


def _rounded(point: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 4) for key, value in point.items() if key != "step"}


def _seed_summary(data: AttackData, runs: list[AttackRun]) -> dict:
    keys = [f"{subset}_{score}" for subset in ("heldout", "forget") for score in SCORES]
    return {
        "n_train": len(data.train), "n_heldout": len(data.heldout),
        "n_injected": len(data.injected),
        **{f"peak_{key}": round(max(peak(run.curve, key) for run in runs), 4)
           for key in keys if key in runs[0].curve[0]},
        "attribution_rho_min": round(min(run.attribution_rho for run in runs), 4),
        "runs": [{"lr": run.lr, "attribution_rho": round(run.attribution_rho, 4),
                  "start": _rounded(run.curve[0]), "final": _rounded(run.curve[-1]),
                  "peak": {key: round(peak(run.curve, key), 4) for key in run.curve[0]
                           if key.startswith(("heldout_", "injected_", "forget_"))}}
                 for run in runs],
        "injected_ids": sorted(row["id"] for row in data.injected),
    }


def main() -> None:
    """Write metrics/relearn/<attack>/<model>.json,
    plots/relearn/<attack>/<model>/seed_<s>_lr_<lr>.csv,
    metrics/relearn_facts/<attack>/<model>/seed_<s>.json and the attacked models'
    provenance, models/attacked/<attack>/<model>/seed_<s>/provenance.json (weights are
    scored in memory and not kept)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", choices=[*layout.REFERENCES, *METHODS])
    parser.add_argument("attack", help="benign or harmful_<P> (P in 1..99)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    try:
        attack_kind(args.attack)
    except ValueError as exc:
        raise ParamsError(f"relearn stage: {exc}") from None
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    sources = {seed: existing_seed_dir(layout.model_root(args.model), seed)
               for seed in params.seeds}
    manifest = prepared_manifest()
    splits = read_splits(layout.PREPARED, ("forget", "retain", "utility", "benign"))
    per_seed = {}
    for seed, source in sources.items():
        data = attack_data(args.attack, splits["forget"], splits["benign"], seed)
        runs = run_attack(source, data, splits["retain"], splits["utility"], params.relearn,
                          params.model.max_length, params.evaluate.batch_size, device(), seed)
        per_seed[seed] = _seed_summary(data, runs)
        for run in runs:
            write_rows(layout.relearning_curve(args.attack, args.model, seed, run.lr), run.curve)
        layout.write_json({"runs": [{"lr": run.lr, "points": run.heldout_facts}
                                    for run in runs]},
                          layout.relearning_facts(args.attack, args.model, seed))
        write_provenance(provenance_of(
            "attacked", seed, model_source=params.model.name,
            splits=("forget", "retain", "utility", "benign"),
            params={"relearn": {"train": params.relearn.train.model_dump()}}, manifest=manifest,
            parent=source, method=None if args.model in layout.REFERENCES else args.model,
            attack=args.attack,
            run={"weights": "scored in memory, not kept",
                 "runs": [{"lr": run.lr, "seconds": round(run.seconds, 2)} for run in runs]}),
            seed_dir(layout.attacked_root(args.attack, args.model), seed))
        print(f"{args.model} seed {seed} under {args.attack}: held-out forget acc "
              f"{runs[0].curve[0]['heldout_acc']:.3f} -> peak "
              f"{per_seed[seed]['peak_heldout_acc']:.3f}")
    summary = {"model": args.model, "attack": args.attack, **across_seeds(per_seed)}
    layout.write_json(summary, layout.relearn_metrics(args.attack, args.model))

if __name__ == "__main__":
    run_stage(main)
