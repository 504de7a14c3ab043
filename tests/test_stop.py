"""The reference stop rule's decisions on per-fact scores (no model)."""

import math
import statistics

import pytest

from ssiuu.unlearning.stop import MIN_STANDARD_ERROR, compare_to_reference, jumped, welch


def test_welch_is_the_difference_of_means_over_its_unpooled_standard_error():
    sample, reference = [1.0, 2.0, 4.0, 5.0], [0.0, 1.0, 1.0, 2.0, 6.0]
    difference, error = welch(sample, reference)
    assert difference == pytest.approx(3.0 - 2.0)
    expected = math.sqrt(statistics.variance(sample) / 4 + statistics.variance(reference) / 5)
    assert error == pytest.approx(expected)
    assert welch([1.0, 1.0], [1.0, 1.0]) == (0.0, MIN_STANDARD_ERROR)
    with pytest.raises(ValueError, match="at least two facts"):
        welch([1.0], [1.0, 2.0])


def _scores(logprob_shift: float, share_shift: float) -> tuple[dict, dict]:
    """Forget and stop-slice per-fact scores: the same spread, the forget side shifted."""
    spread = [-1.0, -0.5, 0.0, 0.5, 1.0] * 8
    reference = {"logprob": [-3.0 + v for v in spread],
                 "share": [0.35 + v / 10 for v in spread]}
    forget = {"logprob": [v + logprob_shift for v in reference["logprob"]],
              "share": [v + share_shift for v in reference["share"]]}
    return forget, reference


def test_a_check_is_inside_only_when_both_scores_are_within_the_band():
    # standard errors: logprob sqrt(2 * 0.5128 / 40) = 0.160, share a tenth of it
    error = math.sqrt(2 * statistics.variance([-1.0, -0.5, 0.0, 0.5, 1.0] * 8) / 40)
    inside = compare_to_reference(*_scores(0.5 * error, -0.05 * error), z=1.0)
    assert inside.position == "inside" and inside.distance == 0.0
    assert inside.statistics["logprob"] == pytest.approx(0.5)
    assert inside.statistics["share"] == pytest.approx(-0.5)
    known = compare_to_reference(*_scores(3 * error, 0.0), z=1.0)
    assert known.position == "above" and known.above == ["logprob"]
    assert known.distance == pytest.approx(2.0)
    over = compare_to_reference(*_scores(-2.5 * error, 0.0), z=1.0)
    assert over.position == "past" and over.past == ["logprob"]
    assert over.distance == pytest.approx(1.5)
    split = compare_to_reference(*_scores(-2.5 * error, 0.3 * error), z=1.0)
    assert split.position == "split" and split.above == ["share"]
    assert split.distance == pytest.approx(2.0)
    assert compare_to_reference(*_scores(1.5 * error, 0.0), z=2.0).position == "inside"


def test_the_record_holds_each_statistic_and_the_distance():
    check = compare_to_reference(*_scores(-0.4, 0.0), z=1.0)
    record = check.record()
    assert record["stop_position"] == "past"
    assert record["stop_diff_logprob"] == pytest.approx(-0.4)
    assert record["stop_t_logprob"] == pytest.approx(round(check.statistics["logprob"], 4))
    assert record["stop_distance"] == round(check.distance, 4)
    assert set(record) == {"stop_t_logprob", "stop_diff_logprob", "stop_se_logprob",
                           "stop_t_share", "stop_diff_share", "stop_se_share",
                           "stop_distance", "stop_position"}


def test_a_jump_is_a_score_that_went_from_above_the_band_to_past_it_between_two_checks():
    above = compare_to_reference(*_scores(1.0, 0.1), z=1.0)
    inside = compare_to_reference(*_scores(0.0, 0.0), z=1.0)
    past = compare_to_reference(*_scores(-1.0, 0.1), z=1.0)
    assert jumped(None, past) == []
    assert jumped(above, past) == ["logprob"]  # the share stayed above: no jump there
    assert jumped(inside, past) == []  # the crossing was seen: a lower rate would not help


def test_a_third_score_joins_the_band_and_the_centre_is_the_smallest_largest_t():
    error = math.sqrt(2 * statistics.variance([-1.0, -0.5, 0.0, 0.5, 1.0] * 8) / 40)
    forget, reference = _scores(0.2 * error, 0.0)
    reference["min_k"] = [v - 2.0 for v in reference["logprob"]]
    forget["min_k"] = [v - 1.6 * error for v in reference["min_k"]]  # lowest tokens too low
    check = compare_to_reference(forget, reference, z=1.0)
    assert set(check.statistics) == {"logprob", "share", "min_k"}
    assert check.position == "past" and check.past == ["min_k"]
    assert check.largest == pytest.approx(1.6) and check.distance == pytest.approx(0.6)
    assert "stop_t_min_k" in check.record()
    without = compare_to_reference(*_scores(0.2 * error, 0.0), z=1.0)
    assert without.position == "inside" and without.largest == pytest.approx(0.2)
