"""Gradient difference (GD): gradient ascent on forget plus ordinary NLL on retain."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from ssiuu.logprobs import answer_nll


def retain_nll(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean answer-token NLL of a retain batch (the term that keeps what must stay)."""
    return answer_nll(model, batch)


def gd_loss(forget_term: torch.Tensor, retain_term: torch.Tensor,
            alpha: float) -> torch.Tensor:
    """``L_GD = −NLL(forget) + α · NLL(retain)`` from the two terms already computed."""
    return forget_term + alpha * retain_term
