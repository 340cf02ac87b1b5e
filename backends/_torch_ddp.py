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
  collective), then, per dtype, one buffer holding those arrays' rows side by side,
  padded to the largest count (the padding is cut off again). A rank's own rows stay its live, differentiable tensors; the other ranks' rows
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

Cost per step: one all-gather of the row counts and one per dtype of the gathered
arrays (outputs and targets are a few numbers per sample), and the loss evaluated on ``W×`` the rows
on every rank. The forward and backward pass of the model — normally the bulk — run
on the local rows only.
"""

from __future__ import annotations

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

    def gather_host(self, a: Any) -> Any:
        """Every rank's numpy array (or None) concatenated along axis 0 in rank order."""
        import numpy as np

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, a, group=self.group)
        parts = [o for o in out if o is not None]
        return np.concatenate(parts) if parts else None

    # -- rows -------------------------------------------------------------------------
    def gather_sizes(self, n: int) -> list[int]:
        t = torch.tensor([n], dtype=torch.int64, device=self.device)
        out = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(out, t, group=self.group)
        self.sizes = [int(v.item()) for v in out]
        return self.sizes

    def _check_rows(self, a: Any, name: str) -> None:
        if not isinstance(a, torch.Tensor) or a.ndim == 0:
            raise TypeError(
                f"distributed training gathers {name} across ranks, so it must be a tensor "
                f"with one row per sample; got {type(a).__name__}"
                + (" of shape ()" if isinstance(a, torch.Tensor) else "")
            )
        n = self.sizes[self.rank]
        if int(a.shape[0]) != n:
            raise ValueError(
                f"{name} has {a.shape[0]} rows but this rank's batch has {n} samples; "
                "distributed training needs one row per sample"
            )

    def gather_many(self, named: Sequence[tuple[str, torch.Tensor]]) -> list[torch.Tensor]:
        """The global-batch version of each array (rows of all ranks in rank order); this
        rank's rows are the array itself (gradients flow into it), the others constants.

        Arrays of one dtype travel together: their rows are flattened side by side into
        one ``(rows, columns)`` buffer, padded to the largest rank's rows, one
        ``all_gather`` per dtype."""
        for name, a in named:
            self._check_rows(a, name)
        sizes, m = self.sizes, max(self.sizes)
        groups: dict[torch.dtype, list[int]] = {}
        for i, (_, a) in enumerate(named):
            groups.setdefault(a.dtype, []).append(i)
        out: list[Any] = [None] * len(named)
        for dtype, idx in groups.items():
            arrays = [named[i][1] for i in idx]
            n = sizes[self.rank]
            cols = [int(torch.Size(a.shape[1:]).numel()) for a in arrays]
            buf = torch.zeros((m, sum(cols)), dtype=dtype, device=self.device)
            c = 0
            for a, k in zip(arrays, cols, strict=True):
                buf[:n, c:c + k] = a.detach().reshape(n, k).to(self.device)
                c += k
            parts = [torch.empty_like(buf) for _ in range(self.world)]
            dist.all_gather(parts, buf, group=self.group)
            c = 0
            for i, a, k in zip(idx, arrays, cols, strict=True):
                pieces = [
                    a if r == self.rank
                    else parts[r][: sizes[r], c:c + k].reshape(sizes[r], *a.shape[1:]).to(a.device)
                    for r in range(self.world)
                ]
                out[i] = torch.cat(pieces)
                c += k
        return out

    def global_step_data(self, outputs: Any, batch: PreparedBatch, *, inputs: bool) -> tuple[Any, PreparedBatch]:
        """The model's outputs and ``batch`` over the global batch: outputs, targets and
        semantic targets (and, if ``inputs``, the inputs) of every rank."""
        self.gather_sizes(batch.n)
        named: list[tuple[str, Any]] = []
        if isinstance(outputs, torch.Tensor):
            named.append(("the model's output", outputs))
        elif isinstance(outputs, (tuple, list)):
            named += [(f"the model's outputs[{i}]", o) for i, o in enumerate(outputs)]
        else:
            raise TypeError(
                "distributed training gathers the model's outputs across ranks: the model "
                f"must return a tensor or a tuple/list of tensors, got {type(outputs).__name__}"
            )
        n_out = len(named)
        sem = batch.semantic
        sem_keys: list[str] = []
        if sem is not None:
            for k, f in zip(sem._fields, sem, strict=True):
                if f is not None:
                    sem_keys.append(k)
                    named.append((f"semantic_targets.{k}", f))
        if batch.targets is not None:
            named.append(("the targets", batch.targets))
        if inputs:
            named.append(("the inputs", batch.inputs))
        got = self.gather_many(named)
        if isinstance(outputs, torch.Tensor):
            g_out: Any = got[0]
        else:
            g_out = list(got[:n_out]) if isinstance(outputs, list) else tuple(got[:n_out])
        pos = n_out
        if sem is not None:
            fields = sem._asdict()
            for k in sem_keys:
                fields[k] = got[pos]
                pos += 1
            sem = SemanticTargets(**fields)
        targets = batch.targets
        if targets is not None:
            targets = got[pos]
            pos += 1
        x = got[pos] if inputs else batch.inputs
        return g_out, PreparedBatch(x, targets, sem, sum(self.sizes))

    def total(self, sizes: Sequence[int] | None = None) -> int:
        return sum(self.sizes if sizes is None else sizes)
