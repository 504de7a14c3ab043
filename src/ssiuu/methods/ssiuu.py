"""Ssiuu's attribution-guided regulariser (Yang et al. 2025, Algorithm 1), parameter level.

Every penalised scalar parameter φ_i is a feature with attribution over the forget batch

    A_t[i] = Σ_(x,y) φ_i · ∂P(y|x)/∂φ_i        (P: probability of the whole answer).

The objective adds ``λ · Σ_{i ∈ I−} (A_{t−1}[i] − A_t[i])²`` to the base loss, where
``I−`` holds the parameters whose attribution is negative under the current parameters
(recomputed every step) and the anchor ``A_{t−1}`` is the previous step's attribution,
detached; at the first step there is no anchor and the penalty is 0. The gradient is
first order: ``g = ∂P/∂φ`` is treated as a constant, so on ``I−`` the extra gradient is
``2λ · (A_t − A_{t−1}) · g`` and 0 elsewhere. Cost over the base loss: one backward of
``Σ P`` on the forget batch and one parameter-sized buffer (the anchor).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ssiuu.attribution import linear_sites


def penalised_parameters(model: nn.Module,
                         which: Literal["linear", "all"]) -> list[nn.Parameter]:
    """The parameters the regulariser covers.

    ``linear``: weights and biases of every linear layer inside the transformer blocks
    (the layers the neuron diagnosis looks at; embeddings, norms and ``lm_head`` out).
    ``all``: every trainable parameter.
    """
    if which == "all":
        return [p for p in model.parameters() if p.requires_grad]
    return [p for _, module in linear_sites(model) for p in module.parameters(recurse=False)
            if p.requires_grad]


class AttributionRegulariser:
    """The penalty on the growth of negative attribution, with its first-order gradient.

    :meth:`add_gradient` writes the penalty's gradient into ``.grad`` of the penalised
    parameters; the training loop then accumulates the base loss's backward on top, so
    the step descends ``J = L_base + λ Σ_{I−} (A_{t−1} − A_t)²`` with no second backward.
    """

    def __init__(self, parameters: list[nn.Parameter], lam: float) -> None:
        self.parameters = parameters
        self.lam = lam
        self.anchor: list[torch.Tensor] | None = None

    def add_gradient(self, probability_sum: torch.Tensor) -> dict[str, float]:
        """Attribute, penalise and add ``2λ·Δ·g`` on ``I−`` to each parameter's ``.grad``.

        ``probability_sum`` is ``Σ P(y|x)`` over the forget batch, still attached to the
        graph of the forward pass the base loss uses (its graph is kept for that loss).
        Returns the penalty's value, ``|I−|`` and the norm of the added gradient.
        """
        grads = torch.autograd.grad(probability_sum, self.parameters, retain_graph=True,
                                    allow_unused=True)
        first = self.anchor is None
        if first:
            self.anchor = [torch.empty(0)] * len(self.parameters)
        device = self.parameters[0].device
        penalty = torch.zeros((), dtype=torch.float64, device=device)
        grad_norm_sq = torch.zeros((), dtype=torch.float64, device=device)
        n_negative = 0
        for index, (param, grad) in enumerate(zip(self.parameters, grads, strict=True)):
            if grad is None:
                grad = torch.zeros_like(param)
            attribution = param.detach() * grad
            negative = attribution < 0
            n_negative += int(negative.sum())
            if first:
                grad.zero_()
            else:
                delta = (attribution - self.anchor[index]) * negative
                penalty += delta.double().square().sum()
                grad.mul_(delta).mul_(2.0 * self.lam)
                grad_norm_sq += grad.double().square().sum()
            self.anchor[index] = attribution
            if param.grad is None:
                param.grad = grad
            else:
                param.grad.add_(grad)
        return {"reg": float(self.lam * penalty), "n_neg": float(n_negative),
                "reg_grad_norm": float(grad_norm_sq.sqrt())}
