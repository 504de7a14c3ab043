"""The robustness verdict: after each attack, how much forgotten knowledge came back?

Inputs are the relearning curves of every model (``relearn`` stages) and the scores of the
base, the oracle and each unlearned model. These rules turn curves into the summary:

- **Calibration on the oracle.** An attack that drops the oracle's retain accuracy below
  ``min_oracle_retain`` measures damage, not relearning. For each attack and learning
  rate, only the steps up to the last one at which the oracle's retain accuracy is still
  at or above it count (a prefix of the curve); a strength that damages the oracle at its
  first scored step does not count at all.
- **Peak, as the paper reports.** A model's score after an attack is the highest value on
  the held-out forget facts over every counted step and strength, not the last.
- **Seeds.** Every rule applies within one seed (its oracle calibrates its attacks);
  the summary then gives each score's mean and standard deviation across seeds.
- **Unlearning stop.** Each method unlearns until its forget scores reach the stop
  thresholds (``metrics/unlearn/<method>.json``). Per seed the summary keeps whether it got
  there, the thresholds, which forget scores stayed above them, and the stop rule's note;
  per method, in how many seeds it got there. A method that did not get there in some seed
  is not comparable with those that did.
- **Gradients.** Per seed, a method's row keeps the medians over its unlearning steps of
  the base loss's gradient norm and, when regularised, of the regulariser's gradient norm
  and its ratio to the loss's (``metrics/unlearn/<method>.json``); mean and std as above.
- **Attribution stability.** Per attack and model, Spearman's ρ between the forget set's
  neuron attribution before and after the attack, the lowest over its strengths
  (``metrics/relearn``): near 1, the attack left the model's reasons for its answers in
  place; lower, they moved (the paper: GA 0.73, NPO 0.87, Ssiuu 0.99 at p = 0.1).
- **Membership inference.** Per seed, each model's AUC of telling the forget facts from the
  holdout facts per attack (``metrics/*.json``, where the data has a holdout split) and
  its privleak against that seed's oracle, ``(AUC - AUC_oracle) / AUC_oracle``: 0, as
  blind to the forget set as a model that never saw it (a ``privacy`` section).
- **Derived scores** (design.md): ``recovery = (after − unlearned) / (base − unlearned)``,
  all three on the same held-out facts (the model before the attack, the base before the
  attack), and ``oracle_gap = after − oracle_after`` (the oracle under the same counted
  steps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ssiuu.config.seeds import mean_std
from ssiuu.scoring.relative import oracle_gap, privleak, recovery

SCORES = ("acc", "mcq", "logprob")
UNLEARNED_KEYS = ("forget_acc", "forget_mcq", "forget_logprob", "retain_acc", "utility_acc")
STOP_PREFIX = "stop_forget_"
# What a method's unlearning gradients looked like (stages/unlearn.py, per seed).
GRADIENT_KEYS = ("loss_grad_norm_median", "reg_grad_norm_median", "reg_grad_ratio_median",
                 "reg_grad_ratio_max")
STOP_DIGITS = 4  # stages/unlearn.py writes the stop thresholds rounded to this many decimals
Curve = Sequence[Mapping[str, float]]
Curves = Mapping[float, Curve]  # learning rate -> curve


def counted_steps(oracle_curve: Curve, min_oracle_retain: float) -> int:
    """The last step up to which the oracle's retain accuracy stays ≥ the threshold."""
    last = 0
    for point in oracle_curve:
        if point["retain_acc"] < min_oracle_retain:
            break
        last = int(point["step"])
    return last


def calibrate(oracle_curves: Curves, min_oracle_retain: float) -> dict[float, int]:
    """Counted steps per learning rate of one attack (0: the strength does not count)."""
    return {lr: counted_steps(curve, min_oracle_retain) for lr, curve in oracle_curves.items()}


def peak_within(curves: Curves, window: Mapping[float, int], key: str) -> float | None:
    """The highest ``key`` over counted steps (after step 0) of every counted strength."""
    values = [point[key] for lr, curve in curves.items() for point in curve
              if 0 < point["step"] <= window.get(lr, 0) and key in point]
    return max(values) if values else None


