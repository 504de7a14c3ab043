"""Figures and the report for people: erase-vs-hide plots, relearning curves, the verdict."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ssiuu.gate import came_back  # noqa: E402
from ssiuu.methods.catalog import regularised_pairs  # noqa: E402
from ssiuu.params import GateParams  # noqa: E402
from ssiuu.seeds import mean_std  # noqa: E402

Curves = tuple[Sequence[float], Sequence[float]]
Cells = Mapping[tuple[int, str], tuple[float, float]]
# attack -> model -> learning rate -> relearning curve (one dict of scores per scored step)
RelearnCurves = Mapping[str, Mapping[str, Mapping[float, Sequence[Mapping[str, float]]]]]


def plot_shift_curves(curves: Mapping[str, Curves], top_m: int, out: str | Path) -> Path:
    """One panel per method: cumulative top-m sums of D+ (erasing) and D− (hiding)."""
    methods = list(curves)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.0),
                             sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        d_plus, d_minus = curves[method]
        m = range(1, len(d_plus) + 1)
        ax.plot(m, d_plus, label="D+ (erasing)", color="tab:blue")
        ax.plot(m, d_minus, label="D− (hiding)", color="tab:red")
        ax.axvline(top_m, color="grey", linewidth=0.6, linestyle=":")
        ax.set_title(method)
        ax.set_xlabel("top-m neurons")
    axes[0][0].set_ylabel("cumulative attribution shift")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def plot_shift_heatmaps(cells: Mapping[str, Cells], out: str | Path) -> Path:
    """Per method, D− minus D+ summed per module (rows) and layer (columns).

    Red cells hide more than they erase, blue cells erase more than they hide.
    """
    methods = list(cells)
    first = cells[methods[0]]
    modules = list(dict.fromkeys(module for _, module in first))
    layers = sorted({layer for layer, _ in first})
    grids = {method: [[cells[method][(layer, module)][1] - cells[method][(layer, module)][0]
                       for layer in layers] for module in modules] for method in methods}
    scale = max((abs(v) for grid in grids.values() for row in grid for v in row), default=1.0)
    scale = scale if scale > 0 and math.isfinite(scale) else 1.0
    fig, axes = plt.subplots(1, len(methods), squeeze=False, layout="constrained",
                             figsize=(2.5 + len(methods) * (0.8 + 0.35 * len(layers)),
                                      0.4 * len(modules) + 1.5))
    for ax, method in zip(axes[0], methods, strict=True):
        image = ax.imshow(grids[method], cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
        ax.set_title(method)
        ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_xlabel("layer")
        ax.set_yticks(range(len(modules)), modules if ax is axes[0][0] else [""] * len(modules))
    fig.colorbar(image, ax=axes[0].tolist(), label="D− − D+ (hiding − erasing)")
    return _save(fig, out)


def plot_regulariser_ratio(curves: Mapping[str, Mapping[int, Sequence[Mapping[str, float]]]],
                           out: str | Path) -> Path:
    """One panel per regularised method: ‖regulariser gradient‖ / ‖base loss gradient‖ at
    each unlearning step (log scale), one line per seed; ``curves[method][seed]`` is that
    run's unlearning curve (rows without the ratio, such as evaluation rows, are skipped).
    With no method, one panel that says so (the figure is a pipeline output either way)."""
    methods = list(curves)
    if not methods:
        fig, ax = plt.subplots(figsize=(3.4, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no regularised method in unlearn.methods", ha="center",
                va="center")
        return _save(fig, out)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.4 * len(methods), 3.0),
                             sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        for seed, rows in curves[method].items():
            points = [(row["step"], row["reg_grad_ratio"]) for row in rows
                      if row.get("reg_grad_ratio") and row["step"] > 1]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=f"seed {seed}")
        ax.set_yscale("log")
        ax.set_title(method)
        ax.set_xlabel("unlearning step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[0][0].set_ylabel("‖regulariser grad‖ / ‖loss grad‖")
    fig.tight_layout()
    return _save(fig, out)


def _save(fig: plt.Figure, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _mean_curve(curves: Sequence[Sequence[Mapping[str, float]]],
                key: str) -> tuple[list[float], list[float], list[float]]:
    """Steps, mean and standard deviation of ``key`` over the seeds' curves, per step."""
    by_step: dict[float, list[float]] = {}
    for curve in curves:
        for point in curve:
            if key in point:
                by_step.setdefault(point["step"], []).append(point[key])
    steps = sorted(by_step)
    stats = [mean_std(by_step[step]) for step in steps]
    return steps, [mean for mean, _ in stats], [std for _, std in stats]


