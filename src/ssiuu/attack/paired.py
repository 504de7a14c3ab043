"""Paired comparison of a regularised method with its base method under one attack.

Ssiuu and the method it regularises start from the same base model and face the same
injected facts in each seed, so their held-out peaks are compared pair by pair rather than
as two independent means. For one score (``mcq`` or ``logprob``):

- a method's **held-out peak** in one seed is the highest mean over the held-out facts at
  any counted step (after step 0) of any counted strength, as in :mod:`ssiuu.attack.robustness`;
- the **difference** is regularised − base, averaged over seeds;
- its **95% interval** is a percentile bootstrap over seeds and facts: seeds are drawn with
  replacement, then the held-out facts within each drawn seed, the same draw for both
  methods (the pairing), and both peaks are recomputed on the draw;
- the **smallest detectable difference** is ``(z_0.975 + z_0.8) ×`` the bootstrap standard
  error: the difference a two-sided 5% test would find four times out of five here. When
  every draw gives the same difference (the two methods score every fact alike, as one
  seed can make them) the bootstrap has no spread and it cannot be estimated: ``None``.

The verdict is ``lower`` or ``higher`` when the interval excludes 0, else ``no difference
detected``. For the held-out peak lower is better: less came back.

The **worst case over the attacks** (:func:`worst_case_difference`) compares the two
methods' worst-case held-out oracle gap: per attack, the mean over seeds of (the method's
held-out peak − the oracle's on the same facts), its largest over the attacks, regularised
− base. Its bootstrap draws the seeds once for every attack and the facts per seed and
attack, the same for the three models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DETECTABLE_Z = 1.959964 + 0.841621  # two-sided 5% test, 80% power
N_BOOTSTRAP = 2000
NO_SPREAD = 1e-9  # bootstrap draws this close are one value: no standard error to estimate
PAIRED_SCORES = ("mcq", "logprob")

# Per seed: the held-out fact ids and a [counted points × facts] matrix of one score.
Scores = tuple[list[str], np.ndarray]


@dataclass(frozen=True)
class PairedDifference:
    """Regularised − base held-out peak over seeds, its 95% bootstrap interval, the smallest
    difference detectable here (``None`` when the bootstrap has no spread), and how many
    seeds and held-out facts it rests on."""

    difference: float
    low: float
    high: float
    detectable: float | None
    n_seeds: int
    n_facts: int

    @property
    def verdict(self) -> str:
        """``lower``, ``higher`` or ``no difference detected``."""
        if self.high < 0:
            return "lower"
        if self.low > 0:
            return "higher"
        return "no difference detected"

    def as_record(self) -> dict[str, Any]:
        """The fields rounded to 4 decimals, with the verdict."""
        return {**{key: round(value, 4) if isinstance(value, float) else value
                   for key, value in asdict(self).items()}, "verdict": self.verdict}


def score_matrix(runs: Sequence[Mapping[str, Any]], window: Mapping[float, int],
                 score: str) -> Scores | None:
    """One model's held-out ``score`` per fact at every counted point of every strength.

    ``runs`` is one seed's ``metrics/relearn_facts`` record (``[{"lr", "points": [{"step",
    score: {id: value}}]}]``), ``window`` the counted steps per learning rate. ``None``
    when no point counts or no fact has the score."""
    points = [point[score] for run in runs for point in run["points"]
              if 0 < point["step"] <= window.get(run["lr"], 0) and point.get(score)]
    if not points:
        return None
    ids = sorted(points[0])
    return ids, np.array([[point[fact] for fact in ids] for point in points], dtype=float)


def _peak(matrix: np.ndarray, facts: np.ndarray) -> float:
    return float(matrix[:, facts].mean(axis=1).max())


def paired_difference(regularised: Mapping[int, Scores], base: Mapping[int, Scores],
                      n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> PairedDifference:
    """The paired difference of held-out peaks over the seeds both mappings hold (the
    same fact ids per seed in both), with its bootstrap interval (seeded by ``seed``)."""
    seeds = sorted(regularised)
    if not seeds or sorted(base) != seeds:
        raise ValueError(f"paired seeds differ: {sorted(regularised)} vs {sorted(base)}")
    for one in seeds:
        if regularised[one][0] != base[one][0]:
            raise ValueError(f"seed {one}: the two methods were judged on different facts")
    pairs = [(regularised[one][1], base[one][1]) for one in seeds]

    def difference(draw: Sequence[tuple[int, np.ndarray]]) -> float:
        return float(np.mean([_peak(pairs[index][0], facts) - _peak(pairs[index][1], facts)
                              for index, facts in draw]))

    everything = [(index, np.arange(matrix.shape[1])) for index, (matrix, _) in enumerate(pairs)]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_bootstrap):
        chosen = rng.integers(0, len(pairs), len(pairs))
        draws.append(difference([(index, rng.integers(0, pairs[index][0].shape[1],
                                                      pairs[index][0].shape[1]))
                                 for index in chosen]))
    low, high = np.percentile(draws, [2.5, 97.5])
    return PairedDifference(difference(everything), float(low), float(high),
                            _detectable(draws), len(seeds),
                            sum(matrix.shape[1] for matrix, _ in pairs))


def _detectable(draws: Sequence[float]) -> float | None:
    """The smallest difference a two-sided 5% test detects with 80% power, from the
    bootstrap's standard error; ``None`` when the draws differ by rounding only."""
    if float(np.ptp(draws)) <= NO_SPREAD:
        return None
    return DETECTABLE_Z * float(np.std(draws, ddof=1))


