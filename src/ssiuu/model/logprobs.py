"""Answer-token log-probabilities from a causal LM's logits (shared by scoring and losses)."""

from __future__ import annotations

import torch

from ssiuu.data.encoding import IGNORE
from ssiuu.model.shards import batch_count, process_count


def answer_token_logprobs(logits: torch.Tensor,
                          labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each next label token and the mask of answer positions.

    ``logits`` is ``[batch, length, vocab]`` and ``labels`` ``[batch, length]`` with
    ``IGNORE`` on the prompt and padding; half-precision logits are scored in float32.
    Position ``k`` of the result scores label
    ``k + 1`` (the token that position ``k`` predicts); both results are ``[batch, length-1]``.
    """
    targets = labels[:, 1:]
    mask = targets != IGNORE
    logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))
    token_logp = torch.log_softmax(logits, dim=-1).gather(
        -1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return token_logp * mask, mask


def next_token_logprobs(model: torch.nn.Module,
                        batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Log-probabilities over the vocabulary of each next token of ``batch`` (every position
    but the last; ``[batch, length-1, vocab]``, float32)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.log_softmax(logits[:, :-1].float(), dim=-1)


def sequence_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``log P(answer | prompt)`` of each example of ``batch``: the sum over answer tokens."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    token_logp, _ = answer_token_logprobs(logits, batch["labels"])
    return token_logp.sum(dim=1)


def answer_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean NLL of the answer tokens of ``batch`` (the model's own causal-LM loss); under
    several processes, this shard's part of the whole batch's mean
    (:mod:`ssiuu.model.shards`)."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "labels": batch["labels"]}
    if process_count() == 1:
        return model(**inputs).loss
    tokens = batch_count((batch["labels"][:, 1:] != IGNORE).sum())
    return model(**inputs, num_items_in_batch=tokens).loss * process_count()
