"""Gradient ascent (GA): maximise the forget answers' NLL, i.e. minimise their log-probability."""

from __future__ import annotations

import torch

from ssiuu.model.shards import batch_mean


def ga_loss(token_logp: torch.Tensor, mask: torch.Tensor, floor: float | None = None,
            token_floor: float | None = None) -> torch.Tensor:
    """``L_GA = −NLL(forget)``: the mean log-probability of the forget answer tokens.

    ``token_logp`` and ``mask`` come from :func:`ssiuu.model.logprobs.answer_token_logprobs`.
    Descending this loss lowers the probability of every forget answer. Under several
    processes the mean is over the whole batch's answer tokens.

    With ``floor`` (a mean log-probability per answer token; our extension,
    ``unlearn.train.forget_floor``) the term is the mean over the batch's facts of each
    fact's mean answer-token log-probability, and a fact at or below the floor adds 0: it
    is pushed down to the floor, not past it. Each fact weighs the same, as the floor
    judges facts: weighted by tokens, the long answers (phone numbers, years: digits)
    were pushed hardest, and on the default the utility sums drifted with them (utility
    0.925 against 0.95 per fact, seeds 1 and 2 of GD).

    With ``token_floor`` as well (a token log-probability; ``unlearn.train.
    forget_token_floor``) a token at or below it adds 0 to its fact's term (the fact's
    mean still divides by all its tokens): gradient ascent pushes hardest on a fact's
    least likely tokens (the gradient of a token's log-probability by its logit is
    ``1 - p``), so without it a fact reaches the floor with a few tokens far below
    anything a never-seen fact shows, which Min-K% membership inference reads.
    """
    if floor is not None or token_floor is not None:
        count = mask.sum(dim=1).clamp(min=1)
        per_fact = token_logp.sum(dim=1) / count
        pushed = token_logp if token_floor is None else (
            token_logp * ((token_logp.detach() > token_floor) & mask))
        kept = pushed.sum(dim=1) / count
        if floor is not None:
            kept = kept * (per_fact.detach() > floor)
        return batch_mean(kept.sum(), torch.tensor(float(kept.numel()), device=kept.device))
    return batch_mean(token_logp.sum(), mask.sum())
