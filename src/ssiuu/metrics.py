"""Scoring a model on QA facts: greedy exact match, 3-option multiple choice, log-probability.

All three come from teacher-forced forward passes:

- ``acc``: greedy-answer exact match. Greedy decoding yields exactly the gold answer
  followed by EOS if and only if, at every answer position, the argmax token under the
  gold prefix is the gold token; so one forward pass decides it (no ``generate`` loop).
- ``mcq``: the true answer against its two distractors, each scored by the summed
  log-probability of its tokens and EOS; correct when the true one scores strictly highest.
  Chance is 1/3. This is the paper's score.
- ``logprob``: mean log-probability per answer token (nats), averaged over facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.data.encoding import Example, collate, encode, encode_rows
from ssiuu.data.records import Record
from ssiuu.logprobs import answer_token_logprobs


@dataclass(frozen=True)
class SequenceScore:
    """Per-sequence answer statistics under teacher forcing."""

    logprob_sum: float
    n_tokens: int
    greedy_match: bool


@torch.no_grad()
def score_examples(model: PreTrainedModel, examples: Sequence[Example], pad_id: int,
                   batch_size: int = 64) -> list[SequenceScore]:
    """Sum of answer-token log-probs, token count and greedy match for each example."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    scores: list[SequenceScore] = []
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start:start + batch_size], pad_id)
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits.float()
        labels = batch["labels"].to(device)
        token_logp, mask = answer_token_logprobs(logits, labels)
        hits = (logits[:, :-1].argmax(dim=-1) == labels[:, 1:]) | ~mask
        sums = token_logp.sum(dim=1)
        for row in range(labels.shape[0]):
            scores.append(SequenceScore(float(sums[row]), int(mask[row].sum()),
                                        bool(hits[row].all())))
    model.train(was_training)
    return scores


def evaluate_rows(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                  rows: Sequence[Record], max_length: int, batch_size: int = 64,
                  multiple_choice: bool = True) -> dict[str, float]:
    """``acc``, ``mcq``, ``logprob`` and ``n`` of a model on a list of facts.

    ``multiple_choice=False`` skips ``mcq`` (and the two extra passes it costs).
    """
    if not rows:
        raise ValueError("cannot evaluate an empty split")
    pad_id = tokenizer.pad_token_id
    gold = encode_rows(tokenizer, rows, max_length)
    gold_scores = score_examples(model, gold, pad_id, batch_size)
    result = {
        "acc": sum(s.greedy_match for s in gold_scores) / len(rows),
        "logprob": sum(s.logprob_sum / s.n_tokens for s in gold_scores) / len(rows),
        "n": len(rows),
    }
    with_options = [(i, r) for i, r in enumerate(rows)
                    if multiple_choice and len(r.get("distractors") or []) >= 2]
    if with_options:
        wrong = [encode(tokenizer, r["question"], d, max_length, r["id"])
                 for _, r in with_options for d in r["distractors"][:2]]
        wrong_scores = score_examples(model, wrong, pad_id, batch_size)
        correct = sum(
            gold_scores[i].logprob_sum > max(wrong_scores[2 * k].logprob_sum,
                                             wrong_scores[2 * k + 1].logprob_sum)
            for k, (i, _) in enumerate(with_options)
        )
        result["mcq"] = correct / len(with_options)
    return result
