"""Representation misdirection for unlearning (RMU, Li et al. 2024, the WMDP reference).

On forget inputs, the output of one transformer block (``layer``) is pushed towards a
fixed random direction ``u`` (unit norm, drawn from ``seed``) scaled by the steering
coefficient ``c``; on retain inputs it is held at the frozen starting model's output:

``L_RMU = E_forget[ ‖h_θ(x) − c·u‖² ] + α · E_retain[ ‖h_θ(x) − h_frozen(x)‖² ]``

each a mean squared error per hidden unit over the attended tokens. Only the MLP weights
of ``trained_layers`` (by default ``layer`` and the two blocks below it) train, as in the
reference implementation. The frozen model's retain activations are computed once, before
the first step, and looked up per batch by each example's index, so no second model is
held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from transformers import PreTrainedModel

from ssiuu.data.encoding import Example, collate
from ssiuu.model.architecture import ArchitectureError, block_list
from ssiuu.model.shards import batch_mean

RETAIN_INDEX_KEY = "rmu_retain_index"
MLP_NAMES = ("mlp", "feed_forward", "ffn", "fc1", "fc2")  # fc1 / fc2: OPT's block holds them


def default_trained_layers(layer: int) -> list[int]:
    """``layer`` and the two blocks below it (fewer near the input)."""
    return list(range(max(0, layer - 2), layer + 1))


def mlp_parameters(model: nn.Module, layers: Sequence[int]) -> list[nn.Parameter]:
    """The MLP weights of the blocks ``layers``; :class:`ArchitectureError` if a block has none."""
    blocks = block_list(model)
    params: list[nn.Parameter] = []
    for index in layers:
        if not 0 <= index < len(blocks):
            raise ArchitectureError(f"RMU: block {index} does not exist ({len(blocks)} blocks)")
        own = [p for name, p in blocks[index].named_parameters()
               if name.split(".")[0] in MLP_NAMES]
        if not own:
            raise ArchitectureError(f"RMU: block {index} of {type(model).__name__} has no "
                                    f"MLP (a submodule named {' / '.join(MLP_NAMES)})")
        params += own
    return params


def _masked_mse(hidden: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per hidden unit over the attended tokens (``mask`` 1)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    squared = (hidden - target).square() * weights
    return batch_mean(squared.sum(), weights.sum() * hidden.shape[-1])


class RMUSteering:
    """RMU's two terms on one model: the steering target, the frozen retain activations,
    and the block whose output both act on."""

    def __init__(self, model: PreTrainedModel, layer: int, coefficient: float,
                 trained_layers: Sequence[int], seed: int) -> None:
        blocks = block_list(model)
        if not 0 <= layer < len(blocks):
            raise ArchitectureError(f"RMU: unlearn.losses.rmu.layer {layer} is not a block of "
                                    f"the model (0 to {len(blocks) - 1})")
        self.block, self.layer = blocks[layer], layer
        self.trained_layers = list(trained_layers)
        generator = torch.Generator().manual_seed(seed)
        direction = torch.rand(model.config.hidden_size, generator=generator)
        self.control = coefficient * direction / direction.norm()
        self.frozen: list[torch.Tensor] = []

    def freeze_all_but_trained(self, model: nn.Module) -> None:
        """Only the MLP weights of ``trained_layers`` keep ``requires_grad``."""
        trained = {id(p) for p in mlp_parameters(model, self.trained_layers)}
        for param in model.parameters():
            param.requires_grad_(id(param) in trained)

    @contextmanager
    def _captured(self) -> Iterator[list[torch.Tensor]]:
        outputs: list[torch.Tensor] = []

        def keep(_module: nn.Module, _inputs: tuple, output: torch.Tensor | tuple) -> None:
            outputs.append(output[0] if isinstance(output, tuple) else output)

        handle = self.block.register_forward_hook(keep)
        try:
            yield outputs
        finally:
            handle.remove()

    def run(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]
            ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's logits on ``batch`` and the steered block's output (``[b, t, h]``)."""
        with self._captured() as outputs:
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits
        return logits, outputs[0]

    def forget_loss(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The distance of the block's output on forget tokens from ``c·u``."""
        return _masked_mse(hidden, self.control.to(hidden), mask)

    @torch.no_grad()
    def prepare_retain(self, model: PreTrainedModel, examples: Sequence[Example], pad_id: int,
                       batch_size: int = 64) -> list[Example]:
        """Record the starting model's block output on every retain example; copies of the
        examples carry their index (``RETAIN_INDEX_KEY``) to look it up."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        self.frozen = []
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start:start + batch_size], pad_id)
            _, hidden = self.run(model, {key: value.to(device) for key, value in batch.items()})
            for row, length in enumerate(batch["attention_mask"].sum(dim=1).tolist()):
                self.frozen.append(hidden[row, :int(length)].detach().clone())
        model.train(was_training)
        return [{**example, RETAIN_INDEX_KEY: index} for index, example in enumerate(examples)]

    def retain_loss(self, model: PreTrainedModel,
                    batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The distance of the block's output on retain tokens from the starting model's."""
        _, hidden = self.run(model, batch)
        target = torch.zeros_like(hidden)
        for row, index in enumerate(batch[RETAIN_INDEX_KEY].long().tolist()):
            frozen = self.frozen[index]
            target[row, :frozen.shape[0]] = frozen.to(hidden)
        return _masked_mse(hidden, target, batch["attention_mask"])
