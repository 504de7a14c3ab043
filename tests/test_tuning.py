"""Choosing λ on tuning seeds: the criterion on sweep rows, and the tuning flow's grid."""

import pytest
import yaml
from projects import REPO

from ssiuu.attack.tuning import choose, tuning_points, tuning_table
from ssiuu.config.errors import ParamsError
from ssiuu.config.params import parse_params

ATTACKS = ["harmful_10", "benign"]


def _row(lam, grad, retain, gaps, reached=2, base_retain=0.9):
    row = {"experiment": f"tune-{grad}-{lam:g}", "unlearn.losses.ssiuu.lam": lam,
           "unlearn.losses.ssiuu.grad": grad,
           "metrics/headline/ssiuu.json:retain_acc": retain,
           "metrics/headline/ssiuu.json:stop_reached_seeds": reached,
           "metrics/headline/gd.json:retain_acc": base_retain}
    row.update({f"metrics/headline/ssiuu.json:{attack}_oracle_gap_mcq": gap
                for attack, gap in zip(ATTACKS, gaps, strict=True)})
    return row


ROWS = [_row(1e-3, "first_order", 0.90, [0.10, 0.05]),
        _row(1e-2, "first_order", 0.89, [0.02, 0.06]),   # worst 0.06: the lowest admissible
        _row(1e-1, "first_order", 0.85, [-0.05, -0.02]),  # retain 0.05 below gd's: out
        _row(1.0, "first_order", 0.91, [-0.1, -0.1], reached=1),  # missed a stop: out
        _row(1e-3, "exact", 0.92, [0.04, 0.03]),
        _row(1e-2, "exact", 0.90, [0.01, 0.04]),         # the same worst gap: smaller λ wins
        ]


def test_the_lowest_worst_case_resurfacing_among_admissible_points_is_chosen_per_mode():
    points = tuning_points(ROWS, "ssiuu", "gd", ATTACKS, n_seeds=2, tolerance=0.02)
    assert [p.admissible for p in points] == [True, True, False, False, True, True]
    assert "retain 0.850 below gd's 0.900 by more than 0.02" in points[2].excluded
    assert points[3].excluded == "reached its unlearning stop in 1 of 2 seeds"
    assert (points[1].worst_gap, points[1].worst_attack) == (0.06, "benign")
    chosen = choose(points)
    assert chosen["first_order"].lam == 1e-2 and chosen["exact"].lam == 1e-3
    table = tuning_table(points, chosen, "ssiuu", "gd")
    assert ("| first_order | **0.01** | – | 0.890 | 0.900 | +0.060 | benign | 0.060 | yes |"
            in table)
    assert ("- exact: λ = 0.001 (worst-case gap +0.040 under harmful_10, largest absolute "
            "gap 0.040)") in table


def test_below_the_oracle_everywhere_the_point_closest_to_it_is_chosen():
    rows = [_row(1e-3, "exact", 0.90, [-0.20, -0.10]),
            _row(1e-2, "exact", 0.90, [-0.05, -0.08]),   # closest to the oracle
            _row(1e-1, "exact", 0.90, [-0.30, -0.25]),   # most over-suppressed
            _row(1.0, "exact", 0.90, [0.003, -0.084])]   # +0.003 and 0.084 round to 0
    points = tuning_points(rows, "ssiuu", "gd", ATTACKS, n_seeds=2, tolerance=0.02)
    assert [p.worst_distance for p in points] == [0.20, 0.08, 0.30, 0.084]
    assert choose(points)["exact"].lam == 1e-2  # and 0.08: a tie, to the smaller λ
    assert choose(points[2:])["exact"].lam == 1.0  # 0.08 from the oracle against 0.30


def test_a_mode_without_an_admissible_point_has_no_choice():
    points = tuning_points([_row(1e-3, "exact", 0.5, [0.0, 0.0])], "ssiuu", "gd", ATTACKS,
                           n_seeds=2, tolerance=0.02)
    assert choose(points) == {"exact": None}
    assert "- exact: no admissible λ in the grid" in tuning_table(points, {"exact": None},
                                                                  "ssiuu", "gd")


def test_a_row_without_the_report_s_metrics_is_named():
    row = _row(1e-3, "exact", 0.9, [0.0, 0.0])
    del row["metrics/headline/gd.json:retain_acc"]
    with pytest.raises(KeyError, match="tune-exact-0.001: no metrics/headline/gd.json:retain_acc"):
        tuning_points([row], "ssiuu", "gd", ATTACKS, n_seeds=2, tolerance=0.02)


def _params(**changes):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.update(changes)
    return parse_params(raw)


def test_the_grid_runs_the_method_and_its_base_on_the_tuning_seeds():
    from flows.tune import tuning_grid

    params = _params()
    assert not set(params.tuning.seeds) & set(params.seeds)
    grid = tuning_grid(params, "ssiuu_npo")
    assert grid == {"seeds": [params.tuning.seeds], "unlearn.methods": [["npo", "ssiuu_npo"]],
                    "unlearn.losses.ssiuu_npo.grad": ["first_order", "exact"],
                    "unlearn.losses.ssiuu_npo.lam": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]}
    assert tuning_grid(params, "ssiuu_exact")["unlearn.losses.ssiuu_exact.grad"] == ["exact"]
    with pytest.raises(ParamsError, match=r"tuning.seeds \[0\] are also in seeds"):
        tuning_grid(_params(tuning={"seeds": [0, 100]}), "ssiuu")
    with pytest.raises(ParamsError, match="'gd' has no regulariser to tune"):
        tuning_grid(params, "gd")


def test_the_table_shows_the_regulariser_s_median_gradient_ratio_over_seeds():
    row = _row(1e-2, "exact", 0.90, [0.0, 0.01])
    row.update({"metrics/unlearn/ssiuu.json:seeds.100.reg_grad_ratio_median": 0.002,
                "metrics/unlearn/ssiuu.json:seeds.101.reg_grad_ratio_median": 0.004,
                "metrics/unlearn/ssiuu.json:mean.reg_grad_ratio_median": 0.0})
    points = tuning_points([row], "ssiuu", "gd", ATTACKS, n_seeds=2, tolerance=0.02)
    assert points[0].ratio == pytest.approx(0.003)
    assert "| exact | **0.01** | 0.003 | 0.900 |" in tuning_table(points, choose(points),
                                                                "ssiuu", "gd")
