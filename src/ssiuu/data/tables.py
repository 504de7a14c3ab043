"""CSV tables that stages write for DVC plots (one row per step) and read back."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from ssiuu.config.errors import DataError


def write_rows(path: str | Path, rows: Sequence[Mapping[str, float | str]]) -> Path:
    """Write ``rows`` as CSV; the columns are every key, in order of first appearance."""
    path = Path(path)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_numeric_rows(path: str | Path) -> list[dict[str, float]]:
    """Read a CSV of numbers written by :func:`write_rows` (empty cells are left out)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found (run `dvc repro` for the stage that writes it)")
    with path.open(newline="") as handle:
        return [{key: float(value) for key, value in row.items() if value}
                for row in csv.DictReader(handle)]
