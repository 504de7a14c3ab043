"""The report's cells and tables: precision, the † mark, the scores after unlearning,
membership inference, where unlearning stopped and the regulariser's strength."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ssiuu.config.catalog import regularised_pairs

DECIMALS = 2  # the report's precision: cells are shown, and compared, at this many decimals
MISSED = "†"  # marks a method that did not reach its unlearning stop in some seed
STOP_METRICS = {"acc": "forget acc", "mcq": "forget MCQ"}
SCORE_NAMES = {"logprob": "log-prob", "share": "share", "min_k": "Min-K%"}  # the stop's t
MIA_ATTACKS = {"loss": "loss", "zlib": "zlib", "min_k": "Min-K%",
               "min_k_plus_plus": "Min-K%++"}
MIA_REPORTED = "min_k"  # the attack of the attack tables' privleak column (MUSE's privleak)


def fmt(value: float | None, sign: bool = False) -> str:
    """A number at the report's precision (``+`` shown with ``sign``), – for none."""
    if value is None:
        return "–"
    return f"{value:+.{DECIMALS}f}" if sign else f"{value:.{DECIMALS}f}"


def small(value: float, sign: bool = False) -> str:
    """A number at the report's precision, or in scientific notation when it is not 0 but
    would show as 0 there (a difference the interval finds may be that small)."""
    if value and abs(value) < 0.5 * 10 ** -DECIMALS:
        return f"{value:+.1e}" if sign else f"{value:.1e}"
    return fmt(value, sign)


def span(values: Sequence[float]) -> str:
    """``low–high`` of ``values`` as :func:`small` shows them, one value when they agree."""
    low, high = small(min(values)), small(max(values))
    return low if low == high else f"{low}–{high}"


class Table:
    """Formats a summary's cells: the mean, and ``± std`` when there are several seeds."""

    def __init__(self, summary: Mapping) -> None:
        self.summary = summary
        self.several = len(summary["seeds"]) > 1

    def cell(self, name: str, section: str, key: str, sign: bool = False) -> str:
        mean = self.summary["models"][name][section].get(key)
        std = self.summary["std"][name][section].get(key)
        text = fmt(mean, sign)
        if self.several and mean is not None and std is not None:
            return f"{text} ± {std:.{DECIMALS}f}"
        return text

    def above_oracle(self, name: str, attack: str) -> tuple[int, int]:
        """In how many seeds the MCQ oracle gap is > 0, out of the seeds where it is defined."""
        gaps = [seed[name][attack]["oracle_gap_mcq"]
                for seed in self.summary["per_seed"].values()]
        defined = [gap for gap in gaps if gap is not None]
        return sum(gap > 0 for gap in defined), len(defined)


def missed_stops(summary: Mapping, methods: Sequence[str]) -> dict[str, Mapping]:
    """The ``stop`` record of each method that did not reach its (threshold-rule) stop in
    some seed. A method under the reference rule is never left out: outside the band it
    is compared from its closest check, its distance stated (:func:`stop_lines`)."""
    stops = {m: summary["models"][m]["stop"] for m in methods}
    return {m: stop for m, stop in stops.items()
            if not stop["reached"] and stop.get("rule", "threshold") == "threshold"}


def label(name: str, missed: Mapping[str, Mapping]) -> str:
    """A model's name as the report shows it: marked when it missed its unlearning stop."""
    return f"{name} {MISSED}" if name in missed else name


def seeds_text(seeds: Sequence[int]) -> str:
    listed = ", ".join(map(str, seeds))
    return f"seed {listed}" if len(seeds) == 1 else f"seeds {listed}"


def missed_footnotes(missed: Mapping[str, Mapping]) -> list[str]:
    """Under a table: why each marked method is not comparable with the others."""
    out = []
    for method, stop in missed.items():
        above = stop["above_threshold"]
        why = (f" ({' and '.join(STOP_METRICS[m] for m in above)} above "
               f"{'its threshold' if len(above) == 1 else 'their thresholds'})" if above else "")
        out += ["", f"{MISSED} {method} did not reach the unlearning stop in "
                    f"{seeds_text(stop['not_reached_seeds'])}{why}: its scores after "
                    "unlearning and under attack are not comparable with the methods that did."]
    return out


def stop_rule_lines(summary: Mapping, methods: Sequence[str]) -> list[str]:
    """The distinct notes of the stop rules (how a threshold was chosen), said once."""
    notes = dict.fromkeys(note for m in methods for note in summary["models"][m]["stop"]["notes"])
    return ["", "Stop rule: " + " ".join(notes)] if notes else []


