"""The answer-advantage forget term (our extension, ``unlearn.train.forget_advantage``).

Gradient ascent lowers the answer's likelihood, but not its advantage over the answers it
could be confused with: on the default, at the check where the forget set's mean log-prob
met the never-seen level, GD still ranked the true answer first in about half of the
multiple-choice questions. This term weighs each forget fact's answer against
``alternatives`` other answers of the same attribute, drawn from the retain facts (never
the fact's own distractors, which evaluation reads), and lowers the answer's log-share
among them, ``log p(answer) - log sum p(answer or an alternative)``, down to an even share
``1 / (alternatives + 1)`` and not past it: a model that never saw the fact has no reason
to prefer its answer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.config.errors import DataError
from ssiuu.config.params import AdvantageParams
from ssiuu.data.encoding import collate, encode
from ssiuu.data.records import Record
from ssiuu.model.logprobs import sequence_logprobs

PARAM = "unlearn.train.forget_advantage"


def alternative_answers(forget: Sequence[Record], retain: Sequence[Record], count: int,
                        seed: int) -> list[list[str]]:
    """``count`` alternatives per forget fact: answers of retain facts with the same
    ``attribute``, other than the fact's answer and distractors, drawn with ``seed``. A fact
    without an attribute or with too few alternatives is a :class:`DataError` naming it."""
    pool: dict[str, set[str]] = {}
    for row in retain:
        if row.get("attribute"):
            pool.setdefault(row["attribute"], set()).add(row["answer"])
    drawn = []
    for row in forget:
        attribute = row.get("attribute")
        excluded = {row["answer"], *row.get("distractors", [])}
        candidates = sorted(pool.get(attribute, set()) - excluded) if attribute else []
        if len(candidates) < count:
            raise DataError(f"{PARAM}: forget fact {row.get('id')}: {len(candidates)} other "
                            f"answers of its attribute {attribute!r} among the retain facts, "
                            f"{count} needed (lower alternatives, or give facts attributes)")
        drawn.append(random.Random(f"advantage-{seed}-{row.get('id')}").sample(candidates,
                                                                                count))
    return drawn


def advantage_loss(logp: torch.Tensor) -> torch.Tensor:
    """The term from the summed answer log-probabilities ``logp`` (``[facts, 1 + K]``: the
    answer's first, then its ``K`` alternatives): the mean over facts of the answer's
    log-share, where a fact at or below the even share ``1 / (1 + K)`` adds 0."""
    share = logp[:, 0] - torch.logsumexp(logp, dim=1)
    active = share.detach() > -math.log(logp.shape[1])
    return (share * active).sum() / logp.shape[0]


class AdvantageTerm:
    """The forget facts and their alternatives encoded once, scored on every step."""

    def __init__(self, batch: dict[str, torch.Tensor], alternatives: int, beta: float) -> None:
        self.batch, self.alternatives, self.beta = batch, alternatives, beta

    @classmethod
    def build(cls, tokenizer: PreTrainedTokenizerBase, forget: Sequence[Record],
              drawn: Sequence[Sequence[str]], params: AdvantageParams, max_length: int,
              device: torch.device | str) -> AdvantageTerm:
        """Encode each fact's question with its answer and its ``drawn`` alternatives."""
        examples = [encode(tokenizer, row["question"], answer, max_length, row.get("id", "?"))
                    for row, others in zip(forget, drawn, strict=True)
                    for answer in (row["answer"], *others)]
        batch = {key: value.to(device)
                 for key, value in collate(examples, tokenizer.pad_token_id).items()}
        return cls(batch, params.alternatives, params.beta)

    def __call__(self, model: PreTrainedModel) -> torch.Tensor:
        """``beta`` times :func:`advantage_loss` under ``model`` (with its gradient)."""
        logp = sequence_logprobs(model, self.batch).view(-1, self.alternatives + 1)
        return self.beta * advantage_loss(logp)