def plot_relearning(curves: Mapping[int, RelearnCurves],
                    windows: Mapping[str, Mapping[float, int]], key: str,
                    out: str | Path) -> Path:
    """Grid of relearning curves: one row per attack, one column per learning rate, one
    line per model (the mean over seeds, a band of ± one standard deviation); the steps
    that the oracle calibration does not count in every seed are shaded."""
    seeds = list(curves)
    first = curves[seeds[0]]
    attacks = list(first)
    lrs = sorted({lr for attack in attacks for model in first[attack].values() for lr in model})
    fig, axes = plt.subplots(len(attacks), len(lrs), squeeze=False, sharey=True,
                             figsize=(3.6 * len(lrs), 2.6 * len(attacks)), layout="constrained")
    for row, attack in enumerate(attacks):
        for col, lr in enumerate(lrs):
            ax = axes[row][col]
            last = 0.0
            for name in first[attack]:
                steps, mean, std = _mean_curve(
                    [curves[seed][attack][name].get(lr, []) for seed in seeds], key)
                last = max([last, *steps])
                style = {"color": "black", "linestyle": "--"} if name == "oracle" else (
                    {"color": "grey", "linestyle": ":"} if name == "base" else {})
                (line,) = ax.plot(steps, mean, label=name, **style)
                if len(seeds) > 1:
                    ax.fill_between(steps, [m - s for m, s in zip(mean, std, strict=True)],
                                    [m + s for m, s in zip(mean, std, strict=True)],
                                    color=line.get_color(), alpha=0.15, linewidth=0)
            counted = windows[attack].get(lr, 0)
            if counted < last:
                ax.axvspan(counted, last, color="lightgrey", alpha=0.5, linewidth=0)
            ax.set_title(f"{attack}, lr {lr:g}", fontsize=9)
            ax.set_xlabel("attack step")
        axes[row][0].set_ylabel(key.replace("_", " ")
                                + (f" (mean of {len(seeds)} seeds)" if len(seeds) > 1 else ""))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    return _save(fig, out)


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
DECIMALS = 2  # the report's precision: cells are shown, and compared, at this many decimals
MISSED = "†"  # marks a method that did not reach its unlearning stop in some seed
STOP_METRICS = {"acc": "forget acc", "mcq": "forget MCQ"}
SCORE_NAMES = {"logprob": "log-prob", "share": "share", "min_k": "Min-K%"}  # the stop's t


def _fmt(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{DECIMALS}f}" if sign else f"{value:.{DECIMALS}f}"


class _Table:
    """Formats a summary's cells: the mean, and ``± std`` when there are several seeds."""

    def __init__(self, summary: Mapping) -> None:
        self.summary = summary
        self.several = len(summary["seeds"]) > 1

    def cell(self, name: str, section: str, key: str, sign: bool = False) -> str:
        mean = self.summary["models"][name][section].get(key)
        std = self.summary["std"][name][section].get(key)
        text = _fmt(mean, sign)
        if self.several and mean is not None and std is not None:
            return f"{text} ± {std:.{DECIMALS}f}"
        return text

    def above_oracle(self, name: str, attack: str) -> tuple[int, int]:
        """In how many seeds the MCQ oracle gap is > 0, out of the seeds where it is defined."""
        gaps = [seed[name][attack]["oracle_gap_mcq"]
                for seed in self.summary["per_seed"].values()]
        defined = [gap for gap in gaps if gap is not None]
        return sum(gap > 0 for gap in defined), len(defined)


MIA_ATTACKS = {"loss": "loss", "zlib": "zlib", "min_k": "Min-K%",
               "min_k_plus_plus": "Min-K%++"}
MIA_REPORTED = "min_k"  # the attack of the attack tables' privleak column (MUSE's privleak)


