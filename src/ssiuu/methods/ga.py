"""Gradient ascent (GA): maximise the forget answers' NLL, i.e. minimise their log-probability."""

from __future__ import annotations

import torch


def ga_loss(token_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``L_GA = −NLL(forget)``: the mean log-probability of the forget answer tokens.

    ``token_logp`` and ``mask`` come from :func:`ssiuu.logprobs.answer_token_logprobs`.
    Descending this loss lowers the probability of every forget answer.
    """
    return token_logp.sum() / mask.sum()
