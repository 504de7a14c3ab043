"""The paired comparisons: each regularised method against its base method per attack,
and whether it lowers the worst case at matched retain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ssiuu.report.tables import MISSED, fmt, missed_stops, small, span


def _detectable(value: float | None) -> str:
    """The smallest detectable difference, or – where it cannot be estimated (no spread)."""
    return "–" if value is None else small(value)


def _undetected(value: float | None) -> str:
    """The verdict when the interval holds 0, with what this design could have detected."""
    return ("no difference detected (smallest detectable here: "
            + ("not estimable: the two models score every held-out fact alike in every "
               "bootstrap draw" if value is None else small(value)) + ")")


def paired_lines(summary: Mapping, attacks: Sequence[str]) -> list[str]:
    """The paired comparison of each regularised method with its base method per attack
    (``summary["paired"]``, :func:`ssiuu.attack.paired.compare_pairs`), and whether a 0.05 MCQ
    difference is detectable with these seeds and facts. A pair with a method that missed
    its threshold-rule stop in some seed is shown, marked † and not judged, as in the
    verdict; one outside the reference rule's band is judged from its closest check, and
    said so."""
    paired = summary.get("paired") or {}
    rows = [(attack, pair, score, record) for attack in attacks
            for pair, scores in paired.get(attack, {}).items()
            for score, record in scores.items()]
    if not rows:
        return []
    out = ["", "## Each regularised method against its base method, paired", "",
           "Both start from the same base model and face the same injected facts in each "
           "seed: the difference of held-out peaks (regularised − base; lower: less came "
           "back) with a 95% bootstrap interval over seeds and held-out facts, and the "
           "smallest difference this design detects (a two-sided 5% test, 80% power).", "",
           "| attack | comparison | score | difference | 95% interval | smallest detectable | "
           "verdict |", "|---|---|---|---|---|---|---|"]
    models = summary.get("models", {})
    left_out = missed_stops(summary, [name for name in models if "stop" in models[name]])
    pairs = {pair for _, pair, _, _ in rows}
    missed = {pair: [name for name in pair.split("-") if name in left_out] for pair in pairs}
    outside = {pair: [name for name in pair.split("-") if name in models
                      and not models[name].get("stop", {}).get("reached", True)
                      and name not in left_out] for pair in pairs}
    for attack, pair, score, record in rows:
        verdict = record["verdict"]
        if missed[pair]:
            verdict = f"not compared {MISSED}"
        elif verdict == "no difference detected":
            verdict = _undetected(record["detectable"])
        out.append(f"| {attack} | {pair.replace('-', ' − ')} | held-out {score} peak | "
                   f"{small(record['difference'], True)} | [{small(record['low'], True)}, "
                   f"{small(record['high'], True)}] | {_detectable(record['detectable'])} | "
                   f"{verdict} |")
    for pair, names in missed.items():
        if names:
            out += ["", f"{MISSED} {pair.replace('-', ' − ')}: {' and '.join(names)} did not "
                        "reach the unlearning stop in every seed, so the difference is shown "
                        "but not judged."]
    for pair in sorted(pair for pair, names in outside.items() if names):
        names = outside[pair]
        out += ["", f"{pair.replace('-', ' − ')}: {' and '.join(names)} ended outside the stop "
                    "band in some seed and " + ("is" if len(names) == 1 else "are")
                    + " compared from the closest check (distances under \"Where unlearning "
                    "stopped\")."]
    coarse = [f"{attack} ({pair.replace('-', ' − ')}: "
              + ("not estimable" if record["detectable"] is None
                 else f"{record['detectable']:.2f}")
              + f" with {record['n_seeds']} seed(s) and {record['n_facts']} held-out facts)"
              for attack, pair, score, record in rows
              if score == "mcq" and not missed[pair]
              and (record["detectable"] is None or record["detectable"] > 0.05)]
    if coarse:
        out += ["", "A 0.05 difference of held-out MCQ is not detectable under "
                    + "; ".join(coarse) + ": more seeds or forget facts would narrow it."]
    return out


def worst_case_lines(summary: Mapping, regularisers: Mapping[str, Mapping],
                      tolerance: float) -> list[str]:
    """Whether each regularised method lowers its base method's worst-case held-out oracle
    gap (MCQ) at matched retain (``summary["paired_worst_case"]``,
    :func:`ssiuu.attack.paired.compare_worst_case`), and the one-line answer over all of them."""
    worst = summary.get("paired_worst_case") or {}
    if not worst:
        return []
    rows = summary["models"]
    out = ["", "## Does the regulariser lower the worst case?", "",
           "Per pair: each method's worst-case held-out oracle gap (MCQ; the largest over the "
           "attacks of the mean over seeds), their difference with a 95% bootstrap interval "
           "over seeds and facts (drawn once for all attacks), and retain accuracy after "
           f"unlearning (matched: within {tolerance:g} of the base method's).", ""]
    lowered, detectable = [], []
    for pair, record in worst.items():
        name, base = pair.split("-")
        if "not_judged" in record:
            out.append(f"- **{name}** against {base}: not judged: {record['not_judged']}.")
            continue
        knobs = regularisers.get(name, {})
        retain = rows[name]["unlearned"]["retain_acc"]
        base_retain = rows[base]["unlearned"]["retain_acc"]
        matched = retain >= base_retain - tolerance
        missed = list(missed_stops(summary, (name, base)))
        if missed:
            verdict = (f"not judged {MISSED}: {' and '.join(missed)} did not reach the "
                       "unlearning stop in every seed")
        elif record["verdict"] == "lower" and record["base_gap"] <= 0:
            verdict = ("lower, but its base method already stays below the oracle under "
                       "every attack: further below is over-suppression, not safer")
        elif record["verdict"] == "lower" and matched:
            verdict, _ = "**lower at matched retain**", lowered.append(name)
        elif record["verdict"] == "lower":
            verdict = "lower, but not at matched retain"
        elif record["verdict"] == "no difference detected":
            verdict = _undetected(record["detectable"])
        else:
            verdict = record["verdict"]
        if not missed:
            detectable.append(record["detectable"])
        setting = (f" (λ {knobs['lam']:g}, {knobs['grad'].replace('_', '-')})"
                   if knobs else "")
        out.append(f"- **{name}**{setting} against {base}: worst-case gap "
                   f"{small(record['regularised_gap'], True)} (under "
                   f"{record['regularised_attack']}) against "
                   f"{small(record['base_gap'], True)} (under {record['base_attack']}): "
                   f"difference {small(record['difference'], True)} "
                   f"[{small(record['low'], True)}, {small(record['high'], True)}]; retain "
                   f"{fmt(retain)} against {fmt(base_retain)} "
                   f"({'matched' if matched else 'not matched'}): {verdict}.")
    out.append("")
    if lowered:
        out.append(f"**Answer**: {', '.join(lowered)} lower(s) the base method's worst-case "
                   "held-out oracle gap at matched retain, with a 95% interval that excludes 0.")
    elif detectable:
        estimable = [value for value in detectable if value is not None]
        out.append("**Answer**: no regularised configuration lowers its base method's "
                   "worst-case held-out oracle gap at matched retain with an interval that "
                   "excludes 0; "
                   + (f"the smallest difference detectable here is {span(estimable)} (MCQ)"
                      if estimable else
                      "the smallest detectable difference cannot be estimated here (every "
                      "bootstrap draw gives the same difference: more seeds or facts are "
                      "needed)")
                   + "."
                   + (" No base method resurfaces here (each stays below the oracle under "
                      "every attack), so there is nothing for the regulariser to lower."
                      if all(record.get("base_gap", 1) <= 0 for record in worst.values())
                      else ""))
    else:
        out.append("**Answer**: not judged: no pair reached the unlearning stop in every seed "
                   "with counted attack steps.")
    return out
