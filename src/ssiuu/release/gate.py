"""The release gate: may this unlearned model be released?

A version (one method, one seed) passes only if its **method** held up in every seed (the
held-out forget score after every attack at most ``max_oracle_gap`` above the oracle's,
judged on the gap's lower confidence bound over the held-out facts for an accuracy score;
the unlearning stop reached; with ``max_privleak``, the forget set no easier to detect by
membership inference than that margin allows, judged on privleak's confidence bound) and
the **version itself** kept its retain and utility accuracy after unlearning within a
margin of that seed's base. A method whose knowledge resurfaces in one seed is not
robust, so none of its versions passes. Reasons name seeds, attacks and numbers only,
never data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ssiuu.config.params import GateParams


@dataclass(frozen=True)
class GateVerdict:
    """Whether one version passed, why not, and its rank among passing versions.

    ``rank``: (worst oracle gap over every seed and attack, minus its own retain
    accuracy): lower is better, so the most robust version, then the one that kept most,
    comes first.
    """

    passed: bool
    reasons: tuple[str, ...]
    worst_gap: float | None
    rank: tuple[float, ...]


def _method_reasons(per_seed: Mapping[str, Mapping[str, Any]], method: str,
                    attacks: Sequence[str], gate: GateParams) -> tuple[list[str], float | None]:
    key = f"oracle_gap_{gate.score}"
    reasons, gaps = [], []
    for seed, models in per_seed.items():
        for attack in attacks:
            gap = models[method][attack].get(key)
            if gap is None:
                reasons.append(f"{attack}, seed {seed}: no counted attack step to judge")
                continue
            gaps.append(gap)
            reason = _gap_reason(models, method, attack, gate)
            if reason:
                reasons.append(f"{attack}, seed {seed}: {reason}")
        if gate.require_stop and not models[method]["stop"]["reached"]:
            reasons.append(_stop_reason(models[method]["stop"], seed))
        if gate.max_privleak is not None:
            reasons += _privacy_reasons(models[method].get("privacy", {}), seed, gate)
    return reasons, max(gaps) if gaps else None


def _gap_reason(models: Mapping[str, Any], method: str, attack: str,
                gate: GateParams) -> str | None:
    """Why ``method``'s held-out forget score came back under ``attack`` in one seed beyond
    the gate's margin (``None`` when it did not, or there is nothing to judge)."""
    row = models[method][attack]
    gap = row.get(f"oracle_gap_{gate.score}")
    if gap is None:
        return None
    bound = _gap_bound(row, models["oracle"].get(attack, {}), gate)
    if bound is None:
        return (f"held-out forget {gate.score} came back {gap:+.3f} above the oracle's (max "
                f"{gate.max_oracle_gap:g})" if gap > gate.max_oracle_gap else None)
    if bound[0] <= gate.max_oracle_gap:
        return None
    return (f"held-out forget {gate.score} came back {gap:+.3f} above the oracle's, at least "
            f"{bound[0]:+.3f} over its {bound[1]} held-out facts (z {gate.gap_z:g}; max "
            f"{gate.max_oracle_gap:g})")


def came_back(summary: Mapping[str, Any], method: str, attack: str,
              gate: GateParams) -> list[str]:
    """The seeds in which the gate finds ``method``'s knowledge come back under ``attack``
    beyond its margin: the report's verdict reads the same rule as the gate."""
    return [seed for seed, models in summary["per_seed"].items()
            if _gap_reason(models, method, attack, gate)]


def _gap_bound(row: Mapping[str, Any], oracle: Mapping[str, Any],
               gate: GateParams) -> tuple[float, int] | None:
    """The lower confidence bound of an accuracy score's oracle gap over the held-out facts
    (``gap - gap_z * SE``, SE of a difference of two proportions over ``heldout_n`` facts
    each) and that count; ``None`` where it does not apply (``gap_z`` 0, the log-prob
    score, or a record without the held-out count)."""
    own, theirs = row.get(f"heldout_{gate.score}"), oracle.get(f"heldout_{gate.score}")
    count = row.get("heldout_n")
    if gate.score == "logprob" or not gate.gap_z or None in (own, theirs, count) or not count:
        return None
    error = math.sqrt((own * (1 - own) + theirs * (1 - theirs)) / count)
    return row[f"oracle_gap_{gate.score}"] - gate.gap_z * error, int(count)


