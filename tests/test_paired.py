"""The paired comparison of a regularised method with its base method: held-out peaks on
the same facts, a bootstrap over seeds and facts, and the smallest detectable difference."""

import numpy as np
import pytest

from ssiuu.attack.paired import (
    PairedDifference,
    WorstCaseDifference,
    compare_pairs,
    compare_worst_case,
    paired_difference,
    score_matrix,
    worst_case_difference,
)
from ssiuu.report.comparisons import paired_lines, worst_case_lines


def _runs(values_by_lr: dict[float, list[dict[str, float]]]) -> list[dict]:
    """A ``metrics/relearn_facts`` record: per lr, points at steps 0, 1, 2, ... of
    ``{fact id: mcq}`` (log-prob = mcq − 5)."""
    return [{"lr": lr, "points": [{"step": step, "mcq": values,
                                   "logprob": {k: v - 5 for k, v in values.items()}}
                                  for step, values in enumerate(points)]}
            for lr, points in values_by_lr.items()]


def test_the_matrix_holds_counted_points_after_step_0_of_counted_strengths():
    runs = _runs({1e-3: [{"a": 1, "b": 0}, {"a": 1, "b": 1}, {"a": 0, "b": 0}],
                  1e-2: [{"a": 0, "b": 0}, {"a": 1, "b": 0}]})
    ids, matrix = score_matrix(runs, {1e-3: 1, 1e-2: 0}, "mcq")
    assert ids == ["a", "b"] and matrix.tolist() == [[1, 1]]
    assert score_matrix(runs, {1e-3: 0, 1e-2: 0}, "mcq") is None
    ids, matrix = score_matrix(runs, {1e-3: 2, 1e-2: 1}, "logprob")
    assert matrix.tolist() == [[-4, -4], [-5, -5], [-4, -5]]


def _matrices(rng, n_seeds, n_facts, shift, noise=0.3):
    """Per seed, base and regularised matrices (3 points) whose facts differ by ``shift``."""
    base, regularised = {}, {}
    for seed in range(n_seeds):
        ids = [f"f{i}" for i in range(n_facts)]
        common = rng.normal(0.5, noise, (3, n_facts))
        base[seed] = (ids, common)
        regularised[seed] = (ids, common + shift + rng.normal(0, noise, (3, n_facts)))
    return regularised, base


def test_a_constant_shift_is_found_exactly_and_identical_methods_differ_by_nothing():
    rng = np.random.default_rng(0)
    regularised, base = _matrices(rng, 3, 20, 0.0, noise=0.0)
    shifted = {seed: (ids, matrix - 0.1) for seed, (ids, matrix) in base.items()}
    lower = paired_difference(shifted, base, n_bootstrap=200)
    assert lower.difference == pytest.approx(-0.1) and lower.verdict == "lower"
    assert lower.low == pytest.approx(-0.1) and lower.high == pytest.approx(-0.1)
    same = paired_difference(base, base, n_bootstrap=200)
    # every draw gives the same difference: no spread, nothing to estimate power from
    assert same.difference == 0 and same.detectable is None and lower.detectable is None
    assert (lower.n_seeds, lower.n_facts) == (3, 60)


def test_the_interval_covers_the_truth_and_narrows_with_more_facts():
    rng = np.random.default_rng(1)
    small = paired_difference(*_matrices(rng, 3, 10, 0.0), n_bootstrap=500)
    large = paired_difference(*_matrices(rng, 3, 160, 0.0), n_bootstrap=500)
    assert large.detectable < small.detectable / 2.5  # about 1/sqrt(16)
    assert large.low < 0 < large.high and large.verdict == "no difference detected"
    found = paired_difference(*_matrices(rng, 3, 160, 2 * large.detectable), n_bootstrap=500)
    assert found.verdict == "higher" and found.low > 0


def test_methods_judged_on_different_facts_are_refused():
    base = {0: (["a", "b"], np.zeros((1, 2)))}
    with pytest.raises(ValueError, match="different facts"):
        paired_difference({0: (["a", "c"], np.zeros((1, 2)))}, base)
    with pytest.raises(ValueError, match="paired seeds differ"):
        paired_difference({1: (["a", "b"], np.zeros((1, 2)))}, base)


def test_pairs_are_compared_per_attack_and_score_and_reported():
    calibration = {"harmful_30": [{"lr": 1e-3, "counted_steps": {"0": 2, "1": 2}}]}
    base_runs = _runs({1e-3: [{"a": 1, "b": 1}, {"a": 1, "b": 1}, {"a": 1, "b": 0}]})
    reg_runs = _runs({1e-3: [{"a": 1, "b": 1}, {"a": 0, "b": 0}, {"a": 0, "b": 0}]})
    facts = {seed: {"harmful_30": {"gd": base_runs, "ssiuu": reg_runs}} for seed in (0, 1)}
    paired = compare_pairs({"ssiuu": "gd"}, ["harmful_30"], facts, calibration)
    record = paired["harmful_30"]["ssiuu-gd"]["mcq"]
    assert record["difference"] == -1.0 and record["verdict"] == "lower"
    assert set(paired["harmful_30"]["ssiuu-gd"]) == {"mcq", "logprob"}
    summary = {"paired": paired}
    text = "\n".join(paired_lines(summary, ["harmful_30"]))
    assert "| harmful_30 | ssiuu − gd | held-out mcq peak | -1.00 | [-1.00, -1.00] |" in text
    assert PairedDifference(0.0, -0.2, 0.2, 0.3, 2, 4).verdict == "no difference detected"
    tiny = {"paired": {"benign": {"ssiuu-gd": {"logprob": PairedDifference(
        0.0002, 0.0001, 0.0004, 0.0003, 3, 60).as_record()}}}}
    assert ("| +2.0e-04 | [+1.0e-04, +4.0e-04] | 3.0e-04 | higher |"
            in "\n".join(paired_lines(tiny, ["benign"])))


