"""Direct preference optimisation (DPO, Rafailov et al. 2023) as an unlearning method: a
refusal is preferred to the forget answer, against the model before unlearning.

``L_DPO = −(2/β) · E_forget[ log σ( β · (log π_θ(r|x) − log π_ref(r|x))
                                    − β · (log π_θ(y|x) − log π_ref(y|x)) ) ]``

with ``y`` the forget answer (rejected), ``r`` the refusal (chosen; ``unlearn.losses.dpo.refusal``)
and ``log π(·|x)`` a response's summed token log-probability (EOS included), scaled by
``2/β`` as NPO is (open-unlearning's DPO). The reference is the model before unlearning;
both of its log-probabilities are computed once, before the first step, and travel with
each forget example.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from ssiuu.data.encoding import IGNORE, Example, collate
from ssiuu.model.shards import batch_mean
from ssiuu.scoring.metrics import score_examples
from ssiuu.unlearning.methods.npo import REFERENCE_KEY

CHOSEN_REFERENCE_KEY = "ref_chosen_logprob"  # REFERENCE_KEY holds the rejected answer's


def dpo_loss(chosen_logp: torch.Tensor, ref_chosen_logp: torch.Tensor,
             rejected_logp: torch.Tensor, ref_rejected_logp: torch.Tensor,
             beta: float) -> torch.Tensor:
    """DPO's forget term from the current and reference log-probabilities (``[batch]``)."""
    margin = (chosen_logp - ref_chosen_logp) - (rejected_logp - ref_rejected_logp)
    losses = F.logsigmoid(beta * margin)
    return -2.0 / beta * batch_mean(losses.sum(), torch.tensor(losses.numel()))


def refusal_ids(tokenizer: PreTrainedTokenizerBase, refusal: str) -> tuple[int, ...]:
    """The refusal's tokens as an answer is encoded: ``" " + refusal`` then EOS."""
    ids = tokenizer(" " + refusal, add_special_tokens=False).input_ids
    return (*ids, tokenizer.eos_token_id)


def _prompt(input_ids: Sequence[int], labels: Sequence[int]) -> list[int]:
    """The prompt of an encoded example: its tokens before the first labelled one."""
    first = next(index for index, label in enumerate(labels) if label != IGNORE)
    return list(input_ids[:first])


def refusal_examples(examples: Sequence[Example], refusal: Sequence[int]) -> list[Example]:
    """Each example with its answer replaced by the ``refusal`` tokens (the prompt kept)."""
    out: list[Example] = []
    for example in examples:
        prompt = _prompt(example["input_ids"], example["labels"])
        out.append({"input_ids": [*prompt, *refusal],
                    "labels": [IGNORE] * len(prompt) + list(refusal)})
    return out


def refusal_batch(batch: dict[str, torch.Tensor], refusal: Sequence[int],
                  pad_id: int) -> dict[str, torch.Tensor]:
    """A collated forget batch with every answer replaced by the refusal."""
    examples = []
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"],
                                 strict=True):
        length = int(mask.sum())
        examples.append({"input_ids": ids[:length].tolist(), "labels": labels[:length].tolist()})
    chosen = collate(refusal_examples(examples, refusal), pad_id)
    device = batch["input_ids"].device
    return {key: value.to(device) for key, value in chosen.items()}


def with_dpo_references(model: PreTrainedModel, examples: Sequence[Example],
                        refusal: Sequence[int], pad_id: int,
                        batch_size: int = 64) -> list[Example]:
    """Copies of ``examples`` carrying the reference model's log-probability of their answer
    (``REFERENCE_KEY``) and of the refusal (``CHOSEN_REFERENCE_KEY``)."""
    rejected = score_examples(model, examples, pad_id, batch_size)
    chosen = score_examples(model, refusal_examples(examples, refusal), pad_id, batch_size)
    return [{**example, REFERENCE_KEY: answer.logprob_sum,
             CHOSEN_REFERENCE_KEY: declined.logprob_sum}
            for example, answer, declined in zip(examples, rejected, chosen, strict=True)]
