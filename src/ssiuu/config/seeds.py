"""Replicates: every stochastic stage runs once per seed of ``seeds`` (params.yaml).

A seed fixes the initialisation and batch order of the base and the oracle, the batches of
unlearning, and the injected facts and batch order of the attacks. Seed s of a stage
reads seed s of the stage before it (``models/base/seed_<s>`` → ``models/unlearned/<m>/
seed_<s>`` → ...). Metrics files hold every seed's values and their mean and standard
deviation (:func:`across_seeds`); one seed is not a result.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ssiuu.config.errors import DataError


def seed_dir(root: str | Path, seed: int) -> Path:
    """Where seed ``seed`` of the artefact rooted at ``root`` lives."""
    return Path(root) / f"seed_{seed}"


def existing_seed_dir(root: str | Path, seed: int) -> Path:
    """:func:`seed_dir`, or a :class:`DataError` naming it when it does not exist."""
    path = seed_dir(root, seed)
    if not path.is_dir():
        raise DataError(f"{path}: not found (seed {seed} of params.yaml `seeds`; run "
                        "`dvc repro` for the stage that writes it)")
    return path


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    if not values:
        raise ValueError("mean of no values")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def across_seeds(per_seed: Mapping[int, Mapping[str, Any]], digits: int = 4) -> dict[str, Any]:
    """``{"mean": …, "std": …, "seeds": {"<seed>": record}}`` of flat per-seed records.

    Mean and standard deviation cover every key that is a number in every seed's record;
    other keys (text, ``None``, lists) stay in the per-seed records only.
    """
    if not per_seed:
        raise ValueError("no seeds to summarise")
    records = list(per_seed.values())
    keys = [key for key, value in records[0].items()
            if _numeric(value) and all(_numeric(r.get(key)) for r in records)]
    stats = {key: mean_std(r[key] for r in records) for key in keys}
    return {"mean": {key: round(mean, digits) for key, (mean, _) in stats.items()},
            "std": {key: round(std, digits) for key, (_, std) in stats.items()},
            "seeds": {str(seed): dict(record) for seed, record in per_seed.items()}}


def seed_record(metrics: Mapping[str, Any], seed: int, source: str) -> dict[str, Any]:
    """Seed ``seed``'s record of a metrics file written by :func:`across_seeds`."""
    try:
        return dict(metrics["seeds"][str(seed)])
    except (KeyError, TypeError):
        raise DataError(f"{source}: no record for seed {seed} (params.yaml `seeds` changed "
                        "since it was written? run `dvc repro`)") from None
