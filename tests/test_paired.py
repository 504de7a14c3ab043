"""The paired comparison of a regularised method with its base method: held-out peaks on
the same facts, a bootstrap over seeds and facts, and the smallest detectable difference."""

import numpy as np
import pytest

from ssiuu.paired import PairedDifference, compare_pairs, paired_difference, score_matrix
from ssiuu.report import _paired_lines


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
    assert same.difference == 0 and same.detectable == 0
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
    text = "\n".join(_paired_lines(summary, ["harmful_30"]))
    assert "| harmful_30 | ssiuu − gd | held-out mcq peak | -1.00 | [-1.00, -1.00] |" in text
    assert PairedDifference(0.0, -0.2, 0.2, 0.3, 2, 4).verdict == "no difference detected"
    tiny = {"paired": {"benign": {"ssiuu-gd": {"logprob": PairedDifference(
        0.0002, 0.0001, 0.0004, 0.0003, 3, 60).as_record()}}}}
    assert ("| +2.0e-04 | [+1.0e-04, +4.0e-04] | 3.0e-04 | higher |"
            in "\n".join(_paired_lines(tiny, ["benign"])))


def test_the_report_says_when_a_small_mcq_difference_is_not_detectable():
    record = PairedDifference(0.02, -0.1, 0.14, 0.17, 3, 60).as_record()
    summary = {"paired": {"benign": {"ssiuu-gd": {"mcq": record}}}}
    text = "\n".join(_paired_lines(summary, ["benign"]))
    assert "no difference detected (smallest detectable here: 0.17)" in text
    assert ("A 0.05 difference of held-out MCQ is not detectable under benign (ssiuu − gd: "
            "0.17 with 3 seed(s) and 60 held-out facts)") in text