def _gap_per_attack(model: Mapping[str, Mapping[int, Scores]],
                    oracle: Mapping[str, Mapping[int, Scores]], seeds: Sequence[int],
                    draw: Sequence[tuple[int, Mapping[str, np.ndarray]]]) -> dict[str, float]:
    return {attack: float(np.mean([_peak(model[attack][seeds[index]][1], facts[attack])
                                   - _peak(oracle[attack][seeds[index]][1], facts[attack])
                                   for index, facts in draw]))
            for attack in model}


@dataclass(frozen=True)
class WorstCaseDifference(PairedDifference):
    """The paired difference of worst-case held-out oracle gaps over the attacks, with each
    method's worst-case gap and the attack where it sits."""

    regularised_gap: float = 0.0
    regularised_attack: str = ""
    base_gap: float = 0.0
    base_attack: str = ""


def worst_case_difference(regularised: Mapping[str, Mapping[int, Scores]],
                          base: Mapping[str, Mapping[int, Scores]],
                          oracle: Mapping[str, Mapping[int, Scores]],
                          n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> WorstCaseDifference:
    """Regularised − base worst-case held-out oracle gap over the attacks (``{attack:
    {seed: scores}}`` for each of the three models, the same facts per attack and seed),
    with its bootstrap interval (seeded by ``seed``)."""
    attacks = list(regularised)
    if not attacks or list(base) != attacks or list(oracle) != attacks:
        raise ValueError(f"attacks differ: {attacks}, {list(base)}, {list(oracle)}")
    seeds = sorted(regularised[attacks[0]])
    for attack in attacks:
        for model in (regularised, base, oracle):
            if sorted(model[attack]) != seeds:
                raise ValueError(f"{attack}: paired seeds differ: {sorted(model[attack])} "
                                 f"vs {seeds}")
        for one in seeds:
            if not regularised[attack][one][0] == base[attack][one][0] == oracle[attack][one][0]:
                raise ValueError(f"{attack}, seed {one}: the models were judged on "
                                 "different facts")

    def worst(draw: Sequence[tuple[int, Mapping[str, np.ndarray]]]) -> tuple[dict, dict]:
        return (_gap_per_attack(regularised, oracle, seeds, draw),
                _gap_per_attack(base, oracle, seeds, draw))

    def n_facts(attack: str, index: int) -> int:
        return regularised[attack][seeds[index]][1].shape[1]

    everything = [(index, {attack: np.arange(n_facts(attack, index)) for attack in attacks})
                  for index in range(len(seeds))]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_bootstrap):
        chosen = rng.integers(0, len(seeds), len(seeds))
        reg, plain = worst([(index, {attack: rng.integers(0, n_facts(attack, index),
                                                          n_facts(attack, index))
                                     for attack in attacks}) for index in chosen])
        draws.append(max(reg.values()) - max(plain.values()))
    reg, plain = worst(everything)
    reg_attack, base_attack = max(reg, key=reg.__getitem__), max(plain, key=plain.__getitem__)
    low, high = np.percentile(draws, [2.5, 97.5])
    distinct = sum(len({fact for attack in attacks for fact in regularised[attack][one][0]})
                   for one in seeds)
    return WorstCaseDifference(reg[reg_attack] - plain[base_attack], float(low), float(high),
                               _detectable(draws), len(seeds), distinct, reg[reg_attack],
                               reg_attack, plain[base_attack], base_attack)


