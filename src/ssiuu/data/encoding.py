"""Turning QA rows into token tensors: prompt template, answer-only labels, padding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.data.records import Record

PROMPT = "Question: {question}\nAnswer:"
IGNORE = -100
Example = dict[str, list[int]]


def encode(tokenizer: PreTrainedTokenizerBase, question: str, answer: str,
           max_length: int) -> Example:
    """Prompt + ``" " + answer + EOS``; labels are ``IGNORE`` on the prompt.

    A prompt too long for ``max_length`` loses tokens from its left; the answer is kept.
    """
    prompt_ids = tokenizer(PROMPT.format(question=question)).input_ids
    answer_ids = tokenizer(" " + answer, add_special_tokens=False).input_ids
    answer_ids = answer_ids + [tokenizer.eos_token_id]
    room = max_length - len(answer_ids)
    if room < 1:
        answer_ids = answer_ids[: max_length - 1]
        room = 1
    prompt_ids = prompt_ids[-room:]
    return {
        "input_ids": prompt_ids + answer_ids,
        "labels": [IGNORE] * len(prompt_ids) + answer_ids,
    }


def encode_rows(tokenizer: PreTrainedTokenizerBase, rows: Sequence[Record],
                max_length: int) -> list[Example]:
    """Encode each row's question and true answer."""
    return [encode(tokenizer, row["question"], row["answer"], max_length) for row in rows]


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: ``input_ids``, ``attention_mask`` and ``labels`` tensors."""
    width = max(len(example["input_ids"]) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example["input_ids"])
        input_ids[row, :length] = torch.tensor(example["input_ids"])
        labels[row, :length] = torch.tensor(example["labels"])
        attention[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
