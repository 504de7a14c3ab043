"""Where a model's neurons are: its list of transformer blocks and the linear layers in them.

Neuron attribution, Ssiuu's regulariser and RMU all act on these; a model whose blocks
cannot be found is refused when it is loaded (:func:`check_architecture`), not at the first
attribution.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from transformers.pytorch_utils import Conv1D

from ssiuu.config.errors import SsiuuError


class ArchitectureError(SsiuuError):
    """A model's transformer blocks or their linear layers cannot be found."""


# The families whose tiny random models go through every stage's code in tests/test_families.py
SUPPORTED_FAMILIES = ("Llama", "Mistral", "Qwen2", "Gemma", "Phi-3", "GPT-2", "GPT-NeoX", "OPT")


@dataclass(frozen=True)
class LinearSite:
    """One hooked linear layer: its block index, its name inside the block, its width."""

    layer: int
    module: str
    width: int
    path: str


def _layer_count(model: nn.Module) -> int:
    """The number of transformer blocks the model's (text) config declares."""
    config = model.config
    if hasattr(config, "get_text_config"):  # a multimodal config keeps it in its text part
        config = config.get_text_config()
    count = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    if count is None:
        raise ArchitectureError(f"{type(model).__name__}: its config gives no layer count "
                                "(num_hidden_layers or n_layer), so its transformer blocks "
                                "cannot be found")
    return count


def block_list(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks: the ``ModuleList`` with one entry per hidden layer."""
    n_layers = _layer_count(model)
    candidates = {name: module for name, module in model.named_modules()
                  if isinstance(module, nn.ModuleList) and len(module) == n_layers
                  and any(isinstance(m, nn.Linear | Conv1D) for m in module.modules())}
    if not candidates:
        raise ArchitectureError(
            f"{type(model).__name__}: no list of {n_layers} transformer blocks found; "
            "neuron attribution needs a model whose blocks sit in one nn.ModuleList")
    if len(candidates) > 1:
        raise ArchitectureError(
            f"{type(model).__name__}: several lists of {n_layers} blocks with linear layers "
            f"({', '.join(candidates)}); cannot tell which holds the transformer blocks")
    return next(iter(candidates.values()))


def linear_sites(model: nn.Module) -> list[tuple[LinearSite, nn.Module]]:
    """Every linear layer (``nn.Linear`` or GPT-2's ``Conv1D``) inside every block, in order."""
    sites = []
    for layer, block in enumerate(block_list(model)):
        for name, module in block.named_modules():
            if isinstance(module, nn.Linear):
                width = module.out_features
            elif isinstance(module, Conv1D):
                width = module.nf
            else:
                continue
            sites.append((LinearSite(layer, name, width, f"{layer}.{name}"), module))
    if not sites:
        raise ArchitectureError(
            f"{type(model).__name__}: its transformer blocks hold no nn.Linear or Conv1D "
            "layer, so there are no neurons to attribute")
    return sites


def check_architecture(model: nn.Module) -> None:
    """Raise :class:`ArchitectureError`, naming the supported families, when attribution
    cannot read ``model`` (no list of transformer blocks, or no linear layer in them)."""
    try:
        linear_sites(model)
    except ArchitectureError as exc:
        raise ArchitectureError(
            f"{exc}. Supported: causal LMs whose transformer blocks sit in one nn.ModuleList "
            f"of blocks with nn.Linear or Conv1D layers; tested: "
            f"{', '.join(SUPPORTED_FAMILIES)}") from None
