"""Choosing a regularised method's λ on tuning seeds, one choice per gradient mode.

The criterion (docs/method.md): among the grid's points of one mode where the method
reached its unlearning stop in every tuning seed and kept its retain accuracy after
unlearning within ``tolerance`` of its base method's (both means over the tuning seeds),
choose, in this order,

1. the lowest worst-case **resurfacing**: the largest held-out oracle gap (MCQ) over the
   attacks, counted from 0 (a gap below 0 resurfaces nothing);
2. then the lowest worst-case **distance from the oracle**: the largest absolute gap, since
   a model held below the oracle (over-suppressed) is not one that never saw the data;
3. then the smaller λ.

Gaps are compared at the report's two decimals, so differences below them tie. A mode with
no admissible point has no choice. The reported seeds never enter: the tuning seeds are
disjoint from them (``flows/tune.py`` refuses overlap).

A grid point is one row of the sweep's results table (``flows/sweep.py``): the swept
params and every metric of ``metrics/headline/<model>.json`` as ``file:key``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DECIMALS = 2  # gaps are compared at the report's precision


def _headline(name: str, key: str) -> str:
    return f"metrics/headline/{name}.json:{key}"


@dataclass(frozen=True)
class TuningPoint:
    """One grid point's λ, mode, the scores the criterion reads (the largest gap over the
    attacks and where, the largest absolute gap), why it is not admissible (``None`` when
    it is), and the regulariser's median gradient ratio (mean over the seeds; ``None``
    when the row lacks it)."""

    lam: float
    grad: str
    retain: float
    base_retain: float
    worst_gap: float
    worst_attack: str
    worst_distance: float
    reached_seeds: int
    excluded: str | None
    ratio: float | None = None

    @property
    def admissible(self) -> bool:
        """Whether the point may be chosen."""
        return self.excluded is None


def _median_ratio(row: Mapping[str, Any], method: str) -> float | None:
    """The mean over seeds of the method's median ‖regulariser gradient‖ / ‖loss
    gradient‖ (``metrics/unlearn/<method>.json``, per seed at 4 significant digits)."""
    prefix, suffix = f"metrics/unlearn/{method}.json:seeds.", ".reg_grad_ratio_median"
    values = [float(value) for key, value in row.items()
              if key.startswith(prefix) and key.endswith(suffix) and value is not None]
    return sum(values) / len(values) if values else None


def tuning_points(rows: Sequence[Mapping[str, Any]], method: str, base: str,
                  attacks: Sequence[str], n_seeds: int, tolerance: float) -> list[TuningPoint]:
    """Each row of the sweep as a :class:`TuningPoint` of ``method`` against ``base``.

    Raises :class:`KeyError` naming a metric a row lacks (the experiment did not reach
    ``report``, which writes ``metrics/headline``)."""
    points = []
    for row in rows:
        def metric(name: str, key: str, row: Mapping[str, Any] = row) -> Any:
            column = _headline(name, key)
            if row.get(column) is None:
                raise KeyError(f"experiment {row.get('experiment')}: no {column} (run the "
                               "sweep to the report stage)")
            return row[column]

        gaps = {attack: metric(method, f"{attack}_oracle_gap_mcq") for attack in attacks}
        worst = max(gaps, key=gaps.__getitem__)
        retain, base_retain = metric(method, "retain_acc"), metric(base, "retain_acc")
        reached = int(metric(method, "stop_reached_seeds"))
        excluded = None
        if reached < n_seeds:
            excluded = f"reached its unlearning stop in {reached} of {n_seeds} seeds"
        elif retain < base_retain - tolerance:
            excluded = (f"retain {retain:.3f} below {base}'s {base_retain:.3f} by more than "
                        f"{tolerance:g}")
        points.append(TuningPoint(float(row[f"unlearn.losses.{method}.lam"]),
                                  str(row[f"unlearn.losses.{method}.grad"]), float(retain),
                                  float(base_retain), float(gaps[worst]), worst,
                                  max(abs(float(gap)) for gap in gaps.values()), reached,
                                  excluded, _median_ratio(row, method)))
    return points


def _rank(point: TuningPoint) -> tuple[float, float, float]:
    """The criterion's order: resurfacing, then distance from the oracle, then λ."""
    return (round(max(point.worst_gap, 0.0), DECIMALS), round(point.worst_distance, DECIMALS),
            point.lam)


def choose(points: Sequence[TuningPoint]) -> dict[str, TuningPoint | None]:
    """Per mode: the admissible point first in the criterion's order (lowest worst-case
    resurfacing, then lowest worst-case distance from the oracle, then smaller λ), or
    ``None`` when no point of that mode is admissible."""
    modes = dict.fromkeys(point.grad for point in points)
    chosen: dict[str, TuningPoint | None] = {}
    for mode in modes:
        admissible = [p for p in points if p.grad == mode and p.admissible]
        chosen[mode] = min(admissible, key=_rank, default=None)
    return chosen


def tuning_table(points: Sequence[TuningPoint], chosen: Mapping[str, TuningPoint | None],
                 method: str, base: str) -> str:
    """The grid as a Markdown table (mode, λ, the regulariser's median gradient ratio,
    retain against the base method's, worst gap and its attack, worst absolute gap,
    admissibility), the chosen point of each mode in
    bold, then one line per mode saying what was chosen."""
    lines = [f"| mode | λ | median gradient ratio | {method} retain | {base} retain | "
             "worst oracle gap (MCQ) | attack | worst abs. gap | admissible |",
             "|---|---|---|---|---|---|---|---|---|"]
    for point in sorted(points, key=lambda p: (p.grad, p.lam)):
        mark = "**" if chosen.get(point.grad) is point else ""
        ratio = "–" if point.ratio is None else f"{point.ratio:.2g}"
        lines.append(f"| {point.grad} | {mark}{point.lam:g}{mark} | {ratio} | {point.retain:.3f} | "
                     f"{point.base_retain:.3f} | {point.worst_gap:+.3f} | {point.worst_attack}"
                     f" | {point.worst_distance:.3f} | "
                     f"{'yes' if point.admissible else 'no: ' + point.excluded} |")
    lines.append("")
    for mode, point in chosen.items():
        lines.append(f"- {mode}: " + (f"λ = {point.lam:g} (worst-case gap {point.worst_gap:+.3f}"
                                      f" under {point.worst_attack}, largest absolute gap "
                                      f"{point.worst_distance:.3f})" if point else
                                      "no admissible λ in the grid"))
    return "\n".join(lines) + "\n"
