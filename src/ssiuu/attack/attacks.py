"""Relearning attacks: does knowledge that unlearning removed come back under fine-tuning?

Two attacks, as the paper runs them:

- ``harmful_<P>`` (adversarial injection): fine-tune on P% of the forget facts and judge
  the attack on the rest of the forget set, which it never shows. A model that only hid
  the facts recovers the held-out ones too; a model that never knew them (the oracle)
  cannot.
- ``benign``: fine-tune on the benign instruction set, which holds no forget fact, and
  judge on the whole forget set.

Every attack runs once per learning rate (its strengths), through the one training loop,
and scores the model at step 0, every ``eval_every`` steps and at the last step. The
paper reports the *highest* forget score reached while retraining, not only the last:
:func:`peak` gives it. Each run also compares the forget set's neuron attribution before
and after the attack (Spearman's ρ, :func:`ssiuu.unlearning.attribution.rank_correlation`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.config.errors import DataError
from ssiuu.config.params import RelearnParams, TrainParams
from ssiuu.data.encoding import encode_rows
from ssiuu.data.records import Record
from ssiuu.model.adapters import with_lora
from ssiuu.model.loading import load_saved
from ssiuu.model.training import make_loader, nll_loss, train
from ssiuu.scoring.metrics import FactScore, aggregate, score_rows
from ssiuu.scoring.privacy import aucs, membership_scores
from ssiuu.unlearning.attribution import net_attribution, rank_correlation

BENIGN = "benign"
HARMFUL = "harmful"
SCORES = ("acc", "mcq", "logprob")


@dataclass(frozen=True)
class AttackData:
    """What one attack fine-tunes on and what it is judged on.

    ``heldout`` are the forget facts the attack is judged on and never trains on (all of
    them for ``benign``); ``injected`` are the forget facts it trains on (``harmful``).
    """

    name: str
    train: list[Record]
    heldout: list[Record]
    injected: list[Record]

    @property
    def kind(self) -> str:
        """``benign`` or ``harmful``."""
        return attack_kind(self.name)[0]


def attack_kind(name: str) -> tuple[str, float]:
    """``("benign", 0.0)`` or ``("harmful", P / 100)`` for an attack name of params."""
    if name == BENIGN:
        return BENIGN, 0.0
    kind, _, percent = name.partition("_")
    if kind != HARMFUL or not percent.isdigit() or not 0 < int(percent) < 100:
        raise ValueError(f"unknown attack {name!r}: expected 'benign' or 'harmful_<1-99>'")
    return HARMFUL, int(percent) / 100


def attack_data(name: str, forget: Sequence[Record], benign: Sequence[Record],
                seed: int) -> AttackData:
    """Split the data for attack ``name``: the same split for every attacked model.

    ``harmful_<P>`` injects ``round(P% · |forget|)`` facts (at least one, at most all but
    one), drawn with ``seed`` independently of any model, so the base, the oracle and every
    unlearned model are judged on the same held-out facts (the oracle gap compares like with
    like). ``benign`` trains on ``benign`` and is judged on all of ``forget``.
    """
    if not forget:
        raise DataError("forget split: empty, nothing to attack")
    kind, fraction = attack_kind(name)
    if kind == BENIGN:
        if not benign:
            raise DataError("benign split: empty, the benign attack has nothing to train on")
        return AttackData(name, list(benign), list(forget), [])
    if len(forget) < 2:
        raise DataError(f"forget split: {name} needs at least 2 facts (one to inject, one "
                        "to judge on)")
    n_inject = min(max(1, round(fraction * len(forget))), len(forget) - 1)
    order = sorted(row["id"] for row in forget)
    injected_ids = set(random.Random(seed).sample(order, n_inject))
    injected = [row for row in forget if row["id"] in injected_ids]
    heldout = [row for row in forget if row["id"] not in injected_ids]
    return AttackData(name, injected, heldout, injected)


@dataclass
class AttackRun:
    """One strength of an attack: its learning rate, the scores along the way, Spearman's
    ρ between the forget set's neuron attribution before and after it, and each held-out
    fact's scores at each scored step (``{"step", "mcq": {id: 0|1}, "logprob": {id: …}}``,
    what the paired comparison of two methods resamples)."""

    lr: float
    curve: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    attribution_rho: float | None = None
    heldout_facts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Scored:
    """A model's scores at one step: each forget fact's (by id), retain's, utility's when
    it was scored, and, with a holdout split, each forget fact's membership scores (by id)
    and the holdout facts'."""

    forget: dict[str, FactScore]
    retain: list[FactScore]
    utility: list[FactScore] | None
    membership: dict[str, dict[str, float]] | None = None
    holdout: list[dict[str, float]] | None = None