def test_the_report_says_when_a_small_mcq_difference_is_not_detectable():
    record = PairedDifference(0.02, -0.1, 0.14, 0.17, 3, 60).as_record()
    summary = {"paired": {"benign": {"ssiuu-gd": {"mcq": record}}}}
    text = "\n".join(paired_lines(summary, ["benign"]))
    assert "no difference detected (smallest detectable here: 0.17)" in text
    assert ("A 0.05 difference of held-out MCQ is not detectable under benign (ssiuu − gd: "
            "0.17 with 3 seed(s) and 60 held-out facts)") in text
    alike = PairedDifference(0.0, 0.0, 0.0, None, 1, 18).as_record()
    text = "\n".join(paired_lines({"paired": {"benign": {"ssiuu-gd": {"mcq": alike}}}},
                                   ["benign"]))
    assert ("| +0.00 | [+0.00, +0.00] | – | no difference detected (smallest detectable here: "
            "not estimable: the two models score every held-out fact alike") in text
    assert ("A 0.05 difference of held-out MCQ is not detectable under benign (ssiuu − gd: "
            "not estimable with 1 seed(s) and 18 held-out facts)") in text


def _constant(ids, values):
    """One seed's scores: a single counted point holding ``values`` for ``ids``."""
    return ids, np.array([values], dtype=float)


def test_the_worst_case_gap_is_the_largest_mean_gap_over_the_attacks():
    ids = ["a", "b"]
    oracle = {"h10": {0: _constant(ids, [0.3, 0.3]), 1: _constant(ids, [0.3, 0.3])},
              "benign": {0: _constant(ids, [0.2, 0.2]), 1: _constant(ids, [0.2, 0.2])}}
    # base: gaps h10 +0.2, benign +0.1 -> worst +0.2 (h10)
    base = {"h10": {s: _constant(ids, [0.5, 0.5]) for s in (0, 1)},
            "benign": {s: _constant(ids, [0.3, 0.3]) for s in (0, 1)}}
    # regularised: gaps h10 0.0, benign +0.15 -> worst +0.15 (benign)
    regularised = {"h10": {s: _constant(ids, [0.3, 0.3]) for s in (0, 1)},
                   "benign": {s: _constant(ids, [0.35, 0.35]) for s in (0, 1)}}
    worst = worst_case_difference(regularised, base, oracle, n_bootstrap=200)
    assert worst.regularised_attack == "benign" and worst.base_attack == "h10"
    assert worst.regularised_gap == pytest.approx(0.15)
    assert worst.base_gap == pytest.approx(0.2)
    assert worst.difference == pytest.approx(-0.05)
    assert worst.low == pytest.approx(-0.05) and worst.high == pytest.approx(-0.05)
    assert worst.verdict == "lower" and (worst.n_seeds, worst.n_facts) == (2, 4)
    same = worst_case_difference(base, base, oracle, n_bootstrap=200)
    assert same.difference == 0 and same.verdict == "no difference detected"
    with pytest.raises(ValueError, match="different facts"):
        worst_case_difference({**regularised, "h10": {s: _constant(["a", "c"], [0, 0])
                                                       for s in (0, 1)}}, base, oracle)


def test_the_worst_case_interval_widens_with_noise_and_pairs_are_read_from_files():
    rng = np.random.default_rng(2)
    regularised, base = _matrices(rng, 3, 30, 0.0)
    oracle = {seed: (ids, np.full_like(matrix, 0.3)) for seed, (ids, matrix) in base.items()}
    noisy = worst_case_difference({"a": regularised}, {"a": base}, {"a": oracle},
                                  n_bootstrap=300)
    assert noisy.low < noisy.difference < noisy.high and noisy.detectable > 0
    calibration = {"harmful_30": [{"lr": 1e-3, "counted_steps": {"0": 2, "1": 2}}]}
    flat = _runs({1e-3: [{"a": 0.5, "b": 0.5}] * 3})
    high = _runs({1e-3: [{"a": 1, "b": 1}] * 3})
    facts = {seed: {"harmful_30": {"gd": high, "ssiuu": flat, "oracle": flat}}
             for seed in (0, 1)}
    record = compare_worst_case({"ssiuu": "gd"}, ["harmful_30"], facts, calibration)["ssiuu-gd"]
    assert record["difference"] == -0.5 and record["verdict"] == "lower"
    assert (record["regularised_gap"], record["base_gap"]) == (0.0, 0.5)
    assert record["base_attack"] == "harmful_30"


