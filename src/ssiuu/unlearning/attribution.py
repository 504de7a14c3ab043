"""Neuron attribution and the erase-vs-hide diagnosis (the paper's Eq. 1 and D+ / D−).

A *neuron* is one scalar output of a linear layer inside a transformer block (attention
Q/K/V/O and MLP gate/up/down, or the architecture's equivalents; ``lm_head`` and the
embeddings are not in a block). Its attribution at token position ``k`` is

    A[i, k] = h[i, k] · ∂P(y|x)/∂h[i, k],   with   ∂P/∂h = P · ∂log P/∂h,

where ``P`` is the probability of the whole answer (the product over its tokens). One
backward pass of ``log P`` gives every neuron's gradient; multiplying by ``P`` and the
activation gives ``A``. Per example only answer positions count (positions that predict
an answer token) and ``A`` is summarised by its max and its min over them.

Comparing the base model θ with an unlearned θ' over the forget set:

- ``D+[i] = mean_n( max_k A_θ − max_k max(A_θ', 0) )`` clipped at 0: lost positive
  influence, the knowledge *erased*;
- ``D−[i] = mean_n( min_k A_θ − min_k A_θ' )`` clipped at 0: grown negative influence,
  the knowledge *hidden* behind spurious unlearning neurons.

Under a relearning attack, :func:`net_attribution` (per neuron, ``mean_n(max_k A +
min_k A)``) before and after the attack, compared by Spearman's ρ
(:func:`rank_correlation`), says whether the forget set's attribution moved: the paper's
attribution-stability view of whether knowledge came back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from ssiuu.data.encoding import Example, collate
from ssiuu.model.architecture import ArchitectureError, LinearSite, linear_sites
from ssiuu.model.logprobs import answer_token_logprobs

TOP_M = 100


@dataclass
class NeuronAttribution:
    """Per forget example and per neuron: the max and the min of ``A`` over answer positions.

    ``maxima`` and ``minima`` are ``[n_examples, n_neurons]``; neurons are laid out site by
    site in the order of ``sites``.
    """

    maxima: torch.Tensor
    minima: torch.Tensor
    sites: list[LinearSite]

    def save(self, path: str | Path) -> None:
        """Write to a ``torch.save`` file."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"maxima": self.maxima, "minima": self.minima,
                    "sites": [vars(site) for site in self.sites]}, path)

    @classmethod
    def load(cls, path: str | Path) -> NeuronAttribution:
        """Read a file written by :meth:`save`."""
        raw = torch.load(path, weights_only=True)
        return cls(raw["maxima"], raw["minima"], [LinearSite(**site) for site in raw["sites"]])


