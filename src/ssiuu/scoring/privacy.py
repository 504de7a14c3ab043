"""Membership inference: can the forget facts still be told apart from facts no model saw?

Each attack gives every fact one score from the model's teacher-forced answer tokens (the
tokens training and unlearning act on; the prompt is never trained), oriented so that a
higher score says "this fact was in the training set":

- ``loss``: the mean answer-token log-probability (minus the loss; Yeom et al. 2018);
- ``zlib``: the summed answer-token log-probability over the zlib-compressed length of the
  answer text in bytes (Carlini et al. 2021): a low loss that the text's own simplicity
  does not explain;
- ``min_k``: the mean of the ``k`` fraction of lowest token log-probabilities (Min-K%
  Prob, Shi et al. 2024): members lack very unlikely tokens;
- ``min_k_plus_plus``: the same over each token's log-probability standardised by the
  mean and standard deviation of the log-probability of a token drawn from the model's own
  next-token distribution at that position (Min-K%++, Zhang et al. 2024).

An attack's AUC is the area under the ROC curve of telling the members (the forget facts)
from the non-members (the holdout facts), ties counted half; 0.5 is chance. ``privleak``
is open-unlearning's relative AUC (:func:`ssiuu.scoring.relative.privleak`; there in percent): 0
means the model is as blind to the forget set as the oracle that never saw it, positive
that the forget set still stands out, negative that it stands out the other way (an
over-unlearned model marks the facts it forgot).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.data.encoding import IGNORE, collate, encode_rows
from ssiuu.data.records import Record
from ssiuu.model.logprobs import next_token_logprobs

ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")
MIN_VARIANCE = 1e-6  # of the next-token log-probability, as open-unlearning clamps it


@dataclass(frozen=True)
class TokenStatistics:
    """One fact's answer tokens under teacher forcing: each token's log-probability, and the
    mean and variance of the log-probability of a token drawn from the model at that
    position."""

    logprobs: tuple[float, ...]
    expected: tuple[float, ...]
    variance: tuple[float, ...]


@torch.no_grad()
def token_statistics(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                     rows: Sequence[Record], max_length: int,
                     batch_size: int = 64) -> list[TokenStatistics]:
    """:class:`TokenStatistics` of each row's true answer, in the order of ``rows``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    examples = encode_rows(tokenizer, rows, max_length)
    stats: list[TokenStatistics] = []
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start:start + batch_size], tokenizer.pad_token_id)
        vocab_logp = next_token_logprobs(model, {key: value.to(device)
                                                 for key, value in batch.items()})
        targets = batch["labels"][:, 1:].to(device)
        mask = targets != IGNORE
        token_logp = vocab_logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        probs = vocab_logp.exp()
        expected = (probs * vocab_logp).sum(-1)
        variance = (probs * vocab_logp.square()).sum(-1) - expected.square()
        for row in range(targets.shape[0]):
            keep = mask[row]
            stats.append(TokenStatistics(tuple(token_logp[row][keep].tolist()),
                                         tuple(expected[row][keep].tolist()),
                                         tuple(variance[row][keep].tolist())))
    model.train(was_training)
    return stats


def _lowest_mean(values: Sequence[float], k: float) -> float:
    """Mean of the ``k`` fraction of lowest values (at least one)."""
    count = max(1, int(len(values) * k))
    return sum(sorted(values)[:count]) / count


def attack_scores(stats: TokenStatistics, answer: str, k: float) -> dict[str, float]:
    """Every attack's membership score of one fact (higher: more likely a member)."""
    logprobs = stats.logprobs
    standardised = [(value - mean) / max(variance, MIN_VARIANCE) ** 0.5
                    for value, mean, variance in zip(logprobs, stats.expected, stats.variance,
                                                      strict=True)]
    return {"loss": sum(logprobs) / len(logprobs),
            "zlib": sum(logprobs) / len(zlib.compress(answer.encode("utf-8"))),
            "min_k": _lowest_mean(logprobs, k),
            "min_k_plus_plus": _lowest_mean(standardised, k)}


def auc(members: Sequence[float], nonmembers: Sequence[float]) -> float:
    """Area under the ROC curve of telling ``members`` from ``nonmembers`` by score
    (higher: member); tied scores count half. Raises ``ValueError`` if either is empty."""
    if not members or not nonmembers:
        raise ValueError("membership AUC needs at least one member and one non-member")
    # The Mann–Whitney U of the members' average ranks (ties share their mean rank), as
    # sklearn's roc_auc_score computes it, without its 2 s import in every stage.
    scores = torch.tensor([*members, *nonmembers], dtype=torch.float64)
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts.double() - 1) / 2)[inverse]
    n_members = len(members)
    u = float(ranks[:n_members].sum()) - n_members * (n_members + 1) / 2
    return u / (n_members * len(nonmembers))


def membership_scores(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      rows: Sequence[Record], max_length: int, k: float,
                      batch_size: int = 64) -> list[dict[str, float]]:
    """Every attack's membership score of each of ``rows`` (:func:`attack_scores`), in order."""
    stats = token_statistics(model, tokenizer, rows, max_length, batch_size)
    return [attack_scores(one, row["answer"], k) for row, one in zip(rows, stats, strict=True)]


def aucs(members: Sequence[Mapping[str, float]],
         nonmembers: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each attack's :func:`auc` from the members' and non-members' :func:`attack_scores`."""
    return {attack: auc([scores[attack] for scores in members],
                        [scores[attack] for scores in nonmembers]) for attack in ATTACKS}


def membership_aucs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    members: Sequence[Record], nonmembers: Sequence[Record], max_length: int,
                    k: float, batch_size: int = 64) -> dict[str, float]:
    """Each attack's AUC of telling ``members`` (the forget facts) from ``nonmembers`` (the
    holdout facts) with ``model``."""
    return aucs(membership_scores(model, tokenizer, members, max_length, k, batch_size),
                membership_scores(model, tokenizer, nonmembers, max_length, k, batch_size))
