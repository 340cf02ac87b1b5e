"""PyTorch training step for ``SCMTrainer`` and the demo models.

The step is eager: ``model(x)`` and the loss under ``torch.autocast`` (when mixed
precision is on; CPU uses bfloat16, float16 only on CUDA), ``loss.backward()`` outside
autocast; all of it inside ``gradient_policy(config.gradient_policy)`` when a policy is
configured (semantics §10 #8: the context active during ``backward`` applies). Gradients
accumulate in ``.grad``; the update divides them by the actual group size, calls
``optimizer.step()`` and zeroes them.

Non-finite gradients: on an update step the step also computes, on the device, a flag
that is 0 iff every gradient element is finite (the fused check ``GradScaler`` uses, at
scale 1, else ``sum(g * 0)``) and returns it with the metrics; the trainer reads it in
the same host transfer as the loss and calls ``finalize``, which skips
``optimizer.step()`` (and drops the group's gradients) when it is not 0. With a CUDA
float16 ``GradScaler`` the scaler's own skip-and-rescale applies.

Checkpoints are ``torch.save`` dicts of tensors, state dicts and a JSON string, sealed
and written atomically by :mod:`zpml_core.training.checkpoint`, read back with
``torch.load(weights_only=True)`` after the seal is verified, and checked against the
live model and optimizer (keys, shapes, dtypes) before anything is loaded.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from zpml_backends._torch_checkpoint import TorchCheckpointMixin, read_metadata

from zpml_core.training.engine import (
    PreparedBatch,
    StepArgs,
    TrainingEngine,
    TrainingSupport,
    lifted_targets,
)
from zpml_core.training.metrics import batch_metrics, strict_sums

__all__ = [
    "RationalHead",
    "TorchEngine",
    "TorchTraining",
    "demo_model",
    "read_metadata",
    "weighted_dataloader",
]


class RationalHead(nn.Module):
    """The training guide's projective head: a 2×64 ReLU MLP emitting ``(P, Q)``.

    With ``output_dim=1`` (default) it is exactly the guide's module. With
    ``output_dim=k > 1`` the head emits ``k`` numerators sharing one denominator
    (``P`` of shape ``(B, k)``, ``Q`` of shape ``(B,)``).
    """

    def __init__(self, input_dim: int, output_dim: int = 1) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.backbone = nn.Sequential(
            nn.Linear(input_dim, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
        )
        self.head = nn.Linear(64, 2 if output_dim == 1 else output_dim + 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.backbone(x))
        if self.output_dim == 1:
            p, q = out.unbind(dim=-1)
            return p, q
        return out[..., :-1], out[..., -1]


def demo_model(params: Mapping[str, Any], input_dim: int, output_dim: int, lr: float) -> tuple[Any, Any]:
    """A :class:`RationalHead` loaded with numpy parameters laid out like
    ``zpml_backends.jax_training.rational_head_init`` (weights ``(in, out)``), and Adam."""
    model = RationalHead(input_dim, output_dim)
    layers: list[Any] = [model.backbone[0], model.backbone[2], model.head]
    src = [*params["backbone"], params["head"]]
    with torch.no_grad():
        for lin, p in zip(layers, src, strict=True):
            lin.weight.copy_(torch.as_tensor(p["w"]).T)
            lin.bias.copy_(torch.as_tensor(p["b"]))
    return model, torch.optim.Adam(model.parameters(), lr=lr)


def _policy_context(policy: Any) -> Any:
    if policy is None:
        return contextlib.nullcontext()
    from zpml_core.autodiff.policies import gradient_policy

    return gradient_policy(policy)


def _train_metrics(loss: torch.Tensor, outputs: Any, tau: Any, xp: Any) -> tuple[Any, ...]:
    """:func:`~zpml_core.training.metrics.batch_metrics` of a train step, bit for bit
    (no autograd graph: it reads ``Q`` detached).

    The common case — ``(P, Q)`` outputs with a non-empty real 1-d ``Q``, a 0-d loss and
    a Python-float ``tau > 0`` — runs as 9 native torch ops instead of 10 through the
    array-API namespace (~15 µs less per eager step). With ``fin = |Q| < inf`` and
    ``af = where(fin, |Q|, 0)``: ``covered = af >= tau`` equals ``fin & (|Q| >= tau)``
    because ``tau > 0``; ``count``, ``min`` and the sum are the same torch reductions
    on the same values. Anything else: ``batch_metrics`` itself.
    """
    q = outputs[1] if type(outputs) in (tuple, list) and len(outputs) >= 2 else None
    if (
        type(q) is not torch.Tensor
        or q.ndim != 1
        or q.shape[0] == 0
        or q.is_complex()
        or loss.ndim
        or type(tau) is not float
        or not tau > 0.0
    ):
        with torch.no_grad():
            return batch_metrics(loss, outputs, tau, xp=xp)
    a = torch.abs(q.detach())
    fin = a < float("inf")
    af = torch.where(fin, a, 0.0)
    qmin = torch.amin(torch.where(fin, a, float("inf")))
    return (loss, int(q.shape[0]), torch.sum(af >= tau), torch.sum(fin), qmin, torch.sum(af))


class TorchEngine(TorchCheckpointMixin, TrainingEngine):
    name = "torch"

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss: Any, config: Any,
                 scheduler: Any = None) -> None:
        import array_api_compat.torch as xp

        self.xp = xp
        self._model = model
        self.optimizer = optimizer
        self.loss = loss
        self.config = config
        self.scheduler = scheduler
        if config.device is not None:
            self.device = torch.device(config.device)
            model.to(self.device)
        else:
            p = next(model.parameters(), None)
            self.device = p.device if p is not None else torch.device("cpu")
        dtype_name = config.amp_dtype
        if dtype_name == "float16" and self.device.type != "cuda":
            dtype_name = "bfloat16"
        self.amp = config.amp_enabled
        if self.amp and self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"mixed_precision is not supported on device type {self.device.type!r}")
        self.amp_dtype = getattr(torch, dtype_name)
        self.scaler = None
        if self.amp and self.device.type == "cuda" and self.amp_dtype == torch.float16:
            self.scaler = torch.amp.GradScaler("cuda")
        self._pending: tuple[bool, int] | None = None
        self._ones: dict[Any, Any] = {}  # inv_scale 1 of the fused gradient check
        self._inference: Any = None
        self._bottom_capability: str | bool | None = False
        from zpml_backends._torch_ddp import ddp_comm

        #: the process group's communicator when ``model`` is a multi-rank
        #: ``DistributedDataParallel`` module (see ``zpml_backends._torch_ddp``), else None
        self.ddp = ddp_comm(model)
        if self.ddp is not None:
            self.rank, self.world_size = self.ddp.rank, self.ddp.world
        accepts: frozenset[str] = getattr(loss, "accepts", frozenset())
        self._loss_reads_inputs = "inputs" in accepts

    # -- data ---------------------------------------------------------------------------
    def to_framework(self, a: Any) -> Any:
        if isinstance(a, torch.Tensor):
            return a if a.device == self.device else a.to(self.device, non_blocking=True)
        if a is None or isinstance(a, (str, bytes)):
            return a
        import numpy as np

        if isinstance(a, np.ndarray) or type(a).__module__.partition(".")[0] in ("numpy", "jax", "jaxlib"):
            return torch.as_tensor(np.asarray(a), device=self.device)
        return a

    def _autocast(self) -> Any:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _global(self, outputs: Any, batch: PreparedBatch) -> tuple[Any, PreparedBatch]:
        """Under DDP: the outputs and the batch of the global batch (every rank's rows,
        this rank's live); else unchanged."""
        ddp = self.ddp
        if ddp is None:
            return outputs, batch
        return ddp.global_step_data(outputs, batch, inputs=self._loss_reads_inputs)

    def sample_count(self, n: int) -> int:
        return n if self.ddp is None else self.ddp.total()

    def gather_host(self, a: Any) -> Any:
        return a if self.ddp is None else self.ddp.gather_host(a)

    def broadcast_object(self, obj: Any) -> Any:
        return obj if self.ddp is None else self.ddp.broadcast_object(obj)

    def _loss(self, outputs: Any, batch: PreparedBatch, args: StepArgs) -> torch.Tensor:
        y_n, y_d = lifted_targets(batch.targets, batch.semantic)
        return self.loss(
            outputs,
            y_n,
            y_d,
            tau=args.tau,
            inputs=batch.inputs,
            targets=batch.targets,
            epoch=args.epoch,
            global_step=args.global_step,
            loss_weights=args.loss_weights,
            semantic_targets=batch.semantic,
        )

    # -- steps --------------------------------------------------------------------------
    def train_step(self, batch: PreparedBatch, args: StepArgs, *, update: bool, group_size: int) -> Any:
        if self.ddp is None and not self.amp and self.config.gradient_policy is None:
            # the plain step (one process, full precision, no policy context): the
            # general path below without its no-op contexts
            outputs = self._model(batch.inputs)
            loss = self._loss(outputs, batch, args)
            if loss.requires_grad:
                loss.backward()
            vec = _train_metrics(loss.detach(), outputs, args.tau, self.xp)
            # (gradients of a plain backward need no grad-mode guard)
            check = self._grads_check() if update else 0.0
            self._pending = (update, group_size)
            return (*vec, check)
        sync = contextlib.nullcontext()
        if self.ddp is not None and not update:  # accumulate locally, all-reduce at the update
            sync = self._model.no_sync()  # type: ignore[operator]
        with _policy_context(self.config.gradient_policy), sync:
            with self._autocast():
                outputs = self._model(batch.inputs)
                outputs, batch = self._global(outputs, batch)
                loss = self._loss(outputs, batch, args)
            if loss.requires_grad:
                # DDP averages the ranks' gradients of W·L: the gradient of L (module doc
                # of zpml_backends._torch_ddp)
                scaled = loss if self.ddp is None else loss * self.ddp.world
                if self.scaler is not None:
                    self.scaler.scale(scaled).backward()
                else:
                    scaled.backward()
        with torch.no_grad():
            vec = _train_metrics(loss.detach(), outputs, args.tau, self.xp)
            check = self._grads_check() if update else 0.0
        self._pending = (update, group_size)
        return (*vec, check)

    def _grads_check(self) -> Any:
        """0 iff every accumulated gradient element is finite, else nonzero (a 0-d tensor,
        no sync). Dense gradients of one device and dtype go through the fused check
        behind ``GradScaler.unscale_`` at scale 1 (``g·1 = g`` bit for bit; ~3 µs on the
        guide's head); anything else — sparse gradients (their values), several devices
        or dtypes — through ``sum(g * 0)``: exactly 0 if all are finite, NaN if any is
        NaN or ±inf (``inf * 0`` is NaN), it cannot overflow (~12 µs)."""
        flat = []
        dense = True
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if g.is_sparse:
                    g = g.coalesce()._values()
                    dense = False
                flat.append(g)
        if not flat:
            return 0.0
        g0 = flat[0]
        fused = getattr(torch, "_amp_foreach_non_finite_check_and_unscale_", None)
        if (dense and fused is not None and g0.dtype in (torch.float32, torch.float64)
                and all(g.device == g0.device and g.dtype == g0.dtype for g in flat)):
            one = self._ones.get(g0.device)
            if one is None:
                one = self._ones[g0.device] = torch.ones((), device=g0.device)
            found = torch.zeros((), device=g0.device)
            try:
                fused(flat, found, one)
                return found
            except RuntimeError:  # e.g. a gradient whose elements share memory
                pass
        return (torch.cat([g.reshape(-1) for g in flat]) * 0).sum()

    def finalize(self, ok: bool, grads_finite: bool = True) -> None:
        pending, self._pending = self._pending, None
        if not ok:
            self.optimizer.zero_grad(set_to_none=True)
            return
        if pending is None:
            return
        update, n = pending
        if not update:
            return
        if not grads_finite and self.scaler is None:  # skip the update, drop the group
            self.optimizer.zero_grad(set_to_none=True)
            return
        if n > 1:
            with torch.no_grad():
                for group in self.optimizer.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.grad.div_(n)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def eval_step(self, batch: PreparedBatch, args: StepArgs) -> Any:
        if self._inference is None:
            from zpml_core.inference import InferenceConfig

            self._inference = InferenceConfig(
                tau_infer=self.config.tau_infer, tau_train=self.config.tau_train_max
            )
        with torch.inference_mode(), self._autocast():
            outputs = self._model(batch.inputs)
            outputs, batch = self._global(outputs, batch)
            loss = self._loss(outputs, batch, args)
            vec = batch_metrics(loss, outputs, args.tau, xp=self.xp)
            y_n, y_d = lifted_targets(batch.targets, batch.semantic)
            mf = batch.semantic.mask_finite if batch.semantic is not None else None
            sums = strict_sums(outputs, y_n, y_d, inference=self._inference, mask_finite=mf, xp=self.xp)
            return (*vec, *sums)

    def predict(self, inputs: Any) -> Any:
        was = self._model.training
        self._model.eval()
        try:
            with torch.inference_mode(), self._autocast():
                return self._model(inputs)
        finally:
            self._model.train(was)

    def to_host(self, vec: Any) -> list[float]:
        return [v.item() if isinstance(v, torch.Tensor) else v for v in vec]

    def state_note(self) -> str:
        notes = []
        with torch.no_grad():
            if not all(bool(torch.isfinite(p).all()) for p in self._model.parameters()):
                notes.append("some parameters were already not finite before this step")
        if next(self._model.buffers(), None) is not None:
            notes.append(
                "module buffers that the forward pass updates in place (e.g. BatchNorm "
                "running statistics) are not rolled back"
            )
        return "; ".join(notes)

    # -- mode, randomness, schedules ----------------------------------------------------
    def set_training(self, mode: bool) -> None:
        self._model.train(mode)

    def begin_fit(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def scheduler_step(self, metric: float | None = None) -> None:
        s = self.scheduler
        if s is None:
            return
        if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if metric is None:
                import warnings

                warnings.warn(
                    "ReduceLROnPlateau needs a metric; use scheduler_cadence="
                    "'per_validation_metric' (no step taken)",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return
            s.step(metric)
        else:
            s.step()

    def optimizer_lrs(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def bottom_capability(self, tau_infer: float) -> str | None:
        if self._bottom_capability is False:
            cap = None
            for m in self._model.modules():
                fn = getattr(m, "bottom_capability", None)
                if callable(fn):
                    c = fn(tau_infer)
                    if c not in ("reachable", "unreachable_by_construction"):
                        raise ValueError(
                            f"{type(m).__name__}.bottom_capability returned {c!r}; expected "
                            "'reachable' or 'unreachable_by_construction'"
                        )
                    if c == "unreachable_by_construction":
                        cap = c
                        break
                    cap = c
            self._bottom_capability = cap
        return self._bottom_capability  # type: ignore[return-value]

    # -- checkpoints --------------------------------------------------------------------
    def framework_version(self) -> str:
        return str(torch.__version__)

    @property
    def model(self) -> nn.Module:
        return self._model

    @property
    def params(self) -> dict[str, Any]:
        return self._model.state_dict()


class TorchTraining(TrainingSupport):
    """``TorchBackend.training()``: ``nn.Module`` + ``torch.optim.Optimizer``."""

    name = "torch"

    def claims(self, model: Any, optimizer: Any) -> bool:
        return isinstance(model, nn.Module) and isinstance(optimizer, torch.optim.Optimizer)

    def engine(self, model: Any, optimizer: Any, loss: Any, config: Any, *, scheduler: Any = None) -> TorchEngine:
        return TorchEngine(model, optimizer, loss, config, scheduler)

    def read_metadata(self, path: str) -> dict[str, Any]:
        return read_metadata(os.fspath(path))


def weighted_dataloader(dataset: Any, weights: Any, config: Any) -> Any:
    """A ``DataLoader`` drawing ``len(dataset)`` samples with replacement by ``weights``."""
    from torch.utils.data import DataLoader, WeightedRandomSampler

    w: Any = torch.as_tensor(weights, dtype=torch.double)
    gen = None
    if getattr(config, "seed", None) is not None:
        gen = torch.Generator().manual_seed(int(config.seed))
    sampler = WeightedRandomSampler(w, num_samples=len(dataset), replacement=True, generator=gen)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.num_workers,
        drop_last=config.drop_last,
        pin_memory=config.pin_memory,
    )