def attribute_batch(model: PreTrainedModel, batch: dict[str, torch.Tensor],
                    sites: Sequence[tuple[LinearSite, nn.Module]],
                    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """``A = h · P · ∂log P/∂h`` for every hooked output of one batch.

    Returns one ``[batch, length, width]`` tensor per site, the answer probabilities ``P``
    (``[batch]``) and the mask of answer-predicting positions (``[batch, length]``).
    """
    outputs: list[torch.Tensor | None] = [None] * len(sites)

    def keeper(index: int, path: str):
        def keep(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if outputs[index] is not None:
                raise ArchitectureError(f"{path} runs more than once per forward pass; its "
                                        "neurons cannot be attributed one-to-one")
            if not output.requires_grad:  # frozen weights: track from here on
                output.requires_grad_()
            outputs[index] = output
        return keep

    handles = [module.register_forward_hook(keeper(index, site.path))
               for index, (site, module) in enumerate(sites)]
    try:
        logits = model(input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits
    finally:
        for handle in handles:
            handle.remove()
    missing = [site.path for (site, _), out in zip(sites, outputs, strict=True) if out is None]
    if missing:
        raise ArchitectureError(f"linear layers not run by the forward pass: {missing}")
    token_logp, mask = answer_token_logprobs(logits, batch["labels"])
    logp = token_logp.sum(dim=1)
    grads = torch.autograd.grad(logp.sum(), outputs)
    probability = logp.detach().exp()
    scale = probability[:, None, None]
    shape = (*batch["input_ids"].shape, -1)  # some models (OPT) flatten to [batch·length, w]
    attributions = [(h.detach().reshape(shape) * g.reshape(shape) * scale).float()
                    for h, g in zip(outputs, grads, strict=True)]
    positions = torch.zeros_like(batch["labels"], dtype=torch.bool)
    positions[:, :-1] = mask
    return attributions, probability, positions


def neuron_attribution(model: PreTrainedModel, examples: Sequence[Example], pad_id: int,
                       batch_size: int = 32) -> NeuronAttribution:
    """Max and min over answer positions of every neuron's ``A``, per example."""
    sites = linear_sites(model)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    maxima, minima = [], []
    for start in range(0, len(examples), batch_size):
        batch = {key: value.to(device) for key, value in
                 collate(examples[start:start + batch_size], pad_id).items()}
        attributions, _, positions = attribute_batch(model, batch, sites)
        keep = positions[:, :, None]
        maxima.append(torch.cat([a.masked_fill(~keep, -torch.inf).amax(dim=1)
                                 for a in attributions], dim=1).cpu())
        minima.append(torch.cat([a.masked_fill(~keep, torch.inf).amin(dim=1)
                                 for a in attributions], dim=1).cpu())
    model.train(was_training)
    return NeuronAttribution(torch.cat(maxima), torch.cat(minima), [s for s, _ in sites])


@dataclass
class Shift:
    """D+ (erasing) and D− (hiding) per neuron of one unlearned model against its base."""

    d_plus: torch.Tensor
    d_minus: torch.Tensor
    sites: list[LinearSite]

    def curves(self, top: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Cumulative sums of the top-m neurons of D+ and of D− (each sorted separately)."""
        top = top or len(self.d_plus)
        return (self.d_plus.sort(descending=True).values[:top].cumsum(0),
                self.d_minus.sort(descending=True).values[:top].cumsum(0))

    def top_sums(self, m: int = TOP_M) -> tuple[float, float]:
        """Sum of the m largest D+ and the m largest D−."""
        d_plus, d_minus = self.curves(m)
        return float(d_plus[-1]), float(d_minus[-1])

    def by_site(self) -> dict[tuple[int, str], tuple[float, float]]:
        """Sum of D+ and of D− per (layer, module): the heat map's cells."""
        cells, start = {}, 0
        for site in self.sites:
            stop = start + site.width
            cells[(site.layer, site.module)] = (float(self.d_plus[start:stop].sum()),
                                                float(self.d_minus[start:stop].sum()))
            start = stop
        return cells


def most_hiding_site(by_site: dict[tuple[int, str], tuple[float, float]]) -> str:
    """The (layer, module) whose D− most exceeds its D+, as ``"layer L module"``.

    ``by_site`` maps each site to its ``(d_plus, d_minus)`` sums (:meth:`Shift.by_site`).
    ``"none"`` when no site's D− exceeds its D+ (in particular when D− is 0 everywhere):
    no site hides.
    """
    excess = {site: d_minus - d_plus for site, (d_plus, d_minus) in by_site.items()}
    best = max(excess, key=excess.__getitem__)
    return f"layer {best[0]} {best[1]}" if excess[best] > 0 else "none"


def attribution_shift(base: NeuronAttribution, unlearned: NeuronAttribution) -> Shift:
    """The paper's D+ and D− of ``unlearned`` against ``base`` over the same forget examples."""
    if base.maxima.shape != unlearned.maxima.shape or base.sites != unlearned.sites:
        raise ArchitectureError(
            f"attributions differ in shape ({tuple(base.maxima.shape)} vs "
            f"{tuple(unlearned.maxima.shape)}): compare models of one architecture "
            "on the same forget set")
    d_plus = (base.maxima - unlearned.maxima.clamp(min=0)).mean(dim=0).clamp(min=0)
    d_minus = (base.minima - unlearned.minima).mean(dim=0).clamp(min=0)
    return Shift(d_plus, d_minus, base.sites)


def net_attribution(model: PreTrainedModel, examples: Sequence[Example], pad_id: int,
                    batch_size: int = 32) -> torch.Tensor:
    """Each neuron's net influence on the examples' answers: ``mean_n(max_k A + min_k A)``
    (the sum of its strongest positive and strongest negative attribution per example,
    averaged over the examples), from :func:`neuron_attribution`."""
    attribution = neuron_attribution(model, examples, pad_id, batch_size)
    return (attribution.maxima + attribution.minima).mean(dim=0)


def rank_correlation(before: torch.Tensor, after: torch.Tensor) -> float:
    """Spearman's ρ between two attributions of the same neurons (average ranks for ties)."""
    from scipy.stats import spearmanr

    if before.shape != after.shape:
        raise ArchitectureError(f"attributions differ in shape ({tuple(before.shape)} vs "
                                f"{tuple(after.shape)}): not the same neurons")
    return float(spearmanr(before.double().numpy(), after.double().numpy()).statistic)