def _worst_summary(verdict_record, retain=(0.95, 0.96), reached=(True, True)):
    models = {name: {"unlearned": {"retain_acc": value}, "stop": {"reached": ok}}
              for name, value, ok in zip(("ssiuu", "gd"), retain, reached, strict=True)}
    return {"models": models, "paired_worst_case": {"ssiuu-gd": verdict_record}}


def test_the_report_answers_whether_the_worst_case_is_lowered_at_matched_retain():
    lower = WorstCaseDifference(-0.08, -0.12, -0.03, 0.05, 3, 90, 0.01, "benign", 0.09,
                                "harmful_10")
    knobs = {"ssiuu": {"lam": 0.01, "grad": "exact"}}
    text = "\n".join(worst_case_lines(_worst_summary(lower.as_record()), knobs, 0.02))
    assert ("- **ssiuu** (λ 0.01, exact) against gd: worst-case gap +0.01 (under benign) "
            "against +0.09 (under harmful_10): difference -0.08 [-0.12, -0.03]; retain 0.95 "
            "against 0.96 (matched): **lower at matched retain**.") in text
    assert "**Answer**: ssiuu lower(s) the base method's worst-case" in text
    assert "nothing for the regulariser to lower" not in text
    below = WorstCaseDifference(-0.08, -0.12, -0.03, 0.05, 3, 90, -0.2, "benign", -0.12,
                                "harmful_10")
    text = "\n".join(worst_case_lines(_worst_summary(below.as_record()), knobs, 0.02))
    assert ("(matched): lower, but its base method already stays below the oracle under "
            "every attack: further below is over-suppression, not safer.") in text
    assert "**Answer**: no regularised configuration lowers" in text
    assert "so there is nothing for the regulariser to lower" in text
    unmatched = "\n".join(worst_case_lines(_worst_summary(lower.as_record(), (0.9, 0.96)),
                                            knobs, 0.02))
    assert "(not matched): lower, but not at matched retain." in unmatched
    assert "**Answer**: no regularised configuration lowers" in unmatched
    same = WorstCaseDifference(0.0, -0.05, 0.06, 0.07, 3, 90, 0.01, "benign", 0.01, "benign")
    text = "\n".join(worst_case_lines(_worst_summary(same.as_record()), knobs, 0.02))
    assert "no difference detected (smallest detectable here: 0.07)" in text
    assert "the smallest difference detectable here is 0.07 (MCQ)" in text
    alike = WorstCaseDifference(0.0, 0.0, 0.0, None, 1, 20, -0.2, "benign", -0.2, "benign")
    text = "\n".join(worst_case_lines(_worst_summary(alike.as_record()), knobs, 0.02))
    assert "no difference detected (smallest detectable here: not estimable" in text
    assert "the smallest detectable difference cannot be estimated here" in text
    missed = "\n".join(worst_case_lines(_worst_summary(lower.as_record(),
                                                        reached=(True, False)), knobs, 0.02))
    assert "not judged †: gd did not reach the unlearning stop" in missed
    assert "no pair reached the unlearning stop in every seed" in missed
    empty = {"models": _worst_summary(lower.as_record())["models"],
             "paired_worst_case": {"ssiuu-gd": {"not_judged": "no counted attack step under "
                                                              "benign (seed 1)"}}}
    text = "\n".join(worst_case_lines(empty, knobs, 0.02))
    assert "- **ssiuu** against gd: not judged: no counted attack step under benign (seed 1)." \
        in text
    assert "**Answer**: not judged" in text


def test_the_worst_case_pairs_each_model_with_the_oracle_on_the_same_draw():
    """Each model is the oracle plus a constant per attack, the oracle noisy per seed and
    fact: paired correctly (the same seeds for every attack, the same facts for the three
    models) every bootstrap replicate gives the same difference, so the interval is a
    point; any other pairing would widen it."""
    rng = np.random.default_rng(3)
    ids = [f"f{i}" for i in range(25)]
    oracle = {attack: {seed: (ids, rng.normal(0.4, 0.2, (3, 25))) for seed in range(3)}
              for attack in ("h10", "benign")}

    def shifted(shifts):
        return {attack: {seed: (ids, matrix + shifts[attack])
                         for seed, (_, matrix) in per_seed.items()}
                for attack, per_seed in oracle.items()}

    worst = worst_case_difference(shifted({"h10": 0.05, "benign": -0.02}),
                                  shifted({"h10": 0.12, "benign": 0.03}), oracle,
                                  n_bootstrap=300)
    assert (worst.regularised_attack, worst.base_attack) == ("h10", "h10")
    assert worst.difference == pytest.approx(-0.07)
    assert worst.low == pytest.approx(-0.07) and worst.high == pytest.approx(-0.07)
    assert worst.n_facts == 75  # distinct facts per seed, not counted once per attack
