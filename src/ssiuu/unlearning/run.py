"""Running one unlearning method with its stop rule and learning-rate ladder.

Unlearning starts from the base model and is checked every ``eval_every`` steps, with
``max_steps`` as a cap, under one of the two rules of :mod:`ssiuu.unlearning.stop`:

- ``reference`` (the default): the forget facts are scored beside the stop slice (facts
  about people no model saw) and unlearning ends at the first check where the two cannot
  be told apart on answer log-prob and multiple-choice probability share (or, with
  ``centre_checks``, at the most central of the checks inside the band that follow it).
  Learning rates are tried from the highest down; a lower one only when a step jumped over
  the band (the crossing was not seen). The kept model is that check, else the closest
  check of every rate tried, its distance recorded.
- ``threshold`` (the paper's): unlearning stops as soon as every forget score is at or
  below its threshold; rates are tried from the lowest up and the first that gets there is
  kept (the paper's "lowest learning rate that reaches the threshold").
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.config.catalog import method_spec
from ssiuu.config.errors import DataError
from ssiuu.config.params import StopParams, TrainParams, UnlearnParams
from ssiuu.data.encoding import encode_rows
from ssiuu.data.records import Record
from ssiuu.model.adapters import with_lora
from ssiuu.model.loading import load_saved, use_eager_attention
from ssiuu.model.training import make_loader, train
from ssiuu.scoring.metrics import FactScore, aggregate, score_rows
from ssiuu.scoring.privacy import membership_scores
from ssiuu.unlearning.methods.advantage import AdvantageTerm, alternative_answers
from ssiuu.unlearning.methods.objective import build_objective
from ssiuu.unlearning.stop import ReferenceCheck, compare_to_reference, jumped


@dataclass
class Attempt:
    """One learning rate tried: the steps it ran, the step of its kept check, whether it
    reached the stop, its forget scores there, its time, and (reference rule) that check's
    distance to the band and the steps at which a step jumped over it."""

    lr: float
    steps: int
    reached: bool
    forget_scores: dict[str, float]
    seconds: float
    kept_step: int = 0
    distance: float | None = None
    jumps: list[int] = field(default_factory=list)


@dataclass
class UnlearnOutcome:
    """The kept model, its learning rate and step, whether it reached the stop, the
    threshold rule's thresholds (empty under the reference rule) or the reference rule's
    kept check, its attempt's per-step history, every attempt and the forget term's floors
    (``unlearn.train.forget_floor`` and ``forget_token_floor``; ``None`` without one)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    lr: float
    steps: int
    reached: bool
    thresholds: dict[str, float]
    history: list[dict[str, float]]
    attempts: list[Attempt] = field(default_factory=list)
    note: str | None = None
    check: ReferenceCheck | None = None
    floor: float | None = None
    token_floor: float | None = None


def _per_fact(scores: Sequence[FactScore], split: str) -> dict[str, list[float]]:
    """The per-fact log-probs and multiple-choice shares of a scored split."""
    shares = [s.share for s in scores if s.share is not None]
    if len(shares) < 2:
        raise DataError(f"unlearn.stop.rule: 'reference' compares multiple-choice shares, "
                        f"but fewer than two {split} facts have two distractors; give them "
                        "distractors, or stop on rule 'threshold' with 'acc'")
    return {"logprob": [s.logprob for s in scores], "share": shares}


def _prefixed(split: str, scores: Sequence[FactScore]) -> dict[str, float]:
    """A scored split's :func:`~ssiuu.scoring.metrics.aggregate` as ``<split>_<score>`` columns
    (the count left out)."""
    return {f"{split}_{key}": value for key, value in aggregate(scores).items() if key != "n"}


