"""Gradient ascent (GA): maximise the forget answers' NLL, i.e. minimise their log-probability."""

from __future__ import annotations

import torch

from ssiuu.shards import batch_mean


def ga_loss(token_logp: torch.Tensor, mask: torch.Tensor,
            floor: float | None = None) -> torch.Tensor:
    """``L_GA = −NLL(forget)``: the mean log-probability of the forget answer tokens.

    ``token_logp`` and ``mask`` come from :func:`ssiuu.logprobs.answer_token_logprobs`.
    Descending this loss lowers the probability of every forget answer. Under several
    processes the mean is over the whole batch's answer tokens.

    With ``floor`` (a mean log-probability per answer token), a fact whose answer is at or
    below it adds nothing: it is pushed down to the floor, not past it (our extension;
    ``unlearn.train.forget_floor``). The mean stays over every answer token of the batch,
    so the facts still above the floor get the gradient they would get without it.
    """
    if floor is not None:
        per_fact = token_logp.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        token_logp = token_logp * (per_fact.detach() > floor).unsqueeze(1)
    return batch_mean(token_logp.sum(), mask.sum())
