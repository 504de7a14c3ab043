"""An unlearning objective: a forget term, an optional retain term, an optional regulariser."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.config.catalog import method_spec
from ssiuu.config.params import LossesParams
from ssiuu.data.encoding import Example
from ssiuu.model.logprobs import answer_token_logprobs
from ssiuu.unlearning.methods.advantage import AdvantageTerm
from ssiuu.unlearning.methods.dpo import (
    CHOSEN_REFERENCE_KEY,
    dpo_loss,
    refusal_batch,
    refusal_ids,
    with_dpo_references,
)
from ssiuu.unlearning.methods.ga import ga_loss
from ssiuu.unlearning.methods.gd import KLReference, gd_loss, retain_kl, retain_nll
from ssiuu.unlearning.methods.npo import REFERENCE_KEY, npo_loss, with_reference_logprobs
from ssiuu.unlearning.methods.rmu import RMUSteering, default_trained_layers
from ssiuu.unlearning.methods.ssiuu import (
    AttributionRegulariser,
    gradient_norm,
    penalised_parameters,
)

Batch = dict[str, torch.Tensor]


@dataclass
class Objective:
    """A loss for :func:`ssiuu.model.training.train` over ``forget`` (and ``retain``) batches.

    ``forget``: ``ga`` (mean answer-token log-probability), ``npo`` (with ``beta``),
    ``dpo`` (with ``beta``, preferring the ``refusal`` tokens; ``pad_id`` pads them) or
    ``rmu`` (``steering``: its block, target and frozen retain activations);
    ``alpha``: weight of the retain term, ``None`` for no retain term (GA alone); the term is
    the retain answers' NLL, or with a ``reference`` the KL from the starting model over
    the retain text (:func:`~ssiuu.unlearning.methods.gd.retain_kl`); for RMU the activation
    distance;
    ``floor``: the GA forget term leaves out facts at or below this mean answer-token
    log-probability, ``token_floor`` tokens at or below this log-probability
    (:func:`~ssiuu.unlearning.methods.ga.ga_loss`); ``advantage``: the answer-advantage term
    added to a GA forget term (:mod:`ssiuu.unlearning.methods.advantage`);
    ``regulariser``: Ssiuu's, which adds its gradient before the loop's backward.
    """

    forget: Literal["ga", "npo", "dpo", "rmu"]
    alpha: float | None = None
    beta: float = 0.1
    regulariser: AttributionRegulariser | None = None
    refusal: tuple[int, ...] = ()
    pad_id: int = 0
    steering: RMUSteering | None = None
    reference: KLReference | None = None
    floor: float | None = None
    token_floor: float | None = None
    advantage: AdvantageTerm | None = None

    @property
    def needs_retain(self) -> bool:
        """Whether batches must include a ``retain`` batch."""
        return self.alpha is not None

    @property
    def needs_double_backward(self) -> bool:
        """Whether a step differentiates through a gradient (the exact regulariser)."""
        return self.regulariser is not None and self.regulariser.grad_mode == "exact"

    def prepare(self, model: PreTrainedModel, examples: Sequence[Example], pad_id: int,
                batch_size: int) -> Sequence[Example]:
        """The forget examples as the forget term needs them, before the first step.

        ``npo``: copies carrying the answer log-probability of ``model`` (the reference,
        scored ``batch_size`` at a time); ``dpo``: also the refusal's; ``ga``: ``examples``
        themselves. ``rmu`` leaves only its trained MLP weights trainable.
        """
        if self.steering is not None:
            self.steering.freeze_all_but_trained(model)
        if self.forget == "npo":
            return with_reference_logprobs(model, examples, pad_id, batch_size)
        if self.forget == "dpo":
            return with_dpo_references(model, examples, self.refusal, pad_id, batch_size)
        return examples

    def prepare_retain(self, model: PreTrainedModel, examples: Sequence[Example], pad_id: int,
                       batch_size: int) -> Sequence[Example]:
        """The retain examples as the retain term needs them: for ``rmu``, copies indexing
        the starting model's activations (recorded now); for the KL term, copies indexing
        the starting model's log-probabilities (:class:`~ssiuu.unlearning.methods.gd.KLReference`);
        otherwise ``examples``."""
        if self.steering is not None:
            return self.steering.prepare_retain(model, examples, pad_id, batch_size)
        if self.reference is not None:
            return self.reference.prepare(model, examples, pad_id, batch_size)
        return examples

    def __call__(self, model: PreTrainedModel,
                 batches: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, float]]:
        """The base loss (for the loop's backward) and every term's value for the logs.

        Log names never repeat an evaluation column's (``forget_logprob`` there is the mean
        log-probability per answer token of the whole set; ``batch_forget_answer_logprob``
        here is the summed answer log-probability, averaged over the training batch).
        """
        batch = batches["forget"]
        if self.steering is not None:
            logits, hidden = self.steering.run(model, batch)
        else:
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits
        token_logp, mask = answer_token_logprobs(logits, batch["labels"])
        logp = token_logp.sum(dim=1)
        if self.steering is not None:
            loss = self.steering.forget_loss(hidden, batch["attention_mask"])
        elif self.forget == "ga":
            loss = ga_loss(token_logp, mask, self.floor, self.token_floor)
        elif self.forget == "npo":
            loss = npo_loss(logp, batch[REFERENCE_KEY], self.beta)
        else:
            chosen = refusal_batch(batch, self.refusal, self.pad_id)
            chosen_logits = model(input_ids=chosen["input_ids"],
                                  attention_mask=chosen["attention_mask"]).logits
            chosen_logp = answer_token_logprobs(chosen_logits, chosen["labels"])[0].sum(dim=1)
            loss = dpo_loss(chosen_logp, batch[CHOSEN_REFERENCE_KEY], logp, batch[REFERENCE_KEY],
                            self.beta)
        logs = {"forget_loss": float(loss.detach()),
                "batch_forget_answer_logprob": float(logp.detach().mean())}
        if self.advantage is not None:
            advantage = self.advantage(model)
            logs["advantage_loss"] = float(advantage.detach())
            loss = loss + advantage
        if self.alpha is not None:
            if self.steering is not None:
                retain = self.steering.retain_loss(model, batches["retain"])
            elif self.reference is not None:
                retain = retain_kl(model, self.reference, batches["retain"])
            else:
                retain = retain_nll(model, batches["retain"])
            logs["retain_loss"] = float(retain.detach())
            loss = gd_loss(loss, retain, self.alpha)
        if self.regulariser is not None:
            logs.update(self.regulariser.compute_gradient(logp.exp().sum()))
        return loss, logs

    def after_backward(self, model: PreTrainedModel) -> dict[str, float]:
        """Called by the training loop after the base loss's backward, before clipping: the
        norm of the base loss's gradient over every parameter; with the regulariser, the
        ratio of the regulariser's gradient norm to it (when that norm is not 0), and its
        gradient added to ``.grad``.
        """
        loss_norm = gradient_norm([p.grad for p in model.parameters() if p.grad is not None])
        logs = {"loss_grad_norm": loss_norm}
        if self.regulariser is not None:
            if loss_norm > 0:
                logs["reg_grad_ratio"] = self.regulariser.held_norm / loss_norm
            self.regulariser.add_held_gradient()
        return logs


def build_objective(method: str, losses: LossesParams, model: PreTrainedModel,
                    tokenizer: PreTrainedTokenizerBase | None = None,
                    retain_term: Literal["nll", "kl"] = "nll",
                    floor: float | None = None,
                    token_floor: float | None = None,
                    advantage: AdvantageTerm | None = None) -> Objective:
    """The objective of ``method`` (its :class:`~ssiuu.config.catalog.MethodSpec`) with
    its knobs from ``unlearn.losses.<method>``; the regulariser covers ``model``'s
    penalised parameters; ``tokenizer`` encodes DPO's refusal (required for ``dpo``).

    ``retain_term`` (``unlearn.train.retain_term``) chooses an ``outputs`` retain term:
    ``kl`` takes ``model`` as it is when the retain examples are prepared as the reference.
    ``floor`` (a mean answer-token log-probability), ``token_floor`` (a token
    log-probability) and ``advantage`` apply to a GA forget term only.
    """
    spec = method_spec(method)
    knobs = getattr(losses, method)
    regulariser = None
    if spec.regulariser == "attribution":
        regulariser = AttributionRegulariser(penalised_parameters(model, knobs.penalised),
                                             knobs.lam, knobs.grad)
    terms = {"beta": knobs.beta} if spec.forget in ("npo", "dpo") else {}
    if spec.forget == "dpo":
        if tokenizer is None:
            raise ValueError(f"{method}: DPO needs the tokenizer to encode its refusal")
        terms.update(refusal=refusal_ids(tokenizer, knobs.refusal),
                     pad_id=tokenizer.pad_token_id)
    if spec.forget == "rmu":
        terms["steering"] = RMUSteering(
            model, knobs.layer, knobs.steering,
            knobs.trained_layers or default_trained_layers(knobs.layer), knobs.seed)
    if spec.forget == "ga":
        terms.update(floor=floor, token_floor=token_floor, advantage=advantage)
    if spec.retain == "outputs" and retain_term == "kl":
        terms["reference"] = KLReference()
    return Objective(forget=spec.forget, alpha=knobs.alpha if spec.retain is not None else None,
                     regulariser=regulariser, **terms)
