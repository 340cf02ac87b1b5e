"""The traced step functions of the JAX training engine and how they are called.

:class:`JaxStepMixin` holds what ``JaxEngine`` jits: the forward pass (with the
mixed-precision casts), the objective, the train step — ``value_and_grad``, gradient
accumulation, the optax update kept only where the loss and the gradients are finite
(:func:`_keep_if`), the packed metrics vector — and the eval step with the strict
inference sums; and the dispatch that calls the jitted functions with ``tau`` traced,
falling back to a ``tau``-static variant for a loss that needs a Python-float threshold.
``JaxEngine`` (:mod:`zpml_backends.jax_training`) builds the jitted functions and
holds the state they update.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from zpml_core.training.engine import lifted_targets
from zpml_core.training.metrics import batch_metrics, strict_sums

__all__ = ["JaxStepMixin"]

_NULL = contextlib.nullcontext()


def _policy_context(policy: Any) -> Any:
    if policy is None:
        return _NULL
    from zpml_core.autodiff.policies import gradient_policy

    return gradient_policy(policy)


def _pack(values: tuple[Any, ...]) -> Any:
    """Metrics tuple → one 1-d array (one device→host transfer per step instead of one
    per value); float64 when x64 is enabled, float32 otherwise."""
    dt = jnp.result_type(float)
    return jnp.stack([jnp.asarray(v, dtype=dt) for v in values])


def _keep_if(finite: Any, new: Any, old: Any) -> Any:
    """``where(finite, new, old)`` leaf by leaf (same pytree structure), in a chain.

    Every selected leaf depends on the one all-finite predicate, so without more they
    would all become ready at the same moment — and XLA:CPU's runtime hands a ready set
    of more than 8 kernels to worker threads, which costs more than the small updates
    themselves (on the guide's 2×64 head the guarded step took ~1.5x the unguarded
    one on a loaded 2-core CPU). So the predicate of leaf ``k + 1`` also reads the selected leaf ``k``:
    ``finite & ((x == x) | (x != x))`` with ``x`` its first element — always ``finite``
    (no value of ``x`` changes it, NaN included), but a data dependency, and the
    updates run one after another as in the unguarded step (each predicate fuses into
    its select).
    """
    new_leaves, treedef = jax.tree_util.tree_flatten(new)
    old_leaves = jax.tree_util.tree_leaves(old)  # the same structure
    out = []
    x = None
    for a, b in zip(new_leaves, old_leaves, strict=True):
        f = finite if x is None else finite & ((x == x) | (x != x))
        r = jnp.where(f, a, b)
        out.append(r)
        if jnp.size(r):
            x = jnp.ravel(r)[0]
            if not jnp.issubdtype(x.dtype, jnp.inexact):  # x == x is folded for integers
                x = x.astype(jnp.float32)
    return jax.tree_util.tree_unflatten(treedef, out)


def _cast_floating(tree: Any, dtype: Any) -> Any:
    def cast(a: Any) -> Any:
        if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.floating):
            return a.astype(dtype)
        return a

    return jax.tree_util.tree_map(cast, tree)


class JaxStepMixin:
    """Traced step functions and their dispatch of ``JaxEngine`` (which defines the
    attributes below)."""

    apply: Callable[..., Any]
    amp_dtype: Any
    loss: Any
    optimizer: Any
    config: Any
    mesh: Any
    _inference: Any
    _tau_static: bool
    _tau_cache: tuple[float, Any] | None

    def _replicate(self, tree: Any) -> Any:
        """Inside the step: keep ``tree`` (parameters, optimizer state, gradient sums)
        replicated over the mesh (a no-op on one device)."""
        if self.mesh is None or tree is None:
            return tree
        from jax.sharding import NamedSharding, PartitionSpec

        return jax.lax.with_sharding_constraint(tree, NamedSharding(self.mesh, PartitionSpec()))


    def _forward(self, params: Any, inputs: Any) -> Any:
        if self.amp_dtype is None:
            return self.apply(params, inputs)
        out = self.apply(_cast_floating(params, self.amp_dtype), _cast_floating(inputs, self.amp_dtype))
        ref = jax.tree_util.tree_leaves(params)[0].dtype
        return _cast_floating(out, ref)


    def _objective(self, params: Any, inputs: Any, targets: Any, semantic: Any, tau: Any,
                   epoch: Any, step: Any, weights: Any) -> tuple[Any, Any]:
        outputs = self._forward(params, inputs)
        y_n, y_d = lifted_targets(targets, semantic)
        loss = self.loss(
            outputs,
            y_n,
            y_d,
            tau=tau,
            inputs=inputs,
            targets=targets,
            epoch=epoch,
            global_step=step,
            loss_weights=weights,
            semantic_targets=semantic,
        )
        return loss, outputs


    def _train(self, params: Any, opt_state: Any, acc: Any, bad: Any, inputs: Any, targets: Any,
               semantic: Any, tau: Any, epoch: Any, step: Any, weights: Any, n: Any, *,
               update: bool) -> Any:
        (loss, outputs), grads = jax.value_and_grad(self._objective, has_aux=True)(
            params, inputs, targets, semantic, tau, epoch, step, weights
        )
        metrics = batch_metrics(loss, jax.lax.stop_gradient(outputs), tau, xp=jnp)
        # sticky: from the first non-finite loss on, nothing changes (see the module doc)
        bad = bad | ~jnp.all(jnp.isfinite(loss))
        if acc is not None:
            grads = jax.tree_util.tree_map(jnp.add, acc, grads)
        grads = self._replicate(grads)
        if not update:  # (after a non-finite loss the group is dropped: finalize)
            return params, opt_state, grads, bad, _pack((*metrics, 0.0))
        if n is not None:  # average over the accumulation group
            grads = jax.tree_util.tree_map(lambda g: g / n, grads)
        import optax

        # one fused concatenate + isfinite + all (a per-leaf all() costs a kernel each)
        flat = jnp.concatenate([jnp.ravel(g) for g in jax.tree_util.tree_leaves(grads)])
        finite = jnp.all(jnp.isfinite(flat))
        updates, new_state = self.optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)

        params, opt_state = _keep_if(finite & ~bad, (new_params, new_state), (params, opt_state))
        params, opt_state = self._replicate((params, opt_state))
        return params, opt_state, None, bad, _pack((*metrics, ~finite))


    def _train_plain(self, params: Any, opt_state: Any, bad: Any, inputs: Any, targets: Any,
                     tau: Any) -> Any:
        """:meth:`_train` of one batch with an update, no accumulated gradients, no
        semantic targets and a loss that reads only ``tau`` (``JaxEngine.train_step``'s
        fast path: fewer arguments to flatten per call)."""
        params, opt_state, _, bad, vec = self._train(
            params, opt_state, None, bad, inputs, targets, None, tau, None, None, None, None,
            update=True,
        )
        return params, opt_state, bad, vec


    def _eval(self, params: Any, inputs: Any, targets: Any, semantic: Any, tau: Any, epoch: Any,
              step: Any, weights: Any) -> Any:
        loss, outputs = self._objective(params, inputs, targets, semantic, tau, epoch, step, weights)
        vec = batch_metrics(loss, outputs, tau, xp=jnp)
        y_n, y_d = lifted_targets(targets, semantic)
        mf = semantic.mask_finite if semantic is not None else None
        sums = strict_sums(outputs, y_n, y_d, inference=self._inference, mask_finite=mf, xp=jnp)
        return _pack((*vec, *sums))


    def _weights(self, weights: Mapping[str, float] | None) -> Any:
        if weights is None or "loss_weights" not in self.loss.accepts:
            return None
        return dict(weights)


    def _tau_arg(self, tau: float) -> Any:
        """A constant threshold is transferred once; a sampled one per step."""
        cached = self._tau_cache
        if cached is not None and cached[0] == tau:
            return cached[1]
        if self.config.tau_train_min == self.config.tau_train_max:
            arr = jnp.asarray(tau)
            self._tau_cache = (tau, arr)
            return arr
        return tau


    def _dispatch(self, traced: Callable[..., Any], static: Callable[..., Any], *args: Any,
                  tau: float, **kw: Any) -> Any:
        """Call the jitted step with ``tau`` traced; if the loss needs a Python-float
        threshold (it raised on the tracer), fall back to a ``tau``-static variant."""
        with _policy_context(self.config.gradient_policy):
            if not self._tau_static:
                try:
                    return traced(*args, tau=self._tau_arg(tau), **kw)
                except (TypeError, jax.errors.ConcretizationTypeError) as exc:
                    traced_tau = isinstance(exc, jax.errors.ConcretizationTypeError) or (
                        "tracer" in str(exc).lower()
                    )
                    if not traced_tau:
                        raise
                    self._use_static_tau(exc)
            return static(*args, tau=tau, **kw)


    def _use_static_tau(self, exc: Exception) -> None:
        self._tau_static = True
        if self.config.tau_train_min != self.config.tau_train_max:
            warnings.warn(
                "the loss needs tau as a Python float (it rejected a traced threshold: "
                f"{str(exc).splitlines()[0]}); the JAX step now recompiles for every distinct tau. Use a loss "
                "that accepts array thresholds, or tau_train_min == tau_train_max.",
                UserWarning,
                stacklevel=5,
            )

