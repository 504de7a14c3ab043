"""Training a causal LM on QA splits: the base model (all facts) and the oracle (no forget)."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.config.params import SPLITS, ModelParams, ModelTrainingParams
from ssiuu.config.sources import SCRATCH
from ssiuu.data.encoding import PROMPT, encode_rows
from ssiuu.data.records import Record, read_jsonl
from ssiuu.model.loading import build_scratch_model, load_model
from ssiuu.model.training import TrainResult, make_loader, nll_loss, train


def read_splits(data_dir: str | Path, names: tuple[str, ...] = SPLITS) -> dict[str, list[Record]]:
    """Read prepared splits by name from ``data_dir``."""
    return {name: read_jsonl(Path(data_dir) / f"{name}.jsonl") for name in names}


def corpus(splits: dict[str, list[Record]]) -> list[str]:
    """Every prompt, answer and distractor of ``splits``, one text per row.

    The scratch tokenizer is trained on the corpus of the non-forget splits."""
    return [PROMPT.format(question=row["question"]) + " " + " ".join(
                [row["answer"], *(row.get("distractors") or [])])
            for rows in splits.values() for row in rows]


def initial_model(model_params: ModelParams, tokenizer: PreTrainedTokenizerBase,
                  seed: int, pretrained_dir: str | Path | None = None) -> PreTrainedModel:
    """A fresh scratch model in ``model.dtype``, or the pretrained model: from
    ``pretrained_dir`` (the `pretrained` stage's conversion) when given, else from
    ``model.name`` itself."""
    if model_params.name == SCRATCH:
        return build_scratch_model(model_params, tokenizer, seed)
    if pretrained_dir is not None:
        return load_model(str(pretrained_dir), None, model_params.dtype)
    return load_model(model_params.name, model_params.gguf_file, model_params.dtype)


def train_on_splits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    splits: dict[str, list[Record]], recipe: ModelTrainingParams,
                    max_length: int, desc: str, seed: int = 0) -> TrainResult:
    """Fine-tune ``model`` on the union of ``recipe.splits`` (answer-token NLL); ``seed``
    fixes the batch order."""
    rows = [row for name in recipe.splits for row in splits[name]]
    examples = encode_rows(tokenizer, rows, max_length)
    loader = make_loader(examples, recipe.train.batch_size, tokenizer.pad_token_id, seed)
    return train(model, {"train": loader}, nll_loss, recipe.train, seed, desc=desc)


def load_tokenizer_dir(tokenizer_dir: str | Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer written by the tokenizer stage."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(tokenizer_dir))