def privacy_lines(summary: Mapping, table: Table, names: Sequence[str],
                   missed: Mapping[str, Mapping]) -> list[str]:
    """The membership-inference table (each attack's AUC and privleak per model) and its
    reading; nothing where the data has no holdout split."""
    models = summary["models"]
    attacks = [attack for attack in MIA_ATTACKS
               if f"mia_{attack}_auc" in models["oracle"].get("privacy", {})]
    if not attacks:
        return []
    out = ["", "## Can the forget set still be detected? (membership inference)", "",
           "Each attack tells the forget facts from holdout facts about people no model "
           "trained on; AUC 0.5 is chance. privleak = (AUC − the oracle's AUC) / the "
           "oracle's AUC: 0 is as blind to the forget set as a model that never saw it, "
           "positive means the forget set still stands out as trained on, negative that it "
           "stands out as too unlikely (over-unlearning also gives the facts away).", "",
           "| model | " + " | ".join(f"{MIA_ATTACKS[a]} AUC | privleak ({MIA_ATTACKS[a]})"
                                     for a in attacks) + " |",
           "|---" * (1 + 2 * len(attacks)) + "|"]
    for name in names:
        cells = [cell for attack in attacks for cell in (
            table.cell(name, "privacy", f"mia_{attack}_auc"),
            table.cell(name, "privacy", f"privleak_{attack}", True))]
        out.append("| " + " | ".join([label(name, missed), *cells]) + " |")
    return out


def stop_lines(summary: Mapping, methods: Sequence[str]) -> list[str]:
    """Where each reference-rule method stopped, per seed: the check kept, each score's
    Welch statistic against the stop slice, and its distance to the band."""
    shown = [m for m in methods if summary["models"][m]["stop"].get("rule") == "reference"]
    if not shown:
        return []
    out = ["", "## Where unlearning stopped", "",
           "Each method unlearns until the forget facts cannot be told from the stop slice "
           "(facts about people no model saw, scored by the model being unlearned, never "
           "evaluated): Welch's t of the forget facts' mean against the stop slice's, on "
           "answer log-prob, on the answer's share of the three options and, where the "
           "stop reads it, on the Min-K% statistic (the least likely answer tokens), each "
           "within ±z. Outside the band, the closest check is kept and compared like the "
           "others; its distance (the largest |t| − z) says how far from a never-seen "
           "model it is.", "",
           "| method | inside the band | seed: step (lr), t of each score, distance |",
           "|---|---|---|"]
    for method in shown:
        stop = summary["models"][method]["stop"]
        cells = []
        for seed, models in summary["per_seed"].items():
            one = models[method]["stop"]
            where = "inside" if one["reached"] else f"{one['position']}, {one['distance']:.2f}"
            ts = ", ".join(f"{SCORE_NAMES.get(score, score)} {t:+.2f}"
                           for score, t in one["t"].items())
            cells.append(f"{seed}: {one['step']} ({one['lr']:g}), {ts}, {where}")
        out.append(f"| {method} | {stop['reached_in']} seeds | " + "; ".join(cells) + " |")
    return out


def regulariser_lines(summary: Mapping, methods: Sequence[str],
                       regularisers: Mapping[str, Mapping]) -> list[str]:
    """The strength of each regularised method's regulariser: its λ and gradient mode (from
    ``regularisers``, ``unlearn.losses.<method>``) and the ratio of its gradient norm to the
    base loss's (before clipping) over the unlearning steps, mean ± std over seeds."""
    shown = [m for m in methods if m in regularisers
             and summary["models"][m].get("gradients", {}).get("reg_grad_ratio_median")
             is not None]
    if not shown:
        return []

    def cell(method: str, key: str) -> str:
        mean = summary["models"][method]["gradients"].get(key)
        std = summary["std"][method]["gradients"].get(key)
        if mean is None:
            return "–"
        return f"{mean:.2g}" + (f" ± {std:.1g}" if len(summary["seeds"]) > 1 and std else "")

    pairs = regularised_pairs()
    out = ["", "## The regulariser's strength", "",
           "‖regulariser gradient‖ / ‖base loss gradient‖ per unlearning step, before "
           "clipping (the steps where the regulariser is active): far below 1 it barely "
           "moves the step, and the method behaves as the one it regularises.", "",
           "| method | regularises | λ | gradient | median ratio | largest ratio | "
           "median ‖loss gradient‖ |", "|---|---|---|---|---|---|---|"]
    for method in shown:
        knobs = regularisers[method]
        out.append(f"| {method} | {pairs[method]} | {knobs['lam']:g} | "
                   f"{knobs['grad'].replace('_', '-')} | "
                   f"{cell(method, 'reg_grad_ratio_median')} | "
                   f"{cell(method, 'reg_grad_ratio_max')} | "
                   f"{cell(method, 'loss_grad_norm_median')} |")
    return out
