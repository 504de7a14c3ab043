"""Where unlearning stops: the two rules, as plain decisions on per-fact scores (no torch).

- ``reference`` (the default; our formulation after MUSE's privleak and TOFU's forget
  quality): the target is where a model that never saw the forget facts stands, from both
  sides. At every check the model being unlearned scores the forget facts and the **stop
  slice**, facts about more people no model trained on and no evaluation reads, on two
  per-fact scores: the answer's absolute likelihood (``logprob``, the mean answer-token
  log-probability) and its relative preference (``share``, the answer's share of the
  probability of the three multiple-choice options, by summed log-probability: 1/3 where
  the model cannot tell the answer from its distractors, near 1 where it knows it; a
  bounded, continuous form of the multiple-choice score, near TOFU's truth ratio); with
  ``unlearn.stop.min_k``, a third: ``min_k``, the mean of the fact's ``k`` fraction of
  least likely answer-token log-probabilities (Min-K% Prob's statistic: a fact can reach
  the never-seen mean with a few tokens far below it, which membership inference reads).
  For each score the forget facts' mean is compared with the stop slice's by Welch's
  two-sample statistic ``t = (mean_forget - mean_stop) / SE``. The forget set is
  *indistinguishable* from never-seen facts when ``|t| <= z`` for every score (``z = 2``:
  a two-sided test at about 5 % per score; the default's ``z = 1`` is narrower, the two
  means within one standard error); ``t > z`` on a score means the forget facts are still
  known on it, ``t < -z`` that they are over-unlearned on it (less likely than never-seen
  facts, what membership inference finds). The distance of a check to the band is the
  largest ``|t| - z`` over the scores, in standard errors (0 inside).
- ``threshold`` (the paper's, one-sided): every forget score at or below its threshold
  (``chance``, the oracle's score, or a number).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ssiuu.config.errors import ParamsError
from ssiuu.config.params import StopParams

CHANCE_MCQ = 1 / 3
SCORES = ("logprob", "share")  # the per-fact scores the reference rule always compares
MIN_STANDARD_ERROR = 1e-3  # nats: a floor, so that two constant samples still compare
Position = Literal["above", "inside", "past", "split"]


@dataclass(frozen=True)
class StopRule:
    """The forget score per metric at or below which unlearning stops (all must hold), and
    why a threshold is not the one params asked for (``None`` when it is)."""

    thresholds: dict[str, float]
    note: str | None = None


def chance_band(n_facts: int) -> float:
    """Two binomial standard errors of a multiple-choice score over ``n_facts`` at chance."""
    return 2 * math.sqrt(CHANCE_MCQ * (1 - CHANCE_MCQ) / max(n_facts, 1))


def stop_thresholds(stop: StopParams, oracle_metrics: dict[str, float] | None) -> StopRule:
    """Resolve ``unlearn.stop.thresholds`` (the ``threshold`` rule) against the oracle's
    forget scores.

    ``chance`` for ``mcq`` is 1/3, unless the oracle's forget MCQ lies outside
    :func:`chance_band` of it: then a model that never saw the facts does not score at
    chance on these options (distractors of another kind than the answers, for example),
    and the threshold follows the oracle's MCQ, with a note that says so.
    """
    resolved, note = {}, None
    for metric, threshold in stop.thresholds.items():
        key = f"forget_{metric}"
        if threshold == "oracle" and (oracle_metrics is None or key not in oracle_metrics):
            raise ParamsError(f"params.yaml: unlearn.stop.thresholds.{metric}: 'oracle' "
                              f"needs {key} in metrics/oracle.json (run evaluate@oracle)")
        if threshold == "oracle":
            resolved[metric] = float(oracle_metrics[key])
        elif threshold == "chance":
            resolved[metric] = CHANCE_MCQ
            if oracle_metrics is not None and key in oracle_metrics:
                oracle_mcq = float(oracle_metrics[key])
                band = chance_band(int(oracle_metrics.get("forget_n", 0)))
                if abs(oracle_mcq - CHANCE_MCQ) > band:
                    resolved[metric] = oracle_mcq
                    note = (f"the forget MCQ threshold follows the oracle's {oracle_mcq:.3f} "
                            f"instead of chance ({CHANCE_MCQ:.3f}): the oracle, which never "
                            f"saw these facts, is more than {band:.3f} (two standard errors "
                            f"over {int(oracle_metrics.get('forget_n', 0))} facts) from "
                            "chance, so chance is not where a model that forgot them lands")
        else:
            resolved[metric] = float(threshold)
    return StopRule(resolved, note)


def welch(sample: Sequence[float], reference: Sequence[float]) -> tuple[float, float]:
    """The difference of the means of ``sample`` and ``reference`` and its standard error
    (Welch: each sample's own variance), floored at :data:`MIN_STANDARD_ERROR`."""
    if len(sample) < 2 or len(reference) < 2:
        raise ValueError("a two-sample comparison needs at least two facts on each side")
    means = [sum(values) / len(values) for values in (sample, reference)]
    variances = [sum((v - mean) ** 2 for v in values) / (len(values) - 1)
                 for values, mean in zip((sample, reference), means, strict=True)]
    error = math.sqrt(variances[0] / len(sample) + variances[1] / len(reference))
    return means[0] - means[1], max(error, MIN_STANDARD_ERROR)


@dataclass(frozen=True)
class ReferenceCheck:
    """One check of the reference rule: per score, the forget facts' mean minus the stop
    slice's (``differences``, natural units), its standard error and their ratio
    (``statistics``), the band ``z``, where the check lies and its distance to the band."""

    differences: dict[str, float]
    errors: dict[str, float]
    statistics: dict[str, float]
    z: float

    @property
    def above(self) -> list[str]:
        """The scores on which the forget facts are still known (``t > z``)."""
        return [score for score, t in self.statistics.items() if t > self.z]

    @property
    def past(self) -> list[str]:
        """The scores on which the forget facts are over-unlearned (``t < -z``)."""
        return [score for score, t in self.statistics.items() if t < -self.z]

    @property
    def position(self) -> Position:
        """``inside`` the band on every score, ``above`` it on some (none past), ``past``
        it on some (none above), or ``split`` (above on one, past on another)."""
        if self.above and self.past:
            return "split"
        return "above" if self.above else "past" if self.past else "inside"

    @property
    def largest(self) -> float:
        """The largest ``|t|`` over the scores: how far from the centre of the band."""
        return max(abs(t) for t in self.statistics.values())

    @property
    def distance(self) -> float:
        """How far outside the band, in standard errors: the largest ``|t| - z`` (0 inside)."""
        return max(0.0, self.largest - self.z)

    def record(self) -> dict[str, float | str]:
        """The check as flat, rounded fields: ``stop_t_<score>``, ``stop_diff_<score>``,
        ``stop_se_<score>``, ``stop_distance`` and ``stop_position``."""
        out: dict[str, float | str] = {}
        for score in self.statistics:
            out[f"stop_t_{score}"] = round(self.statistics[score], 4)
            out[f"stop_diff_{score}"] = round(self.differences[score], 4)
            out[f"stop_se_{score}"] = round(self.errors[score], 4)
        out["stop_distance"] = round(self.distance, 4)
        out["stop_position"] = self.position
        return out


def compare_to_reference(forget: Mapping[str, Sequence[float]],
                         reference: Mapping[str, Sequence[float]], z: float) -> ReferenceCheck:
    """:class:`ReferenceCheck` of the forget facts' per-fact scores against the stop
    slice's, for every score of ``forget`` (:data:`SCORES`, and ``min_k`` where given;
    ``forget[score]`` and ``reference[score]`` are the per-fact values)."""
    differences, errors, statistics = {}, {}, {}
    for score in forget:
        difference, error = welch(forget[score], reference[score])
        differences[score], errors[score] = difference, error
        statistics[score] = difference / error
    return ReferenceCheck(differences, errors, statistics, z)


def jumped(previous: ReferenceCheck | None, current: ReferenceCheck) -> list[str]:
    """The scores that went from above the band to past it between two checks: a step too
    large to see the crossing, which a lower learning rate resolves."""
    if previous is None:
        return []
    return [score for score in current.past if score in previous.above]
