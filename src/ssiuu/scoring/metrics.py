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
from ssiuu.model.logprobs import answer_token_logprobs


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


@dataclass(frozen=True)
class FactScore:
    """One fact's scores: greedy exact match, mean answer-token log-prob, whether the true
    answer beats both distractors, and its share of the three options' probability
    (``share``: ``P(answer) / (P(answer) + P(d1) + P(d2))`` of the summed log-probs, 1/3
    for a model that cannot tell them apart; ``mcq`` and ``share`` are ``None`` when the
    fact has fewer than two distractors)."""

    id: str
    acc: bool
    logprob: float
    mcq: bool | None
    share: float | None = None


def score_rows(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
               rows: Sequence[Record], max_length: int, batch_size: int = 64,
               multiple_choice: bool = True) -> list[FactScore]:
    """Score every fact of ``rows`` (``multiple_choice=False`` skips the two extra passes)."""
    pad_id = tokenizer.pad_token_id
    gold = score_examples(model, encode_rows(tokenizer, rows, max_length), pad_id, batch_size)
    with_options = [i for i, r in enumerate(rows)
                    if multiple_choice and len(r.get("distractors") or []) >= 2]
    wrong = [encode(tokenizer, rows[i]["question"], d, max_length, rows[i]["id"])
             for i in with_options for d in rows[i]["distractors"][:2]]
    wrong_scores = score_examples(model, wrong, pad_id, batch_size) if wrong else []
    options = {i: torch.tensor([gold[i].logprob_sum, wrong_scores[2 * k].logprob_sum,
                                wrong_scores[2 * k + 1].logprob_sum], dtype=torch.float64)
               for k, i in enumerate(with_options)}
    return [FactScore(row["id"], score.greedy_match, score.logprob_sum / score.n_tokens,
                      None if i not in options else bool(options[i][0] > options[i][1:].max()),
                      None if i not in options else float(options[i].softmax(0)[0]))
            for i, (row, score) in enumerate(zip(rows, gold, strict=True))]


def aggregate(scores: Sequence[FactScore]) -> dict[str, float]:
    """``acc``, ``logprob``, ``n`` and (when any fact has distractors) ``mcq`` of a set."""
    if not scores:
        raise ValueError("cannot evaluate an empty split")
    result = {"acc": sum(s.acc for s in scores) / len(scores),
              "logprob": sum(s.logprob for s in scores) / len(scores),
              "n": len(scores)}
    options = [s.mcq for s in scores if s.mcq is not None]
    if options:
        result["mcq"] = sum(options) / len(options)
    return result


def evaluate_rows(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                  rows: Sequence[Record], max_length: int, batch_size: int = 64,
                  multiple_choice: bool = True) -> dict[str, float]:
    """``acc``, ``mcq``, ``logprob`` and ``n`` of a model on a list of facts.

    ``multiple_choice=False`` skips ``mcq`` (and the two extra passes it costs).
    """
    if not rows:
        raise ValueError("cannot evaluate an empty split")
    return aggregate(score_rows(model, tokenizer, rows, max_length, batch_size,
                                multiple_choice))
