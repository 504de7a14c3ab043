"""Turning QA rows into token tensors: prompt template, answer-only labels, padding."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.config.errors import DataError
from ssiuu.data.records import Record

PROMPT = "Question: {question}\nAnswer:"
IGNORE = -100
Example = dict[str, list[int] | float]


def encode(tokenizer: PreTrainedTokenizerBase, question: str, answer: str,
           max_length: int, row_id: str = "?") -> Example:
    """Prompt + ``" " + answer + EOS``; labels are ``IGNORE`` on the prompt.

    An example longer than ``max_length`` tokens is an error (naming the row id), never a
    silent truncation: a cut answer would score and train as if it were whole.
    """
    prompt_ids, answer_ids = map(list, _token_ids(tokenizer, question, answer))
    length = len(prompt_ids) + len(answer_ids)
    if length > max_length:
        raise DataError(f"row {row_id}: {length} tokens exceed model.max_length={max_length}; "
                        "raise model.max_length in params.yaml")
    return {
        "input_ids": prompt_ids + answer_ids,
        "labels": [IGNORE] * len(prompt_ids) + answer_ids,
    }


@lru_cache(maxsize=1 << 16)
def _token_ids(tokenizer: PreTrainedTokenizerBase, question: str,
               answer: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The prompt's token ids and the answer's (EOS appended), remembered per tokenizer
    object: unlearning's checks and the attacks' evaluations score the same facts at every
    check, and tokenizing them again took 2-3 s of a 30-40 s run on the default."""
    prompt_ids = tokenizer(PROMPT.format(question=question)).input_ids
    answer_ids = tokenizer(" " + answer, add_special_tokens=False).input_ids
    return tuple(prompt_ids), (*answer_ids, tokenizer.eos_token_id)


def encode_rows(tokenizer: PreTrainedTokenizerBase, rows: Sequence[Record],
                max_length: int) -> list[Example]:
    """Encode each row's question and true answer."""
    return [encode(tokenizer, row["question"], row["answer"], max_length, row["id"])
            for row in rows]


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: ``input_ids``, ``attention_mask`` and ``labels`` tensors.

    Any other key of the examples holds one number per example (e.g. a reference
    log-probability) and is stacked into a float tensor.
    """
    width = max(len(example["input_ids"]) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example["input_ids"])
        input_ids[row, :length] = torch.tensor(example["input_ids"])
        labels[row, :length] = torch.tensor(example["labels"])
        attention[row, :length] = 1
    extras = {key: torch.tensor([float(example[key]) for example in examples])
              for key in examples[0] if key not in ("input_ids", "labels")}
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, **extras}