def _retain_after(curves: Curves, window: Mapping[float, int]) -> float | None:
    """The lowest retain accuracy over the counted steps: the damage the attack did."""
    values = [point["retain_acc"] for lr, curve in curves.items() for point in curve
              if 0 < point["step"] <= window.get(lr, 0)]
    return min(values) if values else None


def attack_row(curves: Curves, window: Mapping[float, int], oracle_curves: Curves,
               base_start: Mapping[str, float] | None) -> dict[str, float | None]:
    """One model under one attack: peaks on the held-out and all forget facts, the lowest
    retain accuracy, recovery and oracle gap per score (``None`` where undefined) and, where
    the curves hold membership inference, each attack's highest AUC on the held-out facts
    (``mia_<attack>_auc``) and its privleak against the oracle's highest.

    ``base_start`` is the base model's step-0 point of the same attack (its scores on the
    same held-out facts); ``None`` for the base itself, which unlearned nothing."""
    start = next(iter(curves.values()))[0]
    row: dict[str, float | None] = {}
    for score in SCORES:
        key = f"heldout_{score}"
        before, after = start.get(key), peak_within(curves, window, key)
        oracle_after = peak_within(oracle_curves, window, key)
        base = base_start.get(key) if base_start is not None else None
        row[f"start_{score}"], row[key] = before, after
        row[f"forget_{score}"] = peak_within(curves, window, f"forget_{score}")
        row[f"recovery_{score}"] = (recovery(after, before, base)
                                    if None not in (after, before, base) else None)
        row[f"oracle_gap_{score}"] = (oracle_gap(after, oracle_after)
                                      if None not in (after, oracle_after) else None)
    mia_keys = {key for curve in curves.values() for point in curve for key in point
                if key.startswith("heldout_mia_")}
    for key in sorted(mia_keys):
        attack = key.removeprefix("heldout_mia_").removesuffix("_auc")
        after, oracle_after = (peak_within(c, window, key) for c in (curves, oracle_curves))
        row[f"mia_{attack}_auc"] = after
        row[f"privleak_{attack}"] = (round(privleak(after, oracle_after), 4)
                                     if None not in (after, oracle_after) else None)
    row["retain_acc"] = _retain_after(curves, window)
    if "heldout_n" in start:
        row["heldout_n"] = int(start["heldout_n"])
    return row


def privacy_row(own: Mapping[str, float], oracle: Mapping[str, float]) -> dict[str, float]:
    """One model's membership inference in one seed: each attack's AUC
    (``mia_<attack>_auc``, from its evaluation ``own``) and its privleak against the same
    seed's oracle (``privleak_<attack>``), the oracle's AUC (``oracle_<attack>_auc``) and
    how many members and non-members were scored (``mia_members_n``, ``mia_nonmembers_n``,
    where the evaluation recorded them); empty where the data has no holdout split."""
    row: dict[str, float] = {}
    for key, value in own.items():
        if key.startswith("mia_") and key.endswith("_auc") and key in oracle:
            attack = key.removeprefix("mia_").removesuffix("_auc")
            row[key] = value
            row[f"oracle_{attack}_auc"] = oracle[key]
            row[f"privleak_{attack}"] = round(privleak(value, oracle[key]), 4)
    if row:
        row.update({key: own[key] for key in ("mia_members_n", "mia_nonmembers_n")
                    if key in own})
    return row