class _Scorer:
    """Scores a model on the forget facts (with multiple choice), retain and utility, and
    its membership scores of the forget and holdout facts when there is a holdout split."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, forget: Sequence[Record],
                 retain: Sequence[Record], utility: Sequence[Record], max_length: int,
                 batch_size: int, holdout: Sequence[Record] | None = None,
                 mia_k: float = 0.4) -> None:
        self.tokenizer, self.forget, self.retain, self.utility = tokenizer, forget, retain, utility
        self.max_length, self.batch_size = max_length, batch_size
        self.holdout, self.mia_k = holdout, mia_k

    def _membership(self, model: PreTrainedModel, rows: Sequence[Record]
                    ) -> list[dict[str, float]]:
        return membership_scores(model, self.tokenizer, rows, self.max_length, self.mia_k,
                                 self.batch_size)

    def _rows(self, model: PreTrainedModel, rows: Sequence[Record],
              multiple_choice: bool) -> list[FactScore]:
        return score_rows(model, self.tokenizer, rows, self.max_length, self.batch_size,
                          multiple_choice)

    def __call__(self, model: PreTrainedModel, with_utility: bool) -> _Scored:
        """The model's scores now (utility only when ``with_utility``)."""
        forget = {score.id: score for score in self._rows(model, self.forget, True)}
        retain = self._rows(model, self.retain, False)
        utility = self._rows(model, self.utility, False) if with_utility else None
        if not self.holdout:
            return _Scored(forget, retain, utility)
        membership = dict(zip([row["id"] for row in self.forget],
                              self._membership(model, self.forget), strict=True))
        return _Scored(forget, retain, utility, membership, self._membership(model, self.holdout))


class _Curve:
    """Scores the attacked model along the way.

    At step 0 (the scores of the untouched model, shared by every attack and strength),
    every ``eval_every`` steps and at the last: the forget facts (held-out, injected, all)
    and retain exact match and log-prob (the damage the attack does, which calibrates it
    on the oracle); utility at step 0 and the last step only.
    """

    def __init__(self, scorer: _Scorer, initial: _Scored, data: AttackData, eval_every: int,
                 last_step: int) -> None:
        self.scorer, self.initial, self.data = scorer, initial, data
        self.eval_every, self.last_step = eval_every, last_step
        self.points: list[dict[str, float]] = []
        self.heldout_facts: list[dict[str, Any]] = []

    def record(self, step: int, model: PreTrainedModel) -> bool:
        """Score the model when due; never asks the loop to stop."""
        if step % self.eval_every and step not in (0, self.last_step):
            return False
        scored = self.initial if step == 0 else self.scorer(model, step == self.last_step)
        subsets = {"heldout": [scored.forget[row["id"]] for row in self.data.heldout],
                   "injected": [scored.forget[row["id"]] for row in self.data.injected]}
        subsets["forget"] = [*subsets["heldout"], *subsets["injected"]]
        self.heldout_facts.append({
            "step": step, "logprob": {s.id: s.logprob for s in subsets["heldout"]},
            "mcq": {s.id: int(s.mcq) for s in subsets["heldout"] if s.mcq is not None}})
        subsets["retain"] = scored.retain
        if scored.utility is not None:
            subsets["utility"] = scored.utility
        point: dict[str, float] = {"step": step}
        for name, subset in subsets.items():
            if subset:
                point.update({f"{name}_{key}": value
                              for key, value in aggregate(subset).items() if key in SCORES})
        point["heldout_n"] = len(subsets["heldout"])
        if scored.membership is not None and scored.holdout is not None:
            members = [scored.membership[row["id"]] for row in self.data.heldout]
            point.update({f"heldout_mia_{attack}_auc": value
                          for attack, value in aucs(members, scored.holdout).items()})
        self.points.append(point)
        return False


