"""Replicates: per-seed records, their mean and standard deviation, and clear errors."""

import pytest

from ssiuu.config.errors import DataError
from ssiuu.config.seeds import across_seeds, existing_seed_dir, mean_std, seed_dir, seed_record


def test_mean_and_sample_std():
    assert mean_std([1.0]) == (1.0, 0.0)
    mean, std = mean_std([1.0, 2.0, 6.0])
    assert mean == pytest.approx(3.0) and std == pytest.approx(((4 + 1 + 9) / 2) ** 0.5)
    with pytest.raises(ValueError):
        mean_std([])


def test_across_seeds_averages_numbers_and_keeps_every_record():
    summary = across_seeds({0: {"acc": 0.5, "steps": 10, "verdict": "hiding", "lr": None},
                            2: {"acc": 1.0, "steps": 20, "verdict": "erasing", "lr": 1e-3}})
    assert summary["mean"] == {"acc": 0.75, "steps": 15}
    assert summary["std"]["acc"] == pytest.approx(0.3536, abs=1e-4)
    assert summary["seeds"]["2"]["verdict"] == "erasing"  # text stays per seed
    assert "lr" not in summary["mean"]  # not a number in every seed
    assert across_seeds({0: {"reached": True, "x": 1.0}})["mean"] == {"x": 1.0}


def test_seed_record_and_dirs_name_what_is_missing(tmp_path):
    summary = across_seeds({0: {"acc": 0.5}})
    assert seed_record(summary, 0, "metrics/x.json") == {"acc": 0.5}
    with pytest.raises(DataError, match=r"metrics/x.json: no record for seed 1"):
        seed_record(summary, 1, "metrics/x.json")
    with pytest.raises(DataError, match=r"metrics/x.json: no record for seed 0"):
        seed_record({"forget_acc": 0.1}, 0, "metrics/x.json")  # a file from before seeds
    seed_dir(tmp_path / "base", 0).mkdir(parents=True)
    assert existing_seed_dir(tmp_path / "base", 0) == tmp_path / "base" / "seed_0"
    with pytest.raises(DataError, match=r"seed_1: not found \(seed 1 of params.yaml"):
        existing_seed_dir(tmp_path / "base", 1)
