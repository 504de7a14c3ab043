"""Negative preference optimisation (NPO, Zhang et al. 2024) against a frozen reference.

``L_NPO = (2/β) · E_forget[ log(1 + (π_θ(y|x) / π_ref(y|x))^β) ]
        = (2/β) · E_forget[ softplus(β · (log π_θ(y|x) − log π_ref(y|x))) ]``

with ``log π(y|x)`` the answer's summed token log-probability. The reference is the model
before unlearning; its log-probabilities are computed once, before the first step, and
travel with each forget example as ``ref_logprob``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from ssiuu.data.encoding import Example
from ssiuu.model.shards import batch_mean
from ssiuu.scoring.metrics import score_examples

REFERENCE_KEY = "ref_logprob"


def npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO's forget term from current and reference answer log-probabilities (``[batch]``)."""
    losses = F.softplus(beta * (logp - ref_logp))
    return 2.0 / beta * batch_mean(losses.sum(), torch.tensor(losses.numel()))


def with_reference_logprobs(model: PreTrainedModel, examples: Sequence[Example], pad_id: int,
                            batch_size: int = 64) -> list[Example]:
    """Copies of ``examples`` carrying the reference model's answer log-probability."""
    scores = score_examples(model, examples, pad_id, batch_size)
    return [{**example, REFERENCE_KEY: score.logprob_sum}
            for example, score in zip(examples, scores, strict=True)]