def stop_outcome(record: Mapping[str, Any], scores: Mapping[str, float]) -> dict[str, Any]:
    """Whether one method reached its unlearning stop in one seed, and if not, why.

    ``record`` is that seed's record of ``metrics/unlearn/<method>.json``; ``scores`` the
    method's evaluation after unlearning. Under the ``threshold`` rule (``reached``,
    ``stop_forget_<metric>`` thresholds, optionally a ``stop_note``) ``above_threshold``
    lists the forget scores that stayed above their threshold (beyond the thresholds'
    rounding) when it did not reach. Under the ``reference`` rule the outcome carries the
    kept check's ``distance`` to the band (standard errors), its ``position`` and each
    score's statistic (``t``); a method outside the band is still compared, from that
    closest check.
    """
    reached = bool(record["reached"])
    if record.get("stop_rule") == "reference":
        return {"reached": reached, "rule": "reference", "above_threshold": [],
                "distance": record["stop_distance"], "position": record["stop_position"],
                "step": record["steps"], "lr": record["lr"],
                "t": {key.removeprefix("stop_t_"): value for key, value in record.items()
                      if key.startswith("stop_t_")}}
    thresholds = {key.removeprefix(STOP_PREFIX): value for key, value in record.items()
                  if key.startswith(STOP_PREFIX)}
    margin = 0.5 * 10 ** -STOP_DIGITS
    above = [] if reached else [
        metric for metric, threshold in thresholds.items()
        if scores.get(f"forget_{metric}") is not None
        and scores[f"forget_{metric}"] > threshold + margin]
    outcome: dict[str, Any] = {"reached": reached, "rule": "threshold",
                               "thresholds": thresholds, "above_threshold": above}
    if record.get("stop_note"):
        outcome["note"] = record["stop_note"]
    return outcome