def _windows(calibration: Mapping[str, Sequence[Mapping[str, Any]]],
             attack: str) -> dict[int, dict[float, int]]:
    """The counted steps per strength of each seed under ``attack``."""
    return {int(seed): {entry["lr"]: entry["counted_steps"][seed]
                        for entry in calibration[attack]}
            for seed in calibration[attack][0]["counted_steps"]}


def compare_worst_case(pairs: Mapping[str, str], attacks: Sequence[str],
                       facts: Mapping[int, Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]],
                       calibration: Mapping[str, Sequence[Mapping[str, Any]]],
                       score: str = "mcq") -> dict[str, dict[str, Any]]:
    """Every pair's :func:`worst_case_difference` of ``score``: ``{"<regularised>-<base>":
    record}``; ``facts`` and ``calibration`` as in :func:`compare_pairs`, with the oracle's
    facts too. A pair with a model lacking counted points under some attack in some seed
    gets ``{"not_judged": why}`` instead."""
    out: dict[str, dict[str, Any]] = {}
    windows = {attack: _windows(calibration, attack) for attack in attacks}
    for regularised, base in pairs.items():
        matrices = {name: {attack: {seed: score_matrix(facts[seed][attack][name],
                                                       windows[attack][seed], score)
                                    for seed in facts} for attack in attacks}
                    for name in (regularised, base, "oracle")}
        empty = sorted({f"{attack} (seed {seed})" for per_attack in matrices.values()
                        for attack, per_seed in per_attack.items()
                        for seed, matrix in per_seed.items() if matrix is None})
        if empty:
            out[f"{regularised}-{base}"] = {"not_judged": "no counted attack step under "
                                                          + ", ".join(empty)}
            continue
        out[f"{regularised}-{base}"] = worst_case_difference(
            matrices[regularised], matrices[base], matrices["oracle"]).as_record()
    return out


def compare_pairs(pairs: Mapping[str, str], attacks: Sequence[str],
                  facts: Mapping[int, Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]],
                  calibration: Mapping[str, Sequence[Mapping[str, Any]]]
                  ) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Every pair (``{regularised: base}``) under every attack, per paired score:
    ``{attack: {"<regularised>-<base>": {score: record}}}``.

    ``facts[seed][attack][model]`` is that seed's ``metrics/relearn_facts`` record;
    ``calibration`` the summary's (counted steps per strength and seed). A score with no
    counted point in some seed is left out."""
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for attack in attacks:
        windows = _windows(calibration, attack)
        out[attack] = {}
        for regularised, base in pairs.items():
            records = {}
            for score in PAIRED_SCORES:
                matrices = {name: {seed: score_matrix(facts[seed][attack][name],
                                                      windows[seed], score)
                                   for seed in facts} for name in (regularised, base)}
                if any(m is None for per_seed in matrices.values() for m in per_seed.values()):
                    continue
                records[score] = paired_difference(matrices[regularised],
                                                   matrices[base]).as_record()
            out[attack][f"{regularised}-{base}"] = records
    return out