def _privacy_lines(summary: Mapping, table: _Table, names: Sequence[str],
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
        out.append("| " + " | ".join([_label(name, missed), *cells]) + " |")
    return out


def _missed(summary: Mapping, methods: Sequence[str]) -> dict[str, Mapping]:
    """The ``stop`` record of each method that did not reach its (threshold-rule) stop in
    some seed. A method under the reference rule is never left out: outside the band it
    is compared from its closest check, its distance stated (:func:`_stop_lines`)."""
    stops = {m: summary["models"][m]["stop"] for m in methods}
    return {m: stop for m, stop in stops.items()
            if not stop["reached"] and stop.get("rule", "threshold") == "threshold"}


def _stop_lines(summary: Mapping, methods: Sequence[str]) -> list[str]:
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


def _label(name: str, missed: Mapping[str, Mapping]) -> str:
    """A model's name as the report shows it: marked when it missed its unlearning stop."""
    return f"{name} {MISSED}" if name in missed else name


def _seeds_text(seeds: Sequence[int]) -> str:
    listed = ", ".join(map(str, seeds))
    return f"seed {listed}" if len(seeds) == 1 else f"seeds {listed}"


def _missed_footnotes(missed: Mapping[str, Mapping]) -> list[str]:
    """Under a table: why each marked method is not comparable with the others."""
    out = []
    for method, stop in missed.items():
        above = stop["above_threshold"]
        why = (f" ({' and '.join(STOP_METRICS[m] for m in above)} above "
               f"{'its threshold' if len(above) == 1 else 'their thresholds'})" if above else "")
        out += ["", f"{MISSED} {method} did not reach the unlearning stop in "
                    f"{_seeds_text(stop['not_reached_seeds'])}{why}: its scores after "
                    "unlearning and under attack are not comparable with the methods that did."]
    return out


def _stop_rule(summary: Mapping, methods: Sequence[str]) -> list[str]:
    """The distinct notes of the stop rules (how a threshold was chosen), said once."""
    notes = dict.fromkeys(note for m in methods for note in summary["models"][m]["stop"]["notes"])
    return ["", "Stop rule: " + " ".join(notes)] if notes else []


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


def _missed_verdict(table: _Table, attack: str, method: str, stop: Mapping) -> str:
    """The oracle gap of a method that missed its stop, said not to be comparable."""
    above, n_seeds = table.above_oracle(method, attack)
    return (f" {method} {MISSED} did not reach the unlearning stop in "
            f"{_seeds_text(stop['not_reached_seeds'])}: its gap "
            f"{table.cell(method, attack, 'oracle_gap_mcq', True)} (above the oracle in "
            f"{above} of {n_seeds} seeds) is not comparable with the methods that did.")


def _pair_text(table: _Table, attack: str, regularised: str, base: str,
               gaps: Mapping[str, float], missed: Mapping[str, Mapping]) -> str:
    """Ssiuu against its base method, at the shown precision; not compared when either
    missed its unlearning stop."""
    gap, base_gap = (table.cell(m, attack, "oracle_gap_mcq", True) for m in (regularised, base))
    left_out = [m for m in (regularised, base) if m in missed]
    if left_out:
        return (f" {_label(regularised, missed)} gap {gap} and {_label(base, missed)}'s "
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
    listed = "; ".join(f"{m} in {len(seeds)} of {n_seeds} seeds ({_seeds_text(seeds)})"
                       for m, seeds in back.items())
    return f" By {rule}: come back for {listed}."


def _verdict_lines(summary: Mapping, methods: Sequence[str], attacks: Sequence[str],
                   gate: GateParams | None = None) -> list[str]:
    rows, table = summary["models"], _Table(summary)
    missed = _missed(summary, methods)
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


def _regulariser_lines(summary: Mapping, methods: Sequence[str],
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


def _span(values: Sequence[float]) -> str:
    """``low–high`` of ``values`` as :func:`_small` shows them, one value when they agree."""
    low, high = _small(min(values)), _small(max(values))
    return low if low == high else f"{low}–{high}"


def _small(value: float, sign: bool = False) -> str:
    """A number at the report's precision, or in scientific notation when it is not 0 but
    would show as 0 there (a difference the interval finds may be that small)."""
    if value and abs(value) < 0.5 * 10 ** -DECIMALS:
        return f"{value:+.1e}" if sign else f"{value:.1e}"
    return _fmt(value, sign)


def _detectable(value: float | None) -> str:
    """The smallest detectable difference, or – where it cannot be estimated (no spread)."""
    return "–" if value is None else _small(value)


def _undetected(value: float | None) -> str:
    """The verdict when the interval holds 0, with what this design could have detected."""
    return ("no difference detected (smallest detectable here: "
            + ("not estimable: the two models score every held-out fact alike in every "
               "bootstrap draw" if value is None else _small(value)) + ")")


def _paired_lines(summary: Mapping, attacks: Sequence[str]) -> list[str]:
    """The paired comparison of each regularised method with its base method per attack
    (``summary["paired"]``, :func:`ssiuu.paired.compare_pairs`), and whether a 0.05 MCQ
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
    left_out = _missed(summary, [name for name in models if "stop" in models[name]])
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
                   f"{_small(record['difference'], True)} | [{_small(record['low'], True)}, "
                   f"{_small(record['high'], True)}] | {_detectable(record['detectable'])} | "
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


def _worst_case_lines(summary: Mapping, regularisers: Mapping[str, Mapping],
                      tolerance: float) -> list[str]:
    """Whether each regularised method lowers its base method's worst-case held-out oracle
    gap (MCQ) at matched retain (``summary["paired_worst_case"]``,
    :func:`ssiuu.paired.compare_worst_case`), and the one-line answer over all of them."""
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
        missed = list(_missed(summary, (name, base)))
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
                   f"{_small(record['regularised_gap'], True)} (under "
                   f"{record['regularised_attack']}) against "
                   f"{_small(record['base_gap'], True)} (under {record['base_attack']}): "
                   f"difference {_small(record['difference'], True)} "
                   f"[{_small(record['low'], True)}, {_small(record['high'], True)}]; retain "
                   f"{_fmt(retain)} against {_fmt(base_retain)} "
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
                   + (f"the smallest difference detectable here is {_span(estimable)} (MCQ)"
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


def robustness_markdown(summary: Mapping, methods: Sequence[str], attacks: Sequence[str],
                        figures: Mapping[str, str],
                        regularisers: Mapping[str, Mapping] | None = None,
                        retain_tolerance: float = 0.02, gate: GateParams | None = None) -> str:
    """The audit report in Markdown: what each attack brought back, per method, against
    the oracle (mean ± standard deviation over the summary's seeds), with the figures
    (paths relative to the report) and how to read each score. A method that did not reach
    its unlearning stop in some seed is marked † in every table, footnoted, and left out of
    the verdict's comparisons. ``regularisers`` (each regularised method's ``lam`` and
    ``grad``) adds the table of the regulariser's strength; ``retain_tolerance`` is how far
    below its base method's retain a regularised method's may sit and still count as
    matched in the worst-case comparison; ``gate`` (``registry.gate``) adds, per attack, the
    seeds in which the release gate finds each method's knowledge come back, by its rule."""
    rows, table = summary["models"], _Table(summary)
    seeds = summary["seeds"]
    names = ["base", "oracle", *methods]
    missed = _missed(summary, methods)
    oracle, base = rows["oracle"]["unlearned"], rows["base"]["unlearned"]
    out = ["# Does the forgotten data come back?", "",
           f"Seeds: {', '.join(map(str, seeds))}; "
           + ("every cell is the mean ± the standard deviation across them." if len(seeds) > 1
              else "one seed is not a result: differences below seed-to-seed noise are not "
                   "evidence either way."), "",
           "## After unlearning", "",
           "| model | forget acc | forget MCQ | forget log-prob | retain acc | utility acc |",
           "|---|---|---|---|---|---|"]
    for name in names:
        out.append("| " + " | ".join([_label(name, missed), *(
            table.cell(name, "unlearned", key) for key in (
                "forget_acc", "forget_mcq", "forget_logprob", "retain_acc", "utility_acc"))])
            + " |")
    out += _missed_footnotes(missed)
    out += _privacy_lines(summary, table, names, missed)
    out += _stop_rule(summary, methods)
    out += _stop_lines(summary, methods)
    out += _regulariser_lines(summary, methods, regularisers or {})
    out += ["", "## After each attack", ""]
    out += _verdict_lines(summary, methods, attacks, gate)
    for attack in attacks:
        counted = ", ".join(f"lr {c['lr']:g}: {' / '.join(map(str, c['counted_steps'].values()))}"
                            " steps" for c in summary["calibration"][attack])
        membership = f"privleak_{MIA_REPORTED}" in rows["oracle"][attack]
        out += ["", f"### {attack}", "", f"Counted (oracle retain ≥ "
                f"{summary['min_oracle_retain']:.2f}; per seed): {counted}.", "",
                "| model | held-out MCQ start | peak | recovery (MCQ) | oracle gap (MCQ) | "
                "held-out log-prob start | peak | oracle gap (log-prob) | held-out acc peak | "
                "retain (lowest) | attribution ρ |"
                + (f" privleak ({MIA_ATTACKS[MIA_REPORTED]}, highest AUC) |" if membership
                   else ""), "|---" * (12 if membership else 11) + "|"]
        for name in names:
            keys = [("start_mcq", False), ("heldout_mcq", False), ("recovery_mcq", True),
                    ("oracle_gap_mcq", True), ("start_logprob", False),
                    ("heldout_logprob", False), ("oracle_gap_logprob", True),
                    ("heldout_acc", False), ("retain_acc", False), ("attribution_rho", False),
                    *([(f"privleak_{MIA_REPORTED}", True)] if membership else [])]
            cells = [table.cell(name, attack, key, sign) for key, sign in keys]
            out.append("| " + " | ".join([_label(name, missed), *cells]) + " |")
        out += _missed_footnotes(missed)
    out += _paired_lines(summary, attacks)
    out += _worst_case_lines(summary, regularisers or {}, retain_tolerance)
    out += ["", "## Figures", ""]
    out += [f"![{caption}]({path})" for caption, path in figures.items()]
    values = {"oracle_mcq": oracle.get("forget_mcq", float("nan")),
              "oracle_logprob": oracle.get("forget_logprob", float("nan")),
              "base_retain": base.get("retain_acc", float("nan")),
              "base_utility": base.get("utility_acc", float("nan")),
              "min_retain": summary["min_oracle_retain"]}
    out += ["", "## How to read the scores", ""]
    out += [f"- **{name}**: {text.format(**values)}" for name, text in READINGS.items()]
    return "\n".join(out) + "\n"


def write_report(markdown_text: str, out: str | Path) -> tuple[Path, Path]:
    """Write ``out`` (.md) and the same report rendered as a standalone HTML page.

    The .md keeps its image links as written (relative to its folder). The HTML embeds every
    local image they name as a ``data:`` URI, so it shows its figures wherever it is opened
    (moved, or as an MLflow artifact). Raises DataError, before writing either file, naming a
    referenced image that does not exist or is not an image file.
    """
    import base64
    import mimetypes
    from urllib.parse import unquote, urlsplit
    from xml.etree import ElementTree

    import markdown
    from markdown.treeprocessors import Treeprocessor

    from ssiuu.errors import DataError

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    class EmbedImages(Treeprocessor):
        """Replace the ``src`` of each local ``<img>`` with a data URI of the file it names."""

        def run(self, root: ElementTree.Element) -> None:
            for img in root.iter("img"):
                url = urlsplit(img.get("src", ""))
                if url.scheme:
                    continue
                path = out.parent / unquote(url.path)
                if not path.is_file():
                    raise DataError(f"{out}: figure {path} does not exist")
                mime = mimetypes.guess_type(path.name)[0] or ""
                if not mime.startswith("image/"):
                    raise DataError(f"{out}: figure {path} is not an image (PNG, SVG, ...)")
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                img.set("src", f"data:{mime};base64,{data}")

    renderer = markdown.Markdown(extensions=["tables"])
    # After "unescape" (priority 0), so each src is the path as written.
    renderer.treeprocessors.register(EmbedImages(renderer), "embed_images", -10)
    body = renderer.convert(markdown_text)
    out.write_text(markdown_text, encoding="utf-8")
    html = out.with_suffix(".html")
    html.write_text("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ssiuu "
                    "robustness report</title><style>body{font-family:sans-serif;max-width:"
                    "70em;margin:auto}table{border-collapse:collapse}td,th{border:1px solid "
                    "#ccc;padding:2px 6px}img{max-width:100%}</style></head><body>\n"
                    + body + "\n</body></html>\n", encoding="utf-8")
    return out, html
