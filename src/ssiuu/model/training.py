"""The one training loop: base training, unlearning and relearning all run through it.

A method supplies only its loss: ``loss_fn(model, batches) -> (loss, logs)``, where
``batches`` holds one batch from each named loader (``{"train": ...}`` for plain
fine-tuning, ``{"forget": ..., "retain": ...}`` for unlearning). A loss may also define
``after_backward(model) -> logs``: the loop calls it after the backward of ``loss`` and
before clipping, where it may measure that gradient and add a term of its own to ``.grad``
(Ssiuu's regulariser does).
The loop is seeded, shows a progress bar, logs every ``log_every`` steps, may stop early
through ``should_stop``, and runs on CPU, one GPU or several through Hugging Face
Accelerate. Under ``accelerate launch`` every batch is split across the processes and the
losses are means over the whole batch (:mod:`ssiuu.model.shards`): N processes take the same
steps as one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_scheduler

from ssiuu.config.errors import ParamsError
from ssiuu.data.encoding import Example, collate
from ssiuu.model.logprobs import answer_nll
from ssiuu.model.runtime import gradient_checkpointing, uses_cpu

if TYPE_CHECKING:
    from accelerate import Accelerator
from ssiuu.config.params import TrainParams

Batch = dict[str, torch.Tensor]
LossFn = Callable[[PreTrainedModel, dict[str, Batch]], tuple[torch.Tensor, dict[str, float]]]
StopFn = Callable[[int, PreTrainedModel], bool]


@dataclass
class TrainResult:
    """What a run did: steps taken, the logged history and wall time.

    ``main_process`` is False on every process but the first under ``accelerate launch``:
    only the main process should write outputs.
    """

    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    main_process: bool = True


def make_loader(examples: Sequence[Example], batch_size: int, pad_id: int,
                seed: int) -> DataLoader:
    """A shuffled, seeded loader over encoded examples."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(list(examples), batch_size=min(batch_size, len(examples)), shuffle=True,
                      generator=generator, collate_fn=partial(collate, pad_id=pad_id))


def _shards(loader: DataLoader, index: int, count: int, device: torch.device
            ) -> Iterator[Batch]:
    """Slice ``index`` of ``count`` of every batch of ``loader``, epoch after epoch, on
    ``device``: ``count`` processes drawing the same batches together see each whole."""
    while True:
        for batch in loader:
            yield {key: torch.tensor_split(value, count)[index].to(device)
                   for key, value in batch.items()}


def nll_loss(model: PreTrainedModel, batches: dict[str, Batch]) -> tuple[torch.Tensor,
                                                                          dict[str, float]]:
    """Mean negative log-likelihood of the answer tokens of the ``train`` batch."""
    loss = answer_nll(model, batches["train"])
    return loss, {"nll": float(loss.detach())}


def _averaged(accelerator: Accelerator, logs: dict[str, float]) -> dict[str, float]:
    """``logs`` averaged over the processes: a shard's part of a batch mean
    (:mod:`ssiuu.model.shards`) averages to the whole batch's mean."""
    values = accelerator.reduce(torch.tensor(list(logs.values()), dtype=torch.float64,
                                             device=accelerator.device), reduction="mean")
    return dict(zip(logs, values.tolist(), strict=True))


def _master_weights(model: PreTrainedModel) -> tuple[torch.dtype,
                                                    dict[torch.nn.Parameter, torch.dtype]]:
    """Make every trainable half-precision parameter float32. Returns the dtype ``model``
    computes in (its trainable parameters' half dtype, else float32) and each upcast
    parameter's dtype before."""
    before = {param: param.dtype for param in model.parameters()
              if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16)}
    halves = set(before.values())
    if len(halves) > 1:
        raise ValueError(f"trainable parameters in both {sorted(map(str, halves))}")
    for param in before:
        param.data = param.data.float()
    return (halves.pop() if halves else torch.float32), before