class _Monitor:
    """Scores the forget facts every ``eval_every`` steps and at the last step, and retain
    exact match every ``retain_every`` checks, at the last step and once the run ends; the
    rule (a subclass's :meth:`decide`) says when it ends."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, forget: Sequence[Record],
                 retain: Sequence[Record], stop: StopParams, last_step: int, max_length: int,
                 batch_size: int) -> None:
        self.tokenizer, self.forget, self.retain, self.stop = tokenizer, forget, retain, stop
        self.last_step, self.max_length, self.batch_size = last_step, max_length, batch_size
        self.records: list[dict[str, float]] = []
        self.scores: dict[str, float] = {}

    def check(self, step: int, model: PreTrainedModel) -> bool:
        """Score the model every ``eval_every`` steps and at the last; True ends the run."""
        if step % self.stop.eval_every and step != self.last_step:
            return False
        record: dict[str, float] = {"step": step}
        scores = score_rows(model, self.tokenizer, self.forget, self.max_length,
                            self.batch_size)
        record.update(_prefixed("forget", scores))
        done = self.decide(step, model, record, scores)
        if (len(self.records) % self.stop.retain_every == 0 or step == self.last_step
                or done):
            retain = score_rows(model, self.tokenizer, self.retain, self.max_length,
                                self.batch_size, multiple_choice=False)
            record.update(_prefixed("retain", retain))
        self.records.append(record)
        return done

    def decide(self, step: int, model: PreTrainedModel, record: dict[str, float],
               scores: Sequence[FactScore]) -> bool:
        """Whether the run ends at this check (``record`` may take the rule's fields)."""
        raise NotImplementedError

    @property
    def reached(self) -> bool:
        """Whether the run reached its stop."""
        raise NotImplementedError


class _ThresholdMonitor(_Monitor):
    """The paper's rule: the run ends once every forget score is at or below its threshold."""

    def __init__(self, *args: object, thresholds: dict[str, float]) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.thresholds = thresholds

    def decide(self, step: int, model: PreTrainedModel, record: dict[str, float],
               scores: Sequence[FactScore]) -> bool:
        if "forget_mcq" not in record and "mcq" in self.thresholds:
            raise DataError("unlearn.stop.thresholds.mcq: no forget row has two distractors, "
                            "so multiple choice cannot be scored; stop on 'acc' instead")
        self.scores = {metric: record[f"forget_{metric}"] for metric in self.thresholds}
        return self.reached

    @property
    def reached(self) -> bool:
        return bool(self.scores) and all(self.scores[metric] <= threshold
                                         for metric, threshold in self.thresholds.items())


class _ReferenceMonitor(_Monitor):
    """The reference rule: scores the stop slice beside the forget facts, keeps a copy of
    the weights of ``model`` (the unwrapped model the loop trains in place; the loop may
    hand :meth:`check` its distributed wrapper) at the closest check so far (the smallest
    largest ``|t|``: inside the band, the most central), and ends the run ``centre_checks``
    checks in a row after the first check inside found no more central one, once no score
    is above the band, or ``patience`` checks after some score went past it without coming
    closer."""

    def __init__(self, *args: object, stop_rows: Sequence[Record],
                 model: PreTrainedModel) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.stop_rows, self.model = stop_rows, model
        self.last: ReferenceCheck | None = None
        self.best: ReferenceCheck | None = None
        self.best_step, self.best_state = 0, None
        self.since_best = 0
        self.jumps: list[int] = []

    def decide(self, step: int, model: PreTrainedModel, record: dict[str, float],
               scores: Sequence[FactScore]) -> bool:
        reference = score_rows(model, self.tokenizer, self.stop_rows, self.max_length,
                               self.batch_size)
        record.update(_prefixed("stop", reference))
        forget, stop_slice = _per_fact(scores, "forget"), _per_fact(reference, "stop slice")
        if self.stop.min_k is not None:
            for per_fact, rows in ((forget, self.forget), (stop_slice, self.stop_rows)):
                per_fact["min_k"] = [one["min_k"] for one in membership_scores(
                    model, self.tokenizer, rows, self.max_length, self.stop.min_k,
                    self.batch_size)]
        check = compare_to_reference(forget, stop_slice, self.stop.z)
        record.update({key: value for key, value in check.record().items()
                       if not isinstance(value, str)})
        if jumped(self.last, check):
            self.jumps.append(step)
        self.last = check
        if self.best is None or check.largest < self.best.largest:
            self.best, self.best_step, self.since_best = check, step, 0
            self.best_state = {key: value.detach().clone()
                               for key, value in self.model.state_dict().items()}
        else:
            self.since_best += 1
        self.scores = {key.removeprefix("forget_"): value for key, value in record.items()
                       if key.startswith("forget_")}
        if self.best.position == "inside":
            return bool(check.past) or self.since_best >= self.stop.centre_checks
        return (check.position == "past"
                or (bool(check.past) and self.since_best >= self.stop.patience))

    @property
    def reached(self) -> bool:
        return self.best is not None and self.best.position == "inside"


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


def stop_slice_users(params: UnlearnParams) -> list[str]:
    """The settings of ``params`` that read the stop slice, named as an error names them."""
    return [knob for knob, needs in (
        ("unlearn.stop.rule: 'reference'", params.stop.rule == "reference"),
        ("unlearn.train.forget_floor: 'stop_slice'",
         params.train.forget_floor == "stop_slice"),
        ("unlearn.train.forget_token_floor", params.train.forget_token_floor is not None),
    ) if needs]


def unlearn(method: str, base_dir: str | Path, forget: Sequence[Record],
            retain: Sequence[Record], params: UnlearnParams, thresholds: dict[str, float],
            max_length: int, eval_batch_size: int = 64, device: str = "cpu",
            seed: int = 0, stop_rows: Sequence[Record] | None = None,
            retain_train: Sequence[Record] | None = None) -> UnlearnOutcome:
    """Unlearn ``forget`` from the model in ``base_dir`` with ``method``; keep ``retain``.

    A method's retain term trains on ``retain_train`` (``retain`` when ``None``); the
    checks score ``retain``.
    ``params.stop.rule`` chooses the stop (see the module's docstring): ``reference``
    needs ``stop_rows`` (the stop slice), ``threshold`` the resolved ``thresholds``.
    ``seed`` fixes the batch order (it matters when a batch is smaller than its set) and
    the LoRA adapters' initialisation. With ``params.train.lora`` only the adapters train
    (the outcome's model is the ``peft`` model: saved, it is its adapter), and Ssiuu's
    regulariser penalises the adapters' attribution (the trainable weights of the linear
    layers in the blocks)."""
    train_knobs, stop = params.train, params.stop
    reference = stop.rule == "reference"
    for knob in stop_slice_users(params):
        if stop_rows is None or len(stop_rows) < 2:
            raise DataError(f"{knob} needs a stop slice of at least two never-seen facts "
                            "(data.generator.n_stop_people, or data.jsonl.stop)")
    advantage = (train_knobs.forget_advantage if method_spec(method).forget == "ga"
                 else None)  # like the floors: a gradient-ascent forget term's only
    drawn = (alternative_answers(forget, retain, advantage.alternatives, seed)
             if advantage is not None else None)
    floor: float | None = None
    token_floor: float | None = None
    attempts: list[Attempt] = []
    kept: tuple[_Monitor, float, list[dict[str, float]]] | None = None
    model = tokenizer = note = None
    for lr in sorted(train_knobs.lrs, reverse=reference):
        model = None  # free the previous attempt's model before loading the next
        model, tokenizer = load_saved(base_dir)
        model.to(device)
        if train_knobs.lora is not None:
            model = with_lora(model, train_knobs.lora, seed, field="unlearn.train.lora")
        pad_id = tokenizer.pad_token_id
        if train_knobs.forget_floor == "stop_slice" and floor is None:
            floor = aggregate(score_rows(model, tokenizer, stop_rows, max_length,
                                         eval_batch_size, multiple_choice=False))["logprob"]
        if train_knobs.forget_token_floor is not None and token_floor is None:
            token_floor = statistics.fmean(
                scores["min_k"] for scores in membership_scores(
                    model, tokenizer, stop_rows, max_length, train_knobs.forget_token_floor,
                    eval_batch_size))
        term = (AdvantageTerm.build(tokenizer, forget, drawn, advantage, max_length, device)
                if advantage is not None and drawn is not None else None)
        objective = build_objective(method, params.losses, model, tokenizer,
                                    train_knobs.retain_term, floor, token_floor, term)
        previous_attention = (use_eager_attention(model) if objective.needs_double_backward
                              else None)
        forget_examples = objective.prepare(model, encode_rows(tokenizer, forget, max_length),
                                            pad_id, eval_batch_size)
        loaders = {"forget": make_loader(forget_examples, train_knobs.forget_batch_size,
                                         pad_id, seed)}
        if objective.needs_retain:
            retain_examples = objective.prepare_retain(
                model, encode_rows(tokenizer, retain if retain_train is None else retain_train,
                                   max_length), pad_id, eval_batch_size)
            loaders["retain"] = make_loader(retain_examples, train_knobs.retain_batch_size,
                                            pad_id, seed)
        shared = (tokenizer, forget, retain, stop, train_knobs.max_steps, max_length,
                  eval_batch_size)
        monitor: _Monitor = (_ReferenceMonitor(*shared, stop_rows=stop_rows, model=model)
                             if reference else _ThresholdMonitor(*shared, thresholds=thresholds))
        if monitor.check(0, model):
            steps, seconds, history = 0, 0.0, []
        else:
            run = TrainParams(steps=train_knobs.max_steps, lr=lr, schedule="constant",
                              warmup_ratio=0.0, weight_decay=train_knobs.weight_decay,
                              grad_clip=train_knobs.grad_clip, log_every=1)
            result = train(model, loaders, objective, run, seed,
                           should_stop=monitor.check, desc=f"{method} lr={lr:g}")
            steps, seconds, history = result.steps, result.seconds, result.history
        if previous_attention is not None:
            model.set_attn_implementation(previous_attention)
            note = (f"the exact regulariser gradient needs a double backward: attention ran "
                    f"eager during unlearning ({previous_attention} has none), and the "
                    f"model is saved with {previous_attention} again")
        if isinstance(monitor, _ReferenceMonitor):
            attempts.append(Attempt(lr, steps, monitor.reached, monitor.scores, seconds,
                                    monitor.best_step, monitor.best.distance,
                                    list(monitor.jumps)))
            if kept is None or monitor.best.distance < kept[0].best.distance:
                kept = (monitor, lr, merge_history(history, monitor.records))
            if monitor.reached or not monitor.jumps:
                break
        else:
            attempts.append(Attempt(lr, steps, monitor.reached, monitor.scores, seconds,
                                    steps))
            kept = (monitor, lr, merge_history(history, monitor.records))
            if monitor.reached:
                break
    assert kept is not None and model is not None and tokenizer is not None
    monitor, lr, history = kept
    if isinstance(monitor, _ReferenceMonitor):
        with torch.no_grad():
            model.load_state_dict(monitor.best_state)
        return UnlearnOutcome(model, tokenizer, lr, monitor.best_step, monitor.reached, {},
                              history, attempts, note, monitor.best, floor, token_floor)
    return UnlearnOutcome(model, tokenizer, lr, attempts[-1].steps, monitor.reached,
                          thresholds, history, attempts, note, floor=floor,
                          token_floor=token_floor)
