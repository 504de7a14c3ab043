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

    With ``floor`` (a mean log-probability per answer token; our extension,
    ``unlearn.train.forget_floor``) the term is the mean over the batch's facts of each
    fact's mean answer-token log-probability, and a fact at or below the floor adds 0: it
    is pushed down to the floor, not past it. Each fact weighs the same, as the floor
    judges facts: weighted by tokens, the long answers (phone numbers, years: digits)
    were pushed hardest, and on the default the utility sums drifted with them (utility
    0.925 against 0.95 per fact, seeds 1 and 2 of GD).
    """
    if floor is not None:
        per_fact = token_logp.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        kept = per_fact * (per_fact.detach() > floor)
        return batch_mean(kept.sum(), torch.tensor(float(kept.numel()), device=kept.device))
    return batch_mean(token_logp.sum(), mask.sum())
