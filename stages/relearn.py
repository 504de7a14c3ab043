"""Stages `relearn@<method>` and `relearn_reference@<model>`: attack one model with every
attack and record what comes back.

MODEL is ``base``, ``oracle`` or an unlearning method (``models/unlearned/<method>``);
the attacks are ``relearn.attacks`` (or those named after MODEL), each ``benign`` or
``harmful_<P>``. Every learning rate of ``relearn.train.lrs`` is one strength; each gives a
relearning curve (a DVC plot) and its peak forget scores. Every seed attacks that seed's
model, with that seed's injected facts and batch order; the untouched model is loaded,
scored and attributed once per seed for all of them.
"""

import argparse
from pathlib import Path

from ssiuu.attack.attacks import (
    SCORES,
    AttackData,
    AttackRun,
    attack_data,
    attack_kind,
    peak,
    run_attacks,
)
from ssiuu.config import layout
from ssiuu.config.errors import ParamsError
from ssiuu.config.params import HOLDOUT, METHODS, Params, load_params
from ssiuu.config.seeds import across_seeds, existing_seed_dir, seed_dir
from ssiuu.data.tables import write_rows
from ssiuu.model.finetune import read_splits
from ssiuu.model.runtime import configure, device, is_main_process, run_stage
from ssiuu.records.provenance import prepared_manifest, provenance_of, write_provenance


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
    """Write, per attack, metrics/relearn/<model>/<attack>.json,
    plots/relearn/<model>/<attack>/seed_<s>_lr_<lr>.csv,
    metrics/relearn_facts/<model>/<attack>/seed_<s>.json and the attacked models'
    provenance, models/attacked/<model>/<attack>/seed_<s>/provenance.json (weights are
    scored in memory and not kept)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", choices=[*layout.REFERENCES, *METHODS])
    parser.add_argument("attacks", nargs="*",
                        help="benign or harmful_<P> (P in 1..99); default: relearn.attacks")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    attacks = args.attacks or params.relearn.attacks
    for attack in attacks:
        try:
            attack_kind(attack)
        except ValueError as exc:
            raise ParamsError(f"relearn stage: {exc}") from None
    configure(params.runtime.num_threads, params.runtime.gradient_checkpointing)
    sources = {seed: existing_seed_dir(layout.model_root(args.model), seed)
               for seed in params.seeds}
    manifest = prepared_manifest()
    splits = read_splits(layout.PREPARED, ("forget", "retain", "utility", "benign"))
    holdout = (read_splits(layout.PREPARED, (HOLDOUT,))[HOLDOUT]
               if layout.split_file(HOLDOUT).is_file() else None)
    per_seed: dict[str, dict[int, dict]] = {attack: {} for attack in attacks}
    for seed, source in sources.items():
        datas = [attack_data(attack, splits["forget"], splits["benign"], seed)
                 for attack in attacks]
        runs = run_attacks(source, datas, splits["retain"], splits["utility"], params.relearn,
                           params.model.max_length, params.evaluate.batch_size, device(), seed,
                           holdout, params.evaluate.mia_k)
        if not is_main_process():
            continue
        for data in datas:
            _write_seed(args.model, data, runs[data.name], seed, source, params, manifest)
            per_seed[data.name][seed] = _seed_summary(data, runs[data.name])
            print(f"{args.model} seed {seed} under {data.name}: held-out forget acc "
                  f"{runs[data.name][0].curve[0]['heldout_acc']:.3f} -> peak "
                  f"{per_seed[data.name][seed]['peak_heldout_acc']:.3f}")
    for attack, seeds in per_seed.items():
        if not seeds:  # not the main process
            continue
        layout.write_json({"model": args.model, "attack": attack, **across_seeds(seeds)},
                          layout.relearn_metrics(attack, args.model))


def _write_seed(model: str, data: AttackData, runs: list[AttackRun], seed: int, source: Path,
                params: Params, manifest: dict) -> None:
    """One seed's curves, held-out fact scores and attacked-model provenance of an attack."""
    for run in runs:
        write_rows(layout.relearning_curve(data.name, model, seed, run.lr), run.curve)
    layout.write_json({"runs": [{"lr": run.lr, "points": run.heldout_facts} for run in runs]},
                      layout.relearning_facts(data.name, model, seed))
    write_provenance(provenance_of(
        "attacked", seed, model_source=params.model.name,
        splits=("forget", "retain", "utility", "benign"),
        params={"relearn": {"train": params.relearn.train.model_dump()}}, manifest=manifest,
        parent=source, method=None if model in layout.REFERENCES else model,
        attack=data.name,
        run={"weights": "scored in memory, not kept",
             "runs": [{"lr": run.lr, "seconds": round(run.seconds, 2)} for run in runs]}),
        seed_dir(layout.attacked_root(data.name, model), seed))


if __name__ == "__main__":
    run_stage(main)
