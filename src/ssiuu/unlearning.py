"""Running one unlearning method with the paper's stop rule and learning-rate search.

Unlearning starts from the base model and stops as soon as the forget score reaches the
threshold (chance, the oracle's level, or a number), checked every ``eval_every`` steps,
with ``max_steps`` as a cap. Learning rates are tried from the lowest up and the first
that gets there is kept: the paper's "lowest learning rate that reaches the threshold".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.adapters import with_lora
from ssiuu.data.encoding import encode_rows
from ssiuu.data.records import Record
from ssiuu.errors import DataError, ParamsError
from ssiuu.methods.objective import build_objective
from ssiuu.metrics import evaluate_rows
from ssiuu.models import load_saved, use_eager_attention
from ssiuu.params import StopParams, TrainParams, UnlearnParams
from ssiuu.training import make_loader, train

CHANCE_MCQ = 1 / 3


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
    """Resolve ``unlearn.stop.thresholds`` against the oracle's forget scores.

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


@dataclass
class Attempt:
    """One learning rate tried: how many steps it ran and whether it reached the threshold."""

    lr: float
    steps: int
    reached: bool
    forget_scores: dict[str, float]
    seconds: float


@dataclass
class UnlearnOutcome:
    """The kept run: its model, learning rate, steps, per-step history and every attempt."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    lr: float
    steps: int
    reached: bool
    thresholds: dict[str, float]
    history: list[dict[str, float]]
    attempts: list[Attempt] = field(default_factory=list)
    note: str | None = None


class _Monitor:
    """The stop rule: scores forget every ``eval_every`` steps, and retain exact match every
    ``retain_every`` of those checks, at the last step and once the stop is reached."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, forget: Sequence[Record],
                 retain: Sequence[Record], thresholds: dict[str, float], eval_every: int,
                 last_step: int, max_length: int, batch_size: int,
                 retain_every: int = 1) -> None:
        self.tokenizer, self.forget, self.retain = tokenizer, forget, retain
        self.thresholds, self.eval_every, self.last_step = thresholds, eval_every, last_step
        self.max_length, self.batch_size, self.retain_every = max_length, batch_size, retain_every
        self.records: list[dict[str, float]] = []
        self.scores: dict[str, float] = {}

    def check(self, step: int, model: PreTrainedModel) -> bool:
        """Score the model every ``eval_every`` steps and at the last; True once all hold."""
        if step % self.eval_every and step != self.last_step:
            return False
        record: dict[str, float] = {"step": step}
        self._score(record, "forget", self.forget, model)
        if "forget_mcq" not in record and "mcq" in self.thresholds:
            raise DataError("unlearn.stop.thresholds.mcq: no forget row has two distractors, "
                            "so multiple choice cannot be scored; stop on 'acc' instead")
        self.scores = {metric: record[f"forget_{metric}"] for metric in self.thresholds}
        if (len(self.records) % self.retain_every == 0 or step == self.last_step
                or self.reached):
            self._score(record, "retain", self.retain, model)
        self.records.append(record)
        return self.reached

    def _score(self, record: dict[str, float], split: str, rows: Sequence[Record],
               model: PreTrainedModel) -> None:
        scores = evaluate_rows(model, self.tokenizer, rows, self.max_length, self.batch_size,
                               multiple_choice=split == "forget")
        record.update({f"{split}_{key}": value for key, value in scores.items() if key != "n"})

    @property
    def reached(self) -> bool:
        """Whether the last scores met every threshold."""
        return bool(self.scores) and all(self.scores[metric] <= threshold
                                         for metric, threshold in self.thresholds.items())


