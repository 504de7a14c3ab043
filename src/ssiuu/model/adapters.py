"""LoRA adapters through ``peft``: fine-tune a large model with its own weights frozen."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from ssiuu.config.errors import ParamsError
from ssiuu.config.params import LoraParams


def with_lora(model: PreTrainedModel, params: LoraParams, seed: int,
              field: str = "relearn.train.lora") -> PreTrainedModel:
    """Wrap ``model`` with fresh LoRA adapters (initialised from ``seed``); only the
    adapters require gradients. A ``target_modules`` entry the model does not have is a
    :class:`ParamsError` naming ``field``."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout,
                        target_modules=params.target_modules, task_type="CAUSAL_LM")
    torch.manual_seed(seed)
    try:
        return get_peft_model(model, config)
    except ValueError as error:
        raise ParamsError(f"params.yaml: {field}.target_modules: {error}") from error
