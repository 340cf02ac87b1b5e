"""``SCMTrainer`` under ``torch.distributed`` + ``DistributedDataParallel`` (DDP).

Distributed mode is on when the model is a ``DistributedDataParallel`` module whose
process group has more than one rank (gloo on CPU, NCCL on GPU; ``torchrun`` or any
other launcher initialises the group). Each rank then holds one shard of every batch;
the union of the shards, in rank order, is the *global batch*.

Rule — every step computes on the global batch. The loss, coverage, bottom fraction,
the denominator statistics and every validation metric are what one process would
compute on the global batch:

* the step all-gathers the rows of the model's outputs and of the targets (and of the
  inputs when the loss reads ``inputs=``): first the per-rank row counts (one small
  collective), then each array padded to the largest count, then the padding is cut
  off. A rank's own rows stay its live, differentiable tensors; the other ranks' rows
  are constants. Every rank evaluates the same loss ``L`` on the same global batch
  (so the rejection term sees the *global* coverage, a margin mean is over the global
  population, ...): the value is identical on every rank;
* backward runs on ``W·L`` (``W`` ranks): rank ``r``'s parameter gradient is
  ``W·∂L/∂θ`` through its own rows, DDP's all-reduce averages over the ranks, and
  ``(1/W)·Σ_r W·∂L/∂θ|_r = ∂L/∂θ`` — the single-process gradient of the global batch,
  for every loss (not only per-sample means of equal shards);
* the metrics vector is computed on the gathered outputs: counts and sums over the
  global batch, the minimum over it (no average of per-rank averages);
* steps that only accumulate gradients run under ``model.no_sync()`` (DDP then
  all-reduces the accumulated gradients once, at the update).

Cost per step: one all-gather of the row counts and one per gathered array (outputs
and targets are a few numbers per sample), and the loss evaluated on ``W×`` the rows
on every rank. The forward and backward pass of the model — normally the bulk — run
on the local rows only.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from zpml_core.projective import SemanticTargets
from zpml_core.training.engine import PreparedBatch

__all__ = ["DDPComm", "ddp_comm"]


def _ddp_type() -> Any:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel


def ddp_comm(model: nn.Module) -> DDPComm | None:
    """The communicator of a DDP model whose process group has > 1 rank, else None.

    A plain module while a process group is initialised trains on each rank on its
    own (``UserWarning``): its gradients would never be synchronised."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    if not isinstance(model, _ddp_type()):
        if dist.get_world_size() > 1:
            import warnings

            warnings.warn(
                "a torch.distributed process group is initialised but the model is not a "
                "DistributedDataParallel module: every rank trains its own copy on its own "
                "batches (no gradient or metric synchronisation); wrap the model in "
                "torch.nn.parallel.DistributedDataParallel for data-parallel training",
                UserWarning,
                stacklevel=5,
            )
        return None
    group = getattr(model, "process_group", None)
    if dist.get_world_size(group) < 2:
        return None
    return DDPComm(group)


class DDPComm:
    """Collectives of one process group (see the module docstring)."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.rank = int(dist.get_rank(group))
        self.world = int(dist.get_world_size(group))
        backend = str(dist.get_backend(group)).lower()
        self.device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" \
            else torch.device("cpu")
        self.sizes: list[int] = []

    # -- objects ----------------------------------------------------------------------
    def broadcast_object(self, obj: Any) -> Any:
        """``obj`` of rank 0 on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group, device=self.device)
        return box[0]

    def all_equal(self, obj: Any) -> bool:
        """True iff ``obj`` (picklable) is the same on every rank."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, pickle.dumps(obj), group=self.group)
        return all(o == out[0] for o in out)

    def barrier(self) -> None:
        dist.barrier(group=self.group)

    # -- rows -------------------------------------------------------------------------
    def gather_sizes(self, n: int) -> list[int]:
        t = torch.tensor([n], dtype=torch.int64, device=self.device)
        out = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(out, t, group=self.group)
        self.sizes = [int(v.item()) for v in out]
        return self.sizes

    def gather_rows(self, a: torch.Tensor, name: str) -> torch.Tensor:
        """The global-batch version of ``a`` (rows of all ranks in rank order); this
        rank's rows are ``a`` itself (gradients flow into it), the others constants."""
        if not isinstance(a, torch.Tensor) or a.ndim == 0:
            raise TypeError(
                f"distributed training gathers {name} across ranks, so it must be a tensor "
                f"with one row per sample; got {type(a).__name__}"
                + (" of shape ()" if isinstance(a, torch.Tensor) else "")
            )
        sizes = self.sizes
        n = sizes[self.rank]
        if int(a.shape[0]) != n:
            raise ValueError(
                f"{name} has {a.shape[0]} rows but this rank's batch has {n} samples; "
                "distributed training needs one row per sample"
            )
        m = max(sizes)
        src = a.detach()
        if src.device != self.device:
            src = src.to(self.device)
        if n < m:
            pad = torch.zeros((m - n, *src.shape[1:]), dtype=src.dtype, device=src.device)
            src = torch.cat([src, pad])
        src = src.contiguous()
        parts = [torch.empty_like(src) for _ in range(self.world)]
        dist.all_gather(parts, src, group=self.group)
        pieces = [
            a if r == self.rank else parts[r][: sizes[r]].to(a.device)
            for r in range(self.world)
        ]
        return torch.cat(pieces)

    def global_outputs(self, outputs: Any) -> Any:
        if isinstance(outputs, torch.Tensor):
            return self.gather_rows(outputs, "the model's output")
        if isinstance(outputs, (tuple, list)):
            out = [self.gather_rows(o, f"the model's outputs[{i}]") for i, o in enumerate(outputs)]
            return type(outputs)(out) if isinstance(outputs, list) else tuple(out)
        raise TypeError(
            "distributed training gathers the model's outputs across ranks: the model must "
            f"return a tensor or a tuple/list of tensors, got {type(outputs).__name__}"
        )

    def global_batch(self, batch: PreparedBatch, *, inputs: bool) -> PreparedBatch:
        """``batch`` with targets (and, if ``inputs``, the inputs) of every rank."""
        sem = batch.semantic
        if sem is not None:
            sem = SemanticTargets(*(
                None if f is None else self.gather_rows(f, f"semantic_targets.{k}")
                for k, f in zip(sem._fields, sem, strict=True)
            ))
        targets = batch.targets
        if targets is not None:
            targets = self.gather_rows(targets, "the targets")
        x = batch.inputs
        if inputs:
            x = self.gather_rows(x, "the inputs")
        return PreparedBatch(x, targets, sem, sum(self.sizes))

    def total(self, sizes: Sequence[int] | None = None) -> int:
        return sum(self.sizes if sizes is None else sizes)