def _stop_reason(stop: Mapping[str, Any], seed: str) -> str:
    """Why one seed's unlearning stop fails the gate."""
    if stop.get("rule") != "reference":
        return f"seed {seed}: unlearning did not reach its stop"
    scores = ", ".join(f"{score} t {t:+.2f}" for score, t in stop.get("t", {}).items())
    how = {"above": "still more known than", "past": "less likely than",
           "split": "not matched on both scores to"}.get(stop["position"], "apart from")
    return (f"seed {seed}: the forget set stayed {how} never-seen facts: its closest check "
            f"is {stop['distance']:.2f} standard errors outside the stop band ({scores})")


def auc_error(auc: float, members: int, nonmembers: int) -> float:
    """Hanley and McNeil's (1982) standard error of an AUC over ``members`` positives and
    ``nonmembers`` negatives."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (members - 1) * (q1 - auc * auc)
                + (nonmembers - 1) * (q2 - auc * auc)) / (members * nonmembers)
    return math.sqrt(max(variance, 0.0))


def _privleak_excess(privacy: Mapping[str, float], gate: GateParams) -> float | None:
    """How far privleak's confidence bound nearest 0 lies beyond ``±max_privleak``
    (``|privleak| - privleak_z * SE``, SE of the AUC difference over the oracle's AUC);
    ``None`` where the counts or the oracle's AUC are not recorded."""
    attack = gate.privacy_attack
    own, oracle = privacy.get(f"mia_{attack}_auc"), privacy.get(f"oracle_{attack}_auc")
    members, nonmembers = privacy.get("mia_members_n"), privacy.get("mia_nonmembers_n")
    if None in (own, oracle, members, nonmembers) or not oracle:
        return None
    error = math.hypot(auc_error(own, int(members), int(nonmembers)),
                       auc_error(oracle, int(members), int(nonmembers))) / oracle
    return abs(privacy[f"privleak_{attack}"]) - gate.privleak_z * error - gate.max_privleak


def _privacy_reasons(privacy: Mapping[str, float], seed: str, gate: GateParams) -> list[str]:
    """Why one seed fails the privacy condition (an empty list when it holds): privleak
    beyond ``±max_privleak`` on its confidence bound where the counts are recorded, on the
    point estimate otherwise."""
    value = privacy.get(f"privleak_{gate.privacy_attack}")
    if value is None:
        return [f"seed {seed}: membership of the forget set not measured (the data has no "
                "holdout split: give data.jsonl.holdout, or set registry.gate.max_privleak "
                "to null)"]
    excess = _privleak_excess(privacy, gate) if gate.privleak_z else None
    if (abs(value) - gate.max_privleak if excess is None else excess) <= 0:
        return []
    how = ("still detectable by membership inference" if value > 0 else
           "detectable by membership inference the other way (over-unlearned: its AUC below "
           "the oracle's)")
    bound = ("" if excess is None else
             f", at least {excess + gate.max_privleak:.3f} in size over its members and "
             f"non-members (z {gate.privleak_z:g})")
    return [f"seed {seed}: forget set {how}: privleak ({gate.privacy_attack}) {value:+.3f}"
            f"{bound}, beyond ±{gate.max_privleak:g}"]


def _kept(own: Mapping[str, float], base: Mapping[str, float], gate: GateParams) -> list[str]:
    reasons = []
    for split, margin in (("retain", gate.max_retain_drop), ("utility", gate.max_utility_drop)):
        key = f"{split}_acc"
        if key in own and own[key] < base[key] - margin:
            reasons.append(f"{split} accuracy {own[key]:.3f} after unlearning, more than "
                           f"{margin:g} below the base's {base[key]:.3f}")
    return reasons


def gate_versions(summary: Mapping[str, Any], method: str, attacks: Sequence[str],
                  gate: GateParams) -> dict[int, GateVerdict]:
    """The verdict of every seed's version of ``method`` from the report's summary
    (``metrics/summary.json``, its ``per_seed`` records)."""
    per_seed = summary["per_seed"]
    method_reasons, worst = _method_reasons(per_seed, method, attacks, gate)
    verdicts = {}
    for seed, models in per_seed.items():
        own = models[method]["unlearned"]
        reasons = tuple([*method_reasons, *_kept(own, models["base"]["unlearned"], gate)])
        rank = (float("inf") if worst is None else worst, -own.get("retain_acc", 0.0))
        verdicts[int(seed)] = GateVerdict(not reasons, reasons, worst, rank)
    return verdicts