def _shared_forget(attacks: Sequence[AttackData]) -> list[Record]:
    """The forget facts every attack is split from (held-out and injected together)."""
    if not attacks:
        raise ValueError("no attack to run")
    forget = [*attacks[0].heldout, *attacks[0].injected]
    ids = {row["id"] for row in forget}
    for data in attacks[1:]:
        if {row["id"] for row in [*data.heldout, *data.injected]} != ids:
            raise ValueError(f"attack {data.name} is split from other forget facts than "
                             f"{attacks[0].name}")
    return forget


def run_attacks(model_dir: str | Path, attacks: Sequence[AttackData], retain: Sequence[Record],
                utility: Sequence[Record], params: RelearnParams, max_length: int,
                eval_batch_size: int = 64, device: str = "cpu", seed: int = 0,
                holdout: Sequence[Record] | None = None,
                mia_k: float = 0.4) -> dict[str, list[AttackRun]]:
    """Attack the model saved in ``model_dir`` with each of ``attacks`` (split from the same
    forget facts), once per learning rate of ``params.train``; runs per attack name.

    Each run starts from the saved model, fine-tunes on its attack's ``train`` facts
    (answer-token NLL, AdamW, constant lr, batch order fixed by ``seed``; the whole model,
    or LoRA adapters when ``params.train.lora`` is set) and records the curve of the
    held-out forget facts, the injected ones, the whole forget set and retain along the
    way; utility at the start and end; and the rank correlation of the forget set's net
    neuron attribution (:func:`~ssiuu.unlearning.attribution.net_attribution`) before and
    after (LoRA adapters merged into the weights first). With ``holdout`` facts, every
    scored step also holds each membership-inference attack's AUC of telling the held-out
    forget facts from them (``heldout_mia_<attack>_auc``, Min-K% fraction ``mia_k``).
    The untouched model is scored and attributed once, for every run.
    """
    knobs = params.train
    forget = _shared_forget(attacks)
    model, tokenizer = load_saved(model_dir)
    model.to(device)
    forget_examples = encode_rows(tokenizer, forget, max_length)
    before = net_attribution(model, forget_examples, tokenizer.pad_token_id, eval_batch_size)
    scorer = _Scorer(tokenizer, forget, retain, utility, max_length, eval_batch_size, holdout,
                     mia_k)
    initial = scorer(model, with_utility=True)
    runs: dict[str, list[AttackRun]] = {}
    untouched: PreTrainedModel | None = model
    for data in attacks:
        examples = encode_rows(tokenizer, data.train, max_length)
        for lr in knobs.lrs:
            model = untouched if untouched is not None else load_saved(model_dir)[0].to(device)
            untouched = None
            if knobs.lora is not None:
                model = with_lora(model, knobs.lora, seed)
            loader = make_loader(examples, knobs.batch_size, tokenizer.pad_token_id, seed)
            curve = _Curve(scorer, initial, data, knobs.eval_every, knobs.steps)
            start = time.perf_counter()
            curve.record(0, model)
            schedule = TrainParams(steps=knobs.steps, lr=lr, batch_size=knobs.batch_size,
                                   schedule="constant", warmup_ratio=0.0,
                                   weight_decay=knobs.weight_decay, grad_clip=knobs.grad_clip,
                                   log_every=knobs.eval_every)
            result = train(model, {"train": loader}, nll_loss, schedule, seed,
                           should_stop=curve.record, desc=f"{data.name} lr={lr:g}")
            losses = {int(entry["step"]): entry["nll"] for entry in result.history}
            for point in curve.points:
                if int(point["step"]) in losses:
                    point["train_nll"] = losses[int(point["step"])]
            seconds = time.perf_counter() - start
            if knobs.lora is not None:
                model = model.merge_and_unload()
            after = net_attribution(model, forget_examples, tokenizer.pad_token_id,
                                    eval_batch_size)
            runs.setdefault(data.name, []).append(
                AttackRun(lr, curve.points, seconds, rank_correlation(before, after),
                          curve.heldout_facts))
            del model  # before the next run loads its own copy
    return runs


def peak(curve: Sequence[dict[str, float]], key: str) -> float:
    """The highest value of ``key`` along a curve after step 0 (the paper's report)."""
    values = [point[key] for point in curve if point["step"] > 0 and key in point]
    if not values:
        raise ValueError(f"no point after step 0 holds {key!r}")
    return max(values)