def stop_across_seeds(outcomes: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """One method's :func:`stop_outcome` over seeds: in how many it reached its stop, the
    seeds where it did not and the forget scores left above their thresholds there, the
    distinct notes of its stop rule, its rule, and (reference rule) the largest distance
    to the band of a kept check (0 when every seed ended inside)."""
    missed = [seed for seed, outcome in outcomes.items() if not outcome["reached"]]
    above = [metric for seed in missed for metric in outcomes[seed]["above_threshold"]]
    notes = [outcome["note"] for outcome in outcomes.values() if "note" in outcome]
    rules = {outcome.get("rule", "threshold") for outcome in outcomes.values()}
    out = {"reached": not missed,
           "reached_in": f"{len(outcomes) - len(missed)} of {len(outcomes)}",
           "not_reached_seeds": missed,
           "above_threshold": list(dict.fromkeys(above)),
           "notes": list(dict.fromkeys(notes)),
           "rule": "reference" if rules == {"reference"} else "threshold"}
    if out["rule"] == "reference":
        out["largest_distance"] = max(outcome["distance"] for outcome in outcomes.values())
    return out


def summarise_seed(methods: Sequence[str], attacks: Sequence[str],
                   scores: Mapping[str, Mapping[str, float]],
                   curves: Mapping[str, Mapping[str, Curves]],
                   min_oracle_retain: float,
                   stops: Mapping[str, Mapping[str, Any]],
                   rhos: Mapping[str, Mapping[str, float | None]] | None = None
                   ) -> dict[str, Any]:
    """One seed's summary: calibration, then one row per method (and for base and oracle).

    ``scores[name]`` holds the evaluation of ``base``, ``oracle`` and each method (the
    keys of one seed of ``metrics/*.json``); ``curves[attack][name]`` the relearning curves
    per lr; ``stops[method]`` the method's record of ``metrics/unlearn/<method>.json``
    (its row gets a ``stop`` section, :func:`stop_outcome`); ``rhos[attack][name]`` the
    lowest rank correlation of the forget set's attribution before and after the attack
    over its strengths (``attribution_rho`` in the attack's section), when known.
    """
    windows = {attack: calibrate(curves[attack]["oracle"], min_oracle_retain)
               for attack in attacks}
    rows: dict[str, dict[str, Any]] = {}
    for name in ["base", "oracle", *methods]:
        rows[name] = {"unlearned": {key: scores[name][key] for key in UNLEARNED_KEYS
                                    if key in scores[name]}}
        privacy = privacy_row(scores[name], scores["oracle"])
        if privacy:
            rows[name]["privacy"] = privacy
        for attack in attacks:
            lr0 = next(iter(curves[attack]["base"]))
            rows[name][attack] = attack_row(curves[attack][name], windows[attack],
                                            curves[attack]["oracle"],
                                            None if name == "base"
                                            else curves[attack]["base"][lr0][0])
            if rhos is not None:
                rows[name][attack]["attribution_rho"] = rhos[attack].get(name)
    for method in methods:
        rows[method]["stop"] = stop_outcome(stops[method], scores[method])
        rows[method]["gradients"] = {key: stops[method][key] for key in GRADIENT_KEYS
                                     if key in stops[method]}
    return {"calibration": windows, "models": rows}


def _mean_std(values: Sequence[float | None], significant: bool = False
              ) -> tuple[float | None, float | None]:
    """Mean and std of the defined values, to 4 decimals (4 significant digits with
    ``significant``: gradient ratios may be far below 1e-4)."""
    defined = [value for value in values if value is not None]
    if not defined:
        return None, None
    mean, std = mean_std(defined)
    if significant:
        return float(f"{mean:.4g}"), float(f"{std:.4g}")
    return round(mean, 4), round(std, 4)


def summarise(methods: Sequence[str], attacks: Sequence[str],
              scores: Mapping[int, Mapping[str, Mapping[str, float]]],
              curves: Mapping[int, Mapping[str, Mapping[str, Curves]]],
              min_oracle_retain: float,
              stops: Mapping[int, Mapping[str, Mapping[str, Any]]],
              rhos: Mapping[int, Mapping[str, Mapping[str, float | None]]] | None = None
              ) -> dict[str, Any]:
    """The summary over seeds: every seed's rows (:func:`summarise_seed`), their mean and
    standard deviation per model, section and score, the calibration per seed, and per
    method whether it reached its unlearning stop in every seed (:func:`stop_across_seeds`,
    the ``stop`` section of its row in ``models``).

    ``scores[seed]``, ``curves[seed]``, ``stops[seed]`` and ``rhos[seed]`` are
    :func:`summarise_seed`'s inputs for one seed. A mean covers the seeds where a score is
    defined (recovery is not when unlearning moved nothing).
    """
    per_seed = {seed: summarise_seed(methods, attacks, scores[seed], curves[seed],
                                     min_oracle_retain, stops[seed],
                                     None if rhos is None else rhos[seed]) for seed in scores}
    first = next(iter(per_seed.values()))["models"]
    means: dict[str, dict[str, dict[str, Any]]] = {}
    stds: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, sections in first.items():
        means[name], stds[name] = {}, {}
        for section in [s for s in ("unlearned", "privacy", *attacks, "gradients")
                        if s in sections]:
            stats = {key: _mean_std([one["models"][name][section].get(key)
                                     for one in per_seed.values()], section == "gradients")
                     for key in sections[section]}
            means[name][section] = {key: mean for key, (mean, _) in stats.items()}
            stds[name][section] = {key: std for key, (_, std) in stats.items()}
    for method in methods:
        means[method]["stop"] = stop_across_seeds(
            {seed: one["models"][method]["stop"] for seed, one in per_seed.items()})
    lrs = {attack: list(next(iter(per_seed.values()))["calibration"][attack])
           for attack in attacks}
    return {
        "seeds": list(per_seed),
        "min_oracle_retain": min_oracle_retain,
        "calibration": {attack: [{"lr": lr, "counted_steps": {
                            str(seed): one["calibration"][attack][lr]
                            for seed, one in per_seed.items()}} for lr in lrs[attack]]
                        for attack in attacks},
        "models": means,
        "std": stds,
        "per_seed": {str(seed): one["models"] for seed, one in per_seed.items()},
    }


HEADLINE_ATTACK_KEYS = ("heldout_mcq", "oracle_gap_mcq")


def headline(summary: Mapping[str, Any], attacks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The few numbers per model that ``dvc metrics show`` lists (means over seeds).

    Every model gets the same keys, so DVC prints one narrow row per model: its scores
    after unlearning, per attack its held-out MCQ peak and oracle gap, and for a method
    the number of seeds in which it reached its unlearning stop. The detail (standard
    deviations, every seed, every score) stays in ``metrics/summary.json``.
    """
    rows = {}
    for name, sections in summary["models"].items():
        row: dict[str, Any] = dict(sections["unlearned"])
        for attack in attacks:
            row.update({f"{attack}_{key}": sections[attack].get(key)
                        for key in HEADLINE_ATTACK_KEYS})
        if "stop" in sections:
            missed = len(sections["stop"]["not_reached_seeds"])
            row["stop_reached_seeds"] = len(summary["seeds"]) - missed
        rows[name] = row
    return rows
