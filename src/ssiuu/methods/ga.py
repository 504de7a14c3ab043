"""Gradient ascent (GA): maximise the forget answers' NLL, i.e. minimise their log-probability."""

from __future__ import annotations

import torch

from ssiuu.shards import batch_mean


def ga_loss(token_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``L_GA = −NLL(forget)``: the mean log-probability of the forget answer tokens.

    ``token_logp`` and ``mask`` come from :func:`ssiuu.logprobs.answer_token_logprobs`.
    Descending this loss lowers the probability of every forget answer. Under several
    processes the mean is over the whole batch's answer tokens.
    """
    return batch_mean(token_logp.sum(), mask.sum())
