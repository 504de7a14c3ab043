"""Ssiuu's attribution-guided regulariser (Yang et al. 2025, Algorithm 1), parameter level.

Every penalised scalar parameter φ_i is a feature with attribution over the forget batch

    A_t[i] = Σ_(x,y) φ_i · g_i,   g = ∂P(y|x)/∂φ       (P: probability of the whole answer).

The objective adds ``R = λ · Σ_{i ∈ I−} (A_{t−1}[i] − A_t[i])²`` to the base loss, where
``I−`` holds the parameters whose attribution is negative under the current parameters
(recomputed every step) and the anchor ``A_{t−1}`` is the previous step's attribution,
detached; at the first step there is no anchor and the penalty is 0. Two gradients of R:

``first_order`` (the paper's App. B): ``g`` is held constant, so on ``I−`` the extra
gradient is ``2λ · Δ · g`` (Δ = A_t − A_{t−1}) and 0 elsewhere. Cost over the base loss:
one backward of ``Σ P`` and one parameter-sized buffer (the anchor).

``exact``: ``g`` depends on φ too, so ``∂R/∂φ_j = 2λ (Δ_j g_j + Σ_{i ∈ I−} Δ_i φ_i H_ij)``
with ``H`` the Hessian of ``Σ P``; autograd computes it by differentiating through the
attribution (the first backward with ``create_graph``, then a second one: a
Hessian–vector product). It needs an attention kernel with a double backward.

The gradient is computed before the base loss's backward (it shares that loss's forward
pass) and held; :meth:`AttributionRegulariser.add_held_gradient` adds it to ``.grad``
after that backward, once the base loss's own gradient has been measured.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ssiuu.model.architecture import linear_sites


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


GradMode = Literal["first_order", "exact"]


def _summed_over_processes(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """``tensors`` summed in place over the processes of a distributed run (as they are
    when there is one process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for tensor in tensors:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensors


def gradient_norm(grads: list[torch.Tensor]) -> float:
    """The Euclidean norm of several tensors taken together (each tensor's norm in its own
    dtype, their combination in float64: a float64 copy of every gradient would cost more
    than the step's regulariser on a large model)."""
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(grad).double() for grad in grads])))


class AttributionRegulariser:
    """The penalty on the growth of negative attribution, and its gradient (``grad_mode``).

    Each step: :meth:`compute_gradient` on the forget batch's ``Σ P`` (before the base
    loss's backward), then :meth:`add_held_gradient` (after it), so the step descends
    ``J = L_base + λ Σ_{I−} (A_{t−1} − A_t)²``.
    """

    def __init__(self, parameters: list[nn.Parameter], lam: float,
                 grad_mode: GradMode = "first_order") -> None:
        self.parameters = parameters
        self.lam = lam
        self.grad_mode = grad_mode
        self.anchor: list[torch.Tensor] | None = None
        self.held: list[torch.Tensor] | None = None
        self.held_norm = 0.0
        # Buffers reused step after step (no parameter-sized allocation per step): the
        # next attribution, and which of its entries are negative.
        self._spare: list[torch.Tensor] | None = None
        self._negative: list[torch.Tensor] | None = None

    def compute_gradient(self, probability_sum: torch.Tensor) -> dict[str, float]:
        """Attribute, penalise, and hold the penalty's gradient for :meth:`add_held_gradient`.

        ``probability_sum`` is ``Σ P(y|x)`` over the forget batch, still attached to the
        graph of the forward pass the base loss uses (its graph is kept for that loss).
        Under several processes each holds a shard of the forget batch: ``g`` (and, for
        the exact gradient, the Hessian–vector product) is summed over the processes
        before use, so every process attributes, selects ``I−`` and descends exactly as
        one process would over the whole batch.
        Returns the penalty's value, ``|I−|`` and the norm of the penalty's gradient.
        """
        exact = self.grad_mode == "exact"
        local = torch.autograd.grad(probability_sum, self.parameters, retain_graph=True,
                                    create_graph=exact, materialize_grads=True)
        grads = _summed_over_processes([grad.detach().clone() if exact else grad
                                        for grad in local])
        if self._spare is None:
            self._spare = [torch.empty_like(param) for param in self.parameters]
            self._negative = [torch.empty_like(param, dtype=torch.bool)
                              for param in self.parameters]
        attributions = [torch.mul(param.detach(), grad, out=buffer) for param, grad, buffer
                        in zip(self.parameters, grads, self._spare, strict=True)]
        negatives = [torch.lt(attribution, 0, out=buffer)
                     for attribution, buffer in zip(attributions, self._negative, strict=True)]
        n_negative = sum(int(negative.sum()) for negative in negatives)
        if self.anchor is None:
            penalty = 0.0
            self.held = [torch.zeros_like(param) for param in self.parameters]
            self._spare = None
        else:
            # −Δ = (A_{t−1} − A_t) on I−, written over the anchor (the next spare buffer).
            deltas = [anchor.sub_(attribution).mul_(negative) for attribution, anchor,
                      negative in zip(attributions, self.anchor, negatives, strict=True)]
            penalty = self.lam * sum(float(torch.dot(delta.flatten(), delta.flatten()))
                                     for delta in deltas)
            # dR/dφ_j = 2λ Δ_j g_j  (+ 2λ Σ_i Δ_i φ_i H_ij: the exact gradient's HVP)
            weights = ([-2.0 * self.lam * delta * param.detach()
                        for delta, param in zip(deltas, self.parameters, strict=True)]
                       if exact else [])
            self.held = [grad.mul_(delta).mul_(-2.0 * self.lam)
                         for delta, grad in zip(deltas, grads, strict=True)]
            if exact:
                attached = [(grad, weight) for grad, weight in zip(local, weights, strict=True)
                            if grad.requires_grad]  # a parameter g does not depend on: no HVP
                hvp = torch.autograd.grad([grad for grad, _ in attached], self.parameters,
                                          grad_outputs=[weight for _, weight in attached],
                                          retain_graph=True, materialize_grads=True)
                for held, term in zip(self.held, _summed_over_processes(list(hvp)),
                                      strict=True):
                    held.add_(term)
            self._spare = deltas
        self.anchor = attributions
        self.held_norm = gradient_norm(self.held)
        return {"reg": penalty, "n_neg": float(n_negative), "reg_grad_norm": self.held_norm}

    def add_held_gradient(self) -> None:
        """Add the gradient held by :meth:`compute_gradient` to each parameter's ``.grad``
        (the same on every process: it is the whole forget batch's)."""
        if self.held is None:
            raise RuntimeError("add_held_gradient before compute_gradient")
        for param, held in zip(self.parameters, self.held, strict=True):
            if param.grad is None:
                param.grad = held
            else:
                param.grad.add_(held)
        self.held = None