def train(model: PreTrainedModel, loaders: dict[str, DataLoader], loss_fn: LossFn,
          params: TrainParams, seed: int, should_stop: StopFn | None = None,
          desc: str = "train") -> TrainResult:
    """Optimise ``model`` in place with AdamW for ``params.steps`` steps (or until stopped).

    ``should_stop(step, model)`` is called after every step; returning True ends the run.
    A model in bfloat16 or float16 trains in mixed precision: float32 master weights and
    optimiser state, the forward pass (and ``should_stop``'s scoring) under autocast in its
    own dtype, float16 with loss scaling (gradients unscaled before ``after_backward``);
    it is cast back to its dtype at the end.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    set_seed(seed)
    accelerator = Accelerator(cpu=uses_cpu())
    for name, loader in loaders.items():
        if loader.batch_size < accelerator.num_processes:
            raise ParamsError(
                f"{desc}: {name} batches of {loader.batch_size} cannot be shared by "
                f"{accelerator.num_processes} processes: raise the batch size")
    # float32 master weights and optimiser state: small AdamW updates vanish in bf16
    # rounding; frozen weights (LoRA's base model) stay as they are.
    compute_dtype, master = _master_weights(model)
    autocast = torch.autocast(accelerator.device.type, dtype=compute_dtype,
                              enabled=compute_dtype != torch.float32)
    scaler = torch.amp.GradScaler(accelerator.device.type,
                                  enabled=compute_dtype == torch.float16)
    checkpointing = gradient_checkpointing() and model.supports_gradient_checkpointing
    if checkpointing:  # non-reentrant: it keeps the graph for the regulariser's gradients
        model.activation_checkpointing_enable({"use_reentrant": False})
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr,
                                  weight_decay=params.weight_decay)
    scheduler = get_scheduler(params.schedule if params.schedule != "constant"
                              else "constant_with_warmup", optimizer,
                              num_warmup_steps=int(params.warmup_ratio * params.steps),
                              num_training_steps=max(params.steps, 1))
    # The scheduler stays outside `prepare`: Accelerate would step it once per process.
    # So do the loaders: Accelerate hands a short last batch whole to one process (the
    # others get repeats); every process draws the same batches and keeps its slice.
    model, optimizer = accelerator.prepare(model, optimizer)
    streams = {name: _shards(loader, accelerator.process_index, accelerator.num_processes,
                             accelerator.device) for name, loader in loaders.items()}
    result = TrainResult(steps=0, seconds=0.0)
    start = time.perf_counter()
    model.train()
    after_backward = getattr(loss_fn, "after_backward", None)
    progress = tqdm(range(params.steps), desc=desc, disable=not accelerator.is_main_process,
                    mininterval=2.0)
    for step in progress:
        batches = {name: next(stream) for name, stream in streams.items()}
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss, logs = loss_fn(model, batches)
        accelerator.backward(scaler.scale(loss))
        scaler.unscale_(optimizer)  # before anything reads or adds to .grad
        if after_backward is not None:
            logs = {**logs, **after_backward(accelerator.unwrap_model(model))}
        logs = {"loss": float(loss.detach()), **logs}
        if accelerator.num_processes > 1:  # each process logged its shard's part
            logs = _averaged(accelerator, logs)
        accelerator.clip_grad_norm_(model.parameters(), params.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        result.steps = step + 1
        if result.steps % params.log_every == 0 or result.steps == params.steps:
            entry = {"step": result.steps, "loss": logs["loss"],
                     "lr": scheduler.get_last_lr()[0], **logs}
            result.history.append(entry)
            progress.set_postfix(loss=f"{entry['loss']:.4f}")
        if should_stop is not None:
            with autocast:
                stop = should_stop(result.steps, model)
            if stop:
                result.stopped_early = True
                break
    progress.close()
    model.eval()
    for param, dtype in master.items():
        param.data = param.data.to(dtype)
    if checkpointing:
        accelerator.unwrap_model(model).activation_checkpointing_disable()
    accelerator.wait_for_everyone()
    result.main_process = accelerator.is_main_process
    result.seconds = time.perf_counter() - start
    return result
