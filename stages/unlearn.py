"""Stage `unlearn@<method>`: unlearn the forget set from the base model with one method.

For every seed, starts from that seed's base model and stops by ``unlearn.stop.rule``:
``reference`` at the first check where the forget facts cannot be told from the stop
slice's never-seen facts (or at the closest check, its distance recorded), ``threshold``
(the paper's) once the forget scores reach their thresholds (``oracle`` is that seed's
oracle), with ``unlearn.train.max_steps`` as a cap, along the learning-rate ladder of
``unlearn.train.lrs``. Every step's forget / retain / stop-slice scores, the stop's
statistics and the loss terms go to a DVC plot.
Runs as it is under ``accelerate launch`` (every process computes, the first writes).
"""

import argparse
import sys
from dataclasses import asdict

from ssiuu.config import layout
from ssiuu.config.errors import DataError
from ssiuu.config.params import METHODS, STOP_SLICE, load_params
from ssiuu.config.seeds import across_seeds, existing_seed_dir, seed_dir, seed_record
from ssiuu.data.tables import write_rows
from ssiuu.model.finetune import read_splits
from ssiuu.model.loading import save_model
from ssiuu.model.runtime import configure, device, is_main_process, run_stage
from ssiuu.records.provenance import prepared_manifest, provenance_of, write_provenance
from ssiuu.unlearning.run import UnlearnOutcome, gradient_summary, stop_slice_users, unlearn
from ssiuu.unlearning.stop import stop_thresholds


def _stop_record(outcome: UnlearnOutcome, rule: str, thresholds: dict[str, float]) -> dict:
    """What a seed's record says of its stop: the rule, whether it was reached, the steps
    run, and the thresholds (``threshold``) or the kept check's statistics and distance to
    the band (``reference``), and the forget term's floors where it has them."""
    record = {"stop_rule": rule, "lr": outcome.lr, "steps": outcome.steps,
              "steps_run": sum(attempt.steps for attempt in outcome.attempts),
              "reached": outcome.reached}
    if outcome.floor is not None:
        record["forget_floor"] = round(outcome.floor, 4)
    if outcome.token_floor is not None:
        record["forget_token_floor"] = round(outcome.token_floor, 4)
    if outcome.check is not None:
        return {**record, "stop_z": outcome.check.z, **outcome.check.record()}
    return {**record, **{f"stop_forget_{metric}": round(value, 4)
                         for metric, value in thresholds.items()}}


def _stop_text(outcome: UnlearnOutcome, thresholds: dict[str, float]) -> str:
    """One line on where the kept model stopped."""
    if outcome.check is not None:
        check = outcome.check
        where = ("inside the band" if outcome.reached else
                 f"closest to the band ({check.position}, {check.distance:.2f} SE outside)")
        stats = ", ".join(f"t_{score} {t:+.2f}" for score, t in check.statistics.items())
        return (f"{where} of the stop slice (|t| <= {check.z:g}; {stats}) at step "
                f"{outcome.steps}, lr {outcome.lr:g}")
    verdict = "reached" if outcome.reached else "did NOT reach"
    goal = " and ".join(f"forget {metric} <= {value:.3f}" for metric, value in thresholds.items())
    return f"{verdict} {goal} in {outcome.steps} steps at lr {outcome.lr:g}"


def main() -> None:
    """Write models/unlearned/<method>/seed_<s>/ (with provenance.json),
    metrics/unlearn/<method>.json and plots/unlearn/<method>/seed_<s>.csv."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads, params.runtime.gradient_checkpointing)
    stop = params.unlearn.stop
    needs_stop_slice = stop_slice_users(params.unlearn)
    if needs_stop_slice and not layout.split_file(STOP_SLICE).is_file():
        verb = "need" if len(needs_stop_slice) > 1 else "needs"
        named = (", ".join(needs_stop_slice[:-1]) + " and " if len(needs_stop_slice) > 1
                 else "") + needs_stop_slice[-1]
        raise DataError(f"{named} {verb} the stop slice "
                        f"{layout.split_file(STOP_SLICE)} (facts about people no model saw: "
                        "data.generator.n_stop_people > 0, or data.jsonl.stop); run prepare, "
                        "or stop on rule 'threshold' without the forget floors")
    oracle_path = layout.evaluation_metrics("oracle")
    oracle = (layout.read_json(oracle_path)
              if oracle_path.is_file() and stop.rule == "threshold" else None)
    rules = {seed: stop_thresholds(stop, None if oracle is None else
                                   seed_record(oracle, seed, str(oracle_path)))
             for seed in params.seeds} if stop.rule == "threshold" else {}
    thresholds = {seed: rule.thresholds for seed, rule in rules.items()}
    bases = {seed: existing_seed_dir(layout.model_root("base"), seed) for seed in params.seeds}
    retain_splits = tuple(params.unlearn.train.retain_splits)
    trained_on = tuple(dict.fromkeys(("forget", "retain", *retain_splits)))
    splits = read_splits(layout.PREPARED, trained_on
                         + ((STOP_SLICE,) if needs_stop_slice else ()))
    retain_train = [row for name in retain_splits for row in splits[name]]
    manifest = prepared_manifest()
    knobs = getattr(params.unlearn.losses, args.method).model_dump()
    settings = {"train": params.unlearn.train.model_dump(),
                "stop": params.unlearn.stop.model_dump(), "losses": knobs}
    per_seed = {}
    for seed in params.seeds:
        outcome = unlearn(args.method, bases[seed], splits["forget"], splits["retain"],
                          params.unlearn, thresholds.get(seed, {}), params.model.max_length,
                          params.evaluate.batch_size, device(), seed, splits.get(STOP_SLICE),
                          retain_train)
        if not is_main_process():
            continue
        out_dir = save_model(outcome.model, outcome.tokenizer,
                             seed_dir(layout.model_root(args.method), seed))
        summary = {**_stop_record(outcome, stop.rule, thresholds.get(seed, {})),
                   **{key: float(f"{value:.4g}")
                      for key, value in gradient_summary(outcome.history).items()}}
        if seed in rules and rules[seed].note:
            summary["stop_note"] = rules[seed].note
            print(f"{args.method} seed {seed}: {rules[seed].note}")
        if outcome.note:
            print(f"{args.method} seed {seed}: {outcome.note}")
        per_seed[seed] = summary
        write_provenance(provenance_of(
            "unlearned", seed, model_source=params.model.name,
            splits=trained_on,
            params={"unlearn": settings}, manifest=manifest, parent=bases[seed],
            method=args.method,
            run={**summary, "seconds": round(sum(a.seconds for a in outcome.attempts), 2),
                 "attempts": [asdict(attempt) for attempt in outcome.attempts]}), out_dir)
        write_rows(layout.unlearning_curve(args.method, seed), outcome.history)
        print(f"{args.method} seed {seed}: {_stop_text(outcome, thresholds.get(seed, {}))} "
              f"-> {out_dir}")
        if not outcome.reached:
            advice = ("the kept model is the closest check; its distance is recorded"
                      if stop.rule == "reference" else
                      "raise unlearn.train.lrs or unlearn.train.max_steps in params.yaml")
            print(f"warning: {args.method} seed {seed} did not reach its stop; {advice}",
                  file=sys.stderr)
    if not per_seed:  # not the main process
        return
    layout.write_json({"method": args.method,
                       "reached": all(r["reached"] for r in per_seed.values()),
                       **across_seeds(per_seed)}, layout.unlearning_metrics(args.method))


if __name__ == "__main__":
    run_stage(main)