def gradient_summary(history: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The medians over a run's steps of the base loss's gradient norm (before clipping)
    and, for a regularised method, of the regulariser's gradient norm and its ratio to the
    loss's (with the largest ratio), over the steps where the regulariser is active (every
    step but the first, which has no anchor)."""
    loss_norms = [row["loss_grad_norm"] for row in history if "loss_grad_norm" in row]
    out = {"loss_grad_norm_median": statistics.median(loss_norms)} if loss_norms else {}
    active = [row for row in history if "reg_grad_ratio" in row and row["step"] > 1]
    if active:
        ratios = [row["reg_grad_ratio"] for row in active]
        out.update(reg_grad_norm_median=statistics.median(row["reg_grad_norm"]
                                                          for row in active),
                   reg_grad_ratio_median=statistics.median(ratios),
                   reg_grad_ratio_max=max(ratios))
    return out


def merge_history(train_logs: list[dict[str, float]],
                  eval_logs: list[dict[str, float]]) -> list[dict[str, float]]:
    """One row per step with the training log and the evaluation scores of that step.

    A column both logs hold (other than ``step``) is an error: one would silently
    overwrite the other.
    """
    shared = ({k for e in train_logs for k in e} & {k for e in eval_logs for k in e}) - {"step"}
    if shared:
        raise ValueError(f"training and evaluation logs share column(s) {sorted(shared)}")
    by_step: dict[int, dict[str, float]] = {}
    for entry in [*eval_logs, *train_logs]:
        by_step.setdefault(int(entry["step"]), {}).update(entry)
    return [by_step[step] for step in sorted(by_step)]


def unlearn(method: str, base_dir: str | Path, forget: Sequence[Record],
            retain: Sequence[Record], params: UnlearnParams, thresholds: dict[str, float],
            max_length: int, eval_batch_size: int = 64, device: str = "cpu",
            seed: int = 0) -> UnlearnOutcome:
    """Unlearn ``forget`` from the model in ``base_dir`` with ``method``; keep ``retain``.

    ``seed`` fixes the batch order (it matters when a batch is smaller than its set) and
    the LoRA adapters' initialisation. With ``params.train.lora`` only the adapters train
    (the outcome's model is the ``peft`` model: saved, it is its adapter), and Ssiuu's
    regulariser penalises the adapters' attribution (the trainable weights of the linear
    layers in the blocks)."""
    train_knobs = params.train
    outcome = None
    attempts: list[Attempt] = []
    for lr in sorted(train_knobs.lrs):
        outcome = None  # free the previous attempt's model before loading the next
        model, tokenizer = load_saved(base_dir)
        model.to(device)
        if train_knobs.lora is not None:
            model = with_lora(model, train_knobs.lora, seed, field="unlearn.train.lora")
        pad_id = tokenizer.pad_token_id
        objective = build_objective(method, params.losses, model, tokenizer)
        previous_attention = (use_eager_attention(model) if objective.needs_double_backward
                              else None)
        forget_examples = objective.prepare(model, encode_rows(tokenizer, forget, max_length),
                                            pad_id, eval_batch_size)
        loaders = {"forget": make_loader(forget_examples, train_knobs.forget_batch_size,
                                         pad_id, seed)}
        if objective.needs_retain:
            retain_examples = objective.prepare_retain(
                model, encode_rows(tokenizer, retain, max_length), pad_id, eval_batch_size)
            loaders["retain"] = make_loader(retain_examples, train_knobs.retain_batch_size,
                                            pad_id, seed)
        monitor = _Monitor(tokenizer, forget, retain, thresholds, params.stop.eval_every,
                           train_knobs.max_steps, max_length, eval_batch_size,
                           params.stop.retain_every)
        if monitor.check(0, model):
            result_steps, seconds, history = 0, 0.0, []
        else:
            run = TrainParams(steps=train_knobs.max_steps, lr=lr, schedule="constant",
                              warmup_ratio=0.0, weight_decay=train_knobs.weight_decay,
                              grad_clip=train_knobs.grad_clip, log_every=1)
            result = train(model, loaders, objective, run, seed,
                           should_stop=monitor.check, desc=f"{method} lr={lr:g}")
            result_steps, seconds, history = result.steps, result.seconds, result.history
        note = None
        if previous_attention is not None:
            model.set_attn_implementation(previous_attention)
            note = (f"the exact regulariser gradient needs a double backward: attention ran "
                    f"eager during unlearning ({previous_attention} has none), and the "
                    f"model is saved with {previous_attention} again")
        attempts.append(Attempt(lr, result_steps, monitor.reached, monitor.scores, seconds))
        outcome = UnlearnOutcome(model, tokenizer, lr, result_steps, monitor.reached,
                                 thresholds, merge_history(history, monitor.records), attempts,
                                 note)
        if monitor.reached:
            break
    assert outcome is not None
    return outcome
