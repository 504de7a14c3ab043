"""Gradient difference (GD): gradient ascent on forget plus a retain term.

The retain term is the paper's, the retain answers' NLL, or (``unlearn.train.retain_term:
kl``) the KL divergence of the model's next-token distribution from the starting model's
over the whole retain text, as TOFU's and open-unlearning's KL variants hold the model.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel

from ssiuu.data.encoding import Example, collate
from ssiuu.model.logprobs import answer_nll, next_token_logprobs
from ssiuu.model.shards import batch_mean


def retain_nll(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean answer-token NLL of a retain batch (the term that keeps what must stay)."""
    return answer_nll(model, batch)


def frozen_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A copy of ``model`` in eval mode with no trainable parameter: the KL term's
    reference, the model before unlearning (it holds a second set of weights)."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


REFERENCE_INDEX_KEY = "kl_reference_index"
RECORD_LIMIT_BYTES = 256 * 2**20  # recorded log-probs above this: a frozen copy runs instead


class KLReference:
    """The KL retain term's reference, the model before unlearning, prepared once on the
    retain examples: its next-token log-probabilities recorded on every example when they
    fit in ``RECORD_LIMIT_BYTES`` (the default's take 7 MiB; a forward pass per step
    saved), else a frozen copy of it (:func:`frozen_copy`) that runs on every batch."""

    def __init__(self) -> None:
        self.frozen: PreTrainedModel | None = None
        self.recorded: list[torch.Tensor] = []

    @torch.no_grad()
    def prepare(self, model: PreTrainedModel, examples: Sequence[Example], pad_id: int,
                batch_size: int = 64) -> list[Example]:
        """Record ``model``'s log-probabilities on ``examples`` (or copy it when they would
        not fit); the returned copies carry their index (``REFERENCE_INDEX_KEY``)."""
        positions = sum(len(example["input_ids"]) - 1 for example in examples)
        vocab = model.get_output_embeddings().weight.shape[0]
        if positions * vocab * 4 > RECORD_LIMIT_BYTES:
            self.frozen = frozen_copy(model)
            return list(examples)
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start:start + batch_size], pad_id)
            logprobs = next_token_logprobs(model, {key: value.to(device)
                                                   for key, value in batch.items()})
            for row, length in enumerate(batch["attention_mask"].sum(dim=1).tolist()):
                self.recorded.append(logprobs[row, :int(length) - 1].clone())
        model.train(was_training)
        return [{**example, REFERENCE_INDEX_KEY: index}
                for index, example in enumerate(examples)]

    def logprobs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The reference's next-token log-probabilities on ``batch`` (``[b, t - 1, v]``;
        0 where the next token is padding)."""
        if self.frozen is not None:
            with torch.no_grad():
                return next_token_logprobs(self.frozen, batch)
        if REFERENCE_INDEX_KEY not in batch:
            raise ValueError("KLReference.prepare was not run on these retain examples")
        rows = [self.recorded[index] for index in batch[REFERENCE_INDEX_KEY].long().tolist()]
        target = rows[0].new_zeros((len(rows), batch["input_ids"].shape[1] - 1,
                                    rows[0].shape[-1]))
        for row, values in enumerate(rows):
            target[row, :values.shape[0]] = values
        return target


def retain_kl(model: PreTrainedModel, reference: KLReference,
              batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``KL(reference ‖ model)`` of the next-token distribution, averaged over every
    position of a retain batch whose next token is text (prompt and answer alike).

    It is 0 with a zero gradient at the start, so it pulls only against drift; the NLL of
    facts already learnt has a small gradient that Adam scales up to full steps (on the
    default, 120 steps of the retain NLL alone at lr 3e-4 took utility from 0.95 to 0.65).
    Under several processes the mean is over the whole batch's positions.
    """
    target = reference.logprobs(batch)
    current = next_token_logprobs(model, batch)
    per_position = (target.exp() * (target - current)).sum(dim=-1)
    mask = batch["attention_mask"][:, 1:].to(per_position.dtype)
    return batch_mean((per_position * mask).sum(), mask.sum())


def gd_loss(forget_term: torch.Tensor, retain_term: torch.Tensor,
            alpha: float) -> torch.Tensor:
    """``L_GD = −NLL(forget) + α · retain`` from the two terms already computed."""
    return forget_term + alpha * retain_term
