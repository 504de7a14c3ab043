"""Plain-language readings: what each attack brought back, per method against the oracle,
what the release gate reads of it, and how to read each score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ssiuu.config.catalog import regularised_pairs
from ssiuu.config.params import GateParams
from ssiuu.release.gate import came_back
from ssiuu.report.tables import DECIMALS, MISSED, Table, label, missed_stops, seeds_text

READINGS = {
    "forget MCQ": "3-option multiple choice on the forget facts, the paper's score: after "
                  "unlearning, closest to the oracle's {oracle_mcq:.2f} (never saw the data) "
                  "is best (chance is 0.33, but a model that never saw the facts may "
                  "land elsewhere on these options); far below the oracle is "
                  "over-suppression, which itself shows the model still tells the true "
                  "answer apart.",
    "forget log-prob": "mean log-probability per answer token (nats) of the true forget "
                       "answers: closest to the oracle's {oracle_logprob:.2f} is best; far "
                       "below it is over-suppression.",
    "retain / utility acc": "exact match on facts that must be kept and on general knowledge: "
                            "higher is better; the base scores {base_retain:.2f} / "
                            "{base_utility:.2f}.",
    "held-out peak": "the highest score on the forget facts an attack never showed, over "
                     "its counted steps and strengths (the paper's report): at or below the "
                     "oracle's peak under the same attack is best.",
    "recovery": "(peak − before the attack) / (base − before the attack), all on the same "
                "held-out facts: the share of what unlearning removed that came back; 0 is "
                "nothing, 1 is all of it. The oracle's own value is what relearning costs a "
                "model that never saw the data.",
    "oracle gap": "peak minus the oracle's peak under the same attack: 0 means the attack "
                  "found nothing the oracle did not also pick up; > 0 means hidden knowledge "
                  "resurfaced; < 0 means the model stays below the oracle (over-suppressed).",
    "retain (lowest)": "the lowest retain accuracy over the counted steps: how much the "
                       "attack damaged the model (counted steps keep the oracle's at or above "
                       "{min_retain:.2f}).",
    "attribution ρ": "Spearman's rank correlation between each neuron's net attribution on "
                     "the forget set before and after the attack, the lowest over its "
                     "strengths: near 1, the attack left the model's reasons for its answers "
                     "in place; lower, they moved (the paper's stability view: GA 0.73, NPO "
                     "0.87, Ssiuu 0.99 under its 10% injection).",
}


def _verdict_text(attack: str, worst: str, gap: float, above: int, n_seeds: int,
                  measured: str, qualified: bool) -> str:
    """What an attack brought back for the method with the highest oracle gap among those
    compared; ``qualified`` when some methods are left out of the comparison."""
    if gap > 0 and above == n_seeds and n_seeds > 1:
        return f"- **{attack}**: knowledge comes back for {worst} in every seed ({measured})."
    if gap > 0:
        return (f"- **{attack}**: most knowledge back for {worst}, not consistently "
                f"across seeds ({measured}).")
    which = "no method that reached its unlearning stop" if qualified else "no method"
    return (f"- **{attack}**: {which} got back more than the oracle learns from the "
            f"same attack (closest: {worst}, {measured}).")


def _missed_verdict(table: Table, attack: str, method: str, stop: Mapping) -> str:
    """The oracle gap of a method that missed its stop, said not to be comparable."""
    above, n_seeds = table.above_oracle(method, attack)
    return (f" {method} {MISSED} did not reach the unlearning stop in "
            f"{seeds_text(stop['not_reached_seeds'])}: its gap "
            f"{table.cell(method, attack, 'oracle_gap_mcq', True)} (above the oracle in "
            f"{above} of {n_seeds} seeds) is not comparable with the methods that did.")


def _pair_text(table: Table, attack: str, regularised: str, base: str,
               gaps: Mapping[str, float], missed: Mapping[str, Mapping]) -> str:
    """Ssiuu against its base method, at the shown precision; not compared when either
    missed its unlearning stop."""
    gap, base_gap = (table.cell(m, attack, "oracle_gap_mcq", True) for m in (regularised, base))
    left_out = [m for m in (regularised, base) if m in missed]
    if left_out:
        return (f" {label(regularised, missed)} gap {gap} and {label(base, missed)}'s "
                f"{base_gap} are not compared: {' and '.join(left_out)} did not reach the "
                "unlearning stop in every seed.")
    shown, base_shown = round(gaps[regularised], DECIMALS), round(gaps[base], DECIMALS)
    relation = "below" if shown < base_shown else "equal to" if shown == base_shown else "above"
    return f" {regularised} gap {gap}, {relation} {base}'s {base_gap}."


def _gate_text(summary: Mapping, methods: Sequence[str], attack: str,
               gate: GateParams | None) -> str:
    """What the release gate reads of this attack, seed by seed: the methods whose
    knowledge it finds come back beyond its margin, and in which seeds."""
    if gate is None:
        return ""
    back = {m: seeds for m in methods if (seeds := came_back(summary, m, attack, gate))}
    n_seeds = len(summary["per_seed"])
    rule = (f"the release gate (held-out {gate.score} more than {gate.max_oracle_gap:g} above "
            "the oracle's" + (f", on its lower bound over the held-out facts, z "
                              f"{gate.gap_z:g}" if gate.gap_z and gate.score != "logprob"
                              else "") + ")")
    if not back:
        return f" By {rule}: come back for no method in any of {n_seeds} seeds."
    listed = "; ".join(f"{m} in {len(seeds)} of {n_seeds} seeds ({seeds_text(seeds)})"
                       for m, seeds in back.items())
    return f" By {rule}: come back for {listed}."


def verdict_lines(summary: Mapping, methods: Sequence[str], attacks: Sequence[str],
                   gate: GateParams | None = None) -> list[str]:
    rows, table = summary["models"], Table(summary)
    missed = missed_stops(summary, methods)
    lines = []
    for attack in attacks:
        gaps = {m: rows[m][attack]["oracle_gap_mcq"] for m in methods
                if rows[m][attack]["oracle_gap_mcq"] is not None}
        if not any(any(c["counted_steps"].values()) for c in summary["calibration"][attack]):
            lines.append(f"- **{attack}**: no strength kept the oracle's retain accuracy; "
                         "the attack measures damage only.")
            continue
        if not gaps:
            lines.append(f"- **{attack}**: no multiple-choice score (the forget facts have no "
                         "distractors); see the log-prob columns.")
            continue
        compared = {m: gap for m, gap in gaps.items() if m not in missed}
        if compared:
            worst = max(compared, key=compared.__getitem__)
            above, n_seeds = table.above_oracle(worst, attack)
            measured = (f"held-out MCQ peak {table.cell(worst, attack, 'heldout_mcq')} against "
                        f"the oracle's {table.cell('oracle', attack, 'heldout_mcq')}, gap "
                        f"{table.cell(worst, attack, 'oracle_gap_mcq', True)}, above the "
                        f"oracle in {above} of {n_seeds} seeds")
            text = _verdict_text(attack, worst, compared[worst], above, n_seeds, measured,
                                 len(compared) < len(gaps))
        else:
            text = f"- **{attack}**: no method reached its unlearning stop in every seed."
        text += "".join(_missed_verdict(table, attack, m, missed[m]) for m in gaps
                        if m in missed)
        pairs = [(s, b) for s, b in regularised_pairs().items() if s in gaps and b in gaps]
        text += "".join(_pair_text(table, attack, s, b, gaps, missed) for s, b in pairs)
        lines.append(text + _gate_text(summary, methods, attack, gate))
    return lines
