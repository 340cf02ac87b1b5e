"""JAX training step for ``SCMTrainer`` and the demo model.

How to pass a JAX model::

    trainer = SCMTrainer(model=(apply_fn, params), optimizer=optax.adam(1e-3),
                         loss_fn=..., train_loader=..., config=...)

``apply_fn(params, x) -> (P, Q)`` must be pure; ``params`` is any pytree of arrays
(numpy leaves are converted). ``FunctionalModel(apply_fn, params)`` is the same thing
with names; an equinox module works too when equinox is installed (its inexact-array
leaves are trained, the rest is static; it must accept a batch). Trained parameters are
``trainer.params``; ``trainer.model`` returns ``(apply_fn, params)`` (or the equinox
module).

The train step is ONE ``jax.jit`` function: ``value_and_grad`` of the loss, the optax
update on the gradients averaged over the accumulation group, and the metrics vector.
The sampled ``tau`` (and epoch, step, loss weights) are traced arguments, so a new
threshold never recompiles; only ``update`` (accumulate vs apply) is static. Gradient
accumulation keeps the summed gradients as a pytree between calls.

Mixed precision (``TrainingConfig(mixed_precision=True)``): the forward pass runs with the
floating parameters and inputs cast to ``amp_dtype`` (float16 becomes bfloat16 except on
GPU); the outputs are cast back to the parameter dtype before the loss, gradients flow
to the full-precision master parameters, and the optax update runs in full precision.

Non-finite gradients: the jitted step computes ``finite = all(isfinite(g))`` over the
update's (accumulated, averaged) gradients and selects, per leaf, the old parameters and
optimizer state where it is False — the update is skipped on the device, with no host
sync; ``not finite`` travels back with the metrics (see ``TrainingEngine.train_step``).
The selects are chained (``_jax_step._keep_if``): on the guide's 2×64 head the guarded step
costs ~3 % more than the unguarded one instead of ~1.5x (optax's ``apply_if_finite``
costs more).

Non-finite loss: the trainer reads the metrics of up to ``pipeline_depth`` steps at once
and must then find the state from before the first step whose loss was not finite. The
step carries a device flag for that: a non-finite loss sets it, and while it is set
every step (that one included) leaves parameters, optimizer state and accumulated
gradients as they were — the state after the in-flight steps *is* the state before the
failing one, and no earlier state is kept on the host (keeping up to 32 copies alive
cost ~10 % of a small step).

Data-parallel over several devices (``jax.sharding``): pass a ``Mesh`` as
``TrainingConfig(device=mesh)`` (or parameters already replicated on a multi-device
mesh, ``jax.device_put(params, NamedSharding(mesh, PartitionSpec()))``). Parameters,
optimizer state and accumulated gradients are then replicated on every device of the
mesh (a sharding constraint inside the step keeps them so), and every batch array is
split along its first axis over all the mesh's devices (a batch whose size the device
count does not divide is replicated instead: the same values, not in parallel). The
step is still the one jitted function of the global batch; XLA's partitioner runs each
device's share of the forward and backward pass and inserts the all-reduces of the
gradients, the loss and the metric sums/counts/minimum, so the loss, the metrics and
the update are those of the global batch on one device (up to the order of floating
point sums).

Checkpoints: an ``.npz`` holding every parameter and optimizer-state leaf plus the JSON
metadata as bytes (with each leaf's pytree key path), sealed and written atomically by
:mod:`zpml_core.training.checkpoint`, read with ``numpy.load(allow_pickle=False)`` after
the seal is verified. The pytree structure comes from the live trainer: leaf count, key
paths, shapes and dtypes must match (``CheckpointError`` otherwise) before anything is
replaced.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from zpml_backends._jax_checkpoint import JaxCheckpointMixin, read_metadata
from zpml_backends._jax_step import JaxStepMixin
from zpml_backends._jax_step import _cast_floating as _cast_floating
from zpml_backends._jax_step import _keep_if as _keep_if
from zpml_backends._jax_step import _pack as _pack
from zpml_backends._jax_step import _policy_context as _policy_context

from zpml_core.training.engine import (
    PreparedBatch,
    StepArgs,
    TrainingEngine,
    TrainingSupport,
)

__all__ = [
    "FunctionalModel",
    "JaxEngine",
    "JaxTraining",
    "demo_model",
    "rational_head_apply",
    "rational_head_init",
    "read_metadata",
]


_DEEP_PIPELINE_ELEMENTS = 4_000_000


class FunctionalModel(NamedTuple):
    """A pure model: ``apply(params, x) -> outputs`` and its parameter pytree."""

    apply: Callable[..., Any]
    params: Any


# ---------------------------------------------------------------------------------------
# the guide's RationalHead as a pure function


def rational_head_init(
    seed: int | Any, input_dim: int, output_dim: int = 1, *, dtype: Any = None
) -> dict[str, Any]:
    """Parameters of the guide's RationalHead (2×64 ReLU MLP, head ``output_dim + 1``
    wide, or 2 for ``output_dim=1``), initialised like ``torch.nn.Linear``:
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights and biases. ``seed`` is an int or
    a ``jax.random`` key. Weights are stored ``(in, out)``."""
    key = jax.random.PRNGKey(seed) if isinstance(seed, int) else seed
    dt = jnp.float32 if dtype is None else dtype
    sizes = [(input_dim, 64), (64, 64), (64, 2 if output_dim == 1 else output_dim + 1)]
    layers = []
    for fan_in, fan_out in sizes:
        key, kw, kb = jax.random.split(key, 3)
        bound = 1.0 / np.sqrt(fan_in)
        layers.append(
            {
                "w": jax.random.uniform(kw, (fan_in, fan_out), dt, -bound, bound),
                "b": jax.random.uniform(kb, (fan_out,), dt, -bound, bound),
            }
        )
    return {"backbone": layers[:2], "head": layers[2]}


def rational_head_apply(params: Mapping[str, Any], x: Any) -> tuple[Any, Any]:
    """Forward pass of :func:`rational_head_init` parameters: ``(P, Q)``."""
    h = x
    for layer in params["backbone"]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    out = h @ params["head"]["w"] + params["head"]["b"]
    if out.shape[-1] == 2:
        return out[..., 0], out[..., 1]
    return out[..., :-1], out[..., -1]


def demo_model(params: Mapping[str, Any], input_dim: int, output_dim: int, lr: float) -> tuple[Any, Any]:
    """``((rational_head_apply, params), optax.adam(lr))`` from numpy parameters."""
    import optax

    p = jax.tree_util.tree_map(jnp.asarray, dict(params))
    return (rational_head_apply, p), optax.adam(lr)


# ---------------------------------------------------------------------------------------
# model detection


def _is_optax(optimizer: Any) -> bool:
    return callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))


def _is_eqx_module(model: Any) -> bool:
    eqx = sys.modules.get("equinox")
    return eqx is not None and isinstance(model, eqx.Module)


def _split_model(model: Any) -> tuple[Callable[..., Any], Any, Any]:
    """``(apply, params, eqx_static)`` of a supported model, or raise ``TypeError``."""
    if _is_eqx_module(model):
        import equinox as eqx

        params, static = eqx.partition(model, eqx.is_inexact_array)

        def apply(p: Any, x: Any) -> Any:
            return eqx.combine(p, static)(x)

        return apply, params, static
    if isinstance(model, (tuple, list)) and len(model) == 2 and callable(model[0]):
        apply, params = model[0], model[1]
        leaves = jax.tree_util.tree_leaves(params)
        if not leaves or not all(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves):
            raise TypeError("JAX params must be a non-empty pytree of arrays")
        return apply, params, None
    raise TypeError(
        "a JAX model is (apply_fn, params), a FunctionalModel or an equinox module, got "
        f"{type(model).__name__}"
    )


class JaxEngine(JaxStepMixin, JaxCheckpointMixin, TrainingEngine):
    name = "jax"
    #: up to ``pipeline_depth`` steps run ahead of the host; once that many are in
    #: flight, the metrics of the older half are read back in one transfer while the
    #: newer half keeps the device busy (and at epoch end, all): a per-step host sync
    #: costs ~30 % of a small jitted step on CPU. The depth is 64 for models whose
    #: parameters + optimizer state have at most ``_DEEP_PIPELINE_ELEMENTS`` elements
    #: and 2 for larger ones (whose steps are long enough that the sync does not
    #: matter, and a non-finite loss stops training sooner)
    pipeline_depth = 2

    def __init__(self, model: Any, optimizer: Any, loss: Any, config: Any, scheduler: Any = None) -> None:
        if scheduler is not None:
            raise ValueError(
                "scheduler= is for torch optimizers; with optax put the schedule in the "
                "optimizer (e.g. optax.adam(optax.cosine_decay_schedule(...)))"
            )
        self.xp = jnp
        self.config = config
        self.loss = loss
        self.optimizer = optimizer
        self.apply, params, self._eqx_static = _split_model(model)
        #: data-parallel: the ``jax.sharding.Mesh`` whose devices share each batch (see
        #: the module docstring), else None
        self.mesh = _data_parallel_mesh(config.device, params)
        self.device = None if self.mesh is not None else self._device(config.device)
        #: True while ``_params``/``_opt_state`` are arrays only the engine holds (outputs
        #: of its own steps nobody has read since): the fast step may then donate them
        self._owned = False
        #: the concrete JAX array type ``step_input`` passes through (found on first use)
        self._as_is: type | None = None
        self._params = jax.tree_util.tree_map(self.place_state, params)
        self._opt_state = jax.tree_util.tree_map(self.place_state, optimizer.init(self._params))
        self.acc: Any = None
        # set on the device by a non-finite loss; while set, steps change nothing
        self._bad = self._no_bad = self.place_state(np.asarray(False))
        size = sum(int(np.size(a)) for a in jax.tree_util.tree_leaves((self._params, self._opt_state)))
        self.pipeline_depth = 64 if size <= _DEEP_PIPELINE_ELEMENTS else 2
        amp_name = config.amp_dtype
        platform = (self.device.platform if self.device is not None
                    else self.mesh.devices.flat[0].platform if self.mesh is not None
                    else jax.default_backend())
        self._cpu = platform == "cpu"
        if amp_name == "float16" and platform != "gpu":
            amp_name = "bfloat16"
        self.amp_dtype = getattr(jnp, amp_name) if config.amp_enabled else None
        self._train_jit = jax.jit(self._train, static_argnames=("update",))
        # the common step (an update on one batch: no accumulation, no semantic targets,
        # the loss reads only tau): the same traced function with positional arguments,
        # parameters and optimizer state donated (see ``train_step``)
        self._plain_jit = jax.jit(self._train_plain, donate_argnums=(0, 1))
        self._copy_jit = jax.jit(_copy_tree)
        self._plain_ok = True
        self._eval_jit = jax.jit(self._eval)
        self._tau_static = False
        self._train_static_jit = jax.jit(self._train, static_argnames=("update", "tau"))
        self._eval_static_jit = jax.jit(self._eval, static_argnames=("tau",))
        self._predict_jit = jax.jit(self._forward)
        self._inference: Any = None
        self._tau_cache: tuple[float, Any] | None = None
        accepts: frozenset[str] = getattr(loss, "accepts", frozenset())
        self._wants_epoch = "epoch" in accepts
        self._wants_step = "global_step" in accepts
        self._wants_weights = "loss_weights" in accepts
        if self._wants_epoch or self._wants_step:
            self._plain_ok = False

    # the trained state; reading or replacing it from outside ends the engine's sole
    # ownership (the next fast step then works on a copy: see ``train_step``)
    @property
    def params(self) -> Any:
        """The current parameter pytree."""
        self._owned = False
        return self._params

    @params.setter
    def params(self, value: Any) -> None:
        self._owned = False
        self._params = value

    @property
    def opt_state(self) -> Any:
        """The current optax state."""
        self._owned = False
        return self._opt_state

    @opt_state.setter
    def opt_state(self, value: Any) -> None:
        self._owned = False
        self._opt_state = value

    @property
    def resolved_device(self) -> Any:
        """The configured device (the ``Mesh`` when data-parallel), else JAX's default
        device."""
        if self.mesh is not None:
            return self.mesh
        return self.device if self.device is not None else jax.devices()[0]

    def place_state(self, a: Any) -> Any:
        """A parameter / optimizer-state leaf on the engine's device: replicated over
        the mesh when data-parallel."""
        if self.mesh is None:
            return self.to_framework(a)
        from jax.sharding import NamedSharding, PartitionSpec

        if isinstance(a, (np.ndarray, jax.Array)) or np.isscalar(a):
            return jax.device_put(a, NamedSharding(self.mesh, PartitionSpec()))
        return a

    @staticmethod
    def _device(device: Any) -> Any:
        if device is None:
            return None
        from jax.sharding import Mesh

        if isinstance(device, Mesh):  # (a one-device mesh: that device)
            return device.devices.flat[0]
        if isinstance(device, str):
            kind, _, idx = device.partition(":")
            return jax.devices(kind)[int(idx) if idx else 0]
        return device

    # -- data ---------------------------------------------------------------------------
    def to_framework(self, a: Any) -> Any:
        if a is None or isinstance(a, (str, bytes)):
            return a
        if self.mesh is not None:
            return self._shard_batch(a)
        if isinstance(a, jax.Array):
            return a if self.device is None else jax.device_put(a, self.device)
        if type(a).__module__.partition(".")[0] == "torch":
            a = a.detach().cpu().numpy()
        if isinstance(a, np.ndarray) or np.isscalar(a):
            arr = np.asarray(a)
            if arr.dtype in _WIDE and not jax.config.read("jax_enable_x64"):
                _warn_x32(arr.dtype)
            return jnp.asarray(arr) if self.device is None else jax.device_put(arr, self.device)
        return a

    def step_input(self, a: Any) -> Any:
        """A batch array of a plain ``(inputs, targets)`` batch, as the jitted steps take
        it: without a device or mesh, a JAX array as is, and a numpy array of a real or
        bool dtype that needs no 32-bit conversion also as is (the jitted call transfers
        it: ~1.5 µs, against ~18 µs for ``jnp.asarray`` first — the same array on the
        device either way); anything else as :meth:`to_framework`."""
        kind = type(a)
        if kind is self._as_is:
            return a
        if self.device is None and self.mesh is None:
            if kind is np.ndarray:
                dt = a.dtype
                if dt.kind in "fiub" and dt.isnative and (
                    dt not in _WIDE or jax.config.read("jax_enable_x64")
                ):
                    return a
            elif isinstance(a, jax.Array):
                self._as_is = kind  # (to_framework returns these as they are)
                return a
        return self.to_framework(a)

    def _shard_batch(self, a: Any) -> Any:
        """A batch array split along its first axis over the mesh's devices (all mesh
        axes); replicated if that axis does not divide evenly (a short last batch: each
        device then computes all of it — the same values, not in parallel)."""
        from jax.sharding import NamedSharding, PartitionSpec

        mesh = self.mesh
        assert mesh is not None
        if type(a).__module__.partition(".")[0] == "torch":
            a = a.detach().cpu().numpy()
        if not isinstance(a, (np.ndarray, jax.Array)):
            if not np.isscalar(a):
                return a
            a = np.asarray(a)
        if isinstance(a, np.ndarray) and a.dtype in _WIDE and not jax.config.read("jax_enable_x64"):
            _warn_x32(a.dtype)
        if a.ndim and a.shape[0] % mesh.size == 0:
            spec = PartitionSpec(tuple(mesh.axis_names))
        else:
            spec = PartitionSpec()
        return jax.device_put(a, NamedSharding(mesh, spec))

    # -- steps (the traced functions and their dispatch: _jax_step.JaxStepMixin) -------
    def train_step(self, batch: PreparedBatch, args: StepArgs, *, update: bool, group_size: int) -> Any:
        if (
            update
            and group_size == 1
            and self._plain_ok
            and self.acc is None
            and batch.semantic is None
            and not self._tau_static
            and self.config.gradient_policy is None
            and (args.loss_weights is None or not self._wants_weights)
        ):
            # the hot path: fewer arguments than the general dispatch below, and the
            # state's buffers are donated to the step (reused for the new state instead
            # of allocating and freeing ~3 per parameter leaf: ~8 % of a small step).
            # Only arrays nobody else can hold are donated: the outputs of this engine's
            # steps that were not read since; anything else is copied once first
            if not self._owned:
                self._params, self._opt_state = self._copy_jit((self._params, self._opt_state))
                self._owned = True
            try:
                self._params, self._opt_state, self._bad, vec = self._plain_jit(
                    self._params, self._opt_state, self._bad, batch.inputs, batch.targets,
                    self._tau_arg(args.tau),
                )
                return vec
            except (TypeError, jax.errors.ConcretizationTypeError):
                pass  # a loss that needs a Python-float tau (the general path below
                # switches to the tau-static step), or an error it raises as before
        self._params, self._opt_state, self.acc, self._bad, vec = self._dispatch(
            self._train_jit,
            self._train_static_jit,
            self._params,
            self._opt_state,
            self.acc,
            self._bad,
            batch.inputs,
            batch.targets,
            batch.semantic,
            tau=args.tau,
            # only what the loss reads becomes a (traced) argument: each Python scalar
            # costs a host→device conversion per call
            epoch=args.epoch if self._wants_epoch else None,
            step=args.global_step if self._wants_step else None,
            weights=self._weights(args.loss_weights),
            n=float(group_size) if group_size > 1 else None,
            update=update,
        )
        return vec

    def finalize(self, ok: bool, grads_finite: bool = True) -> None:
        # a non-finite-gradient update was already skipped on the device; after a
        # non-finite loss the state already is the one from before that step (the
        # flag froze it), the accumulated gradients of its group are dropped
        if not ok:
            self.reset_pipeline()

    def reset_pipeline(self) -> None:
        """Forget accumulated gradients and the non-finite-loss flag (start of a fit,
        after a failed step, after loading a checkpoint)."""
        self.acc = None
        self._bad = self._no_bad

    def state_note(self) -> str:
        leaves = jax.tree_util.tree_leaves(self._params)
        if not all(bool(jnp.all(jnp.isfinite(a))) for a in leaves):
            return "some parameters were already not finite before this step"
        return ""

    def begin_fit(self) -> None:
        self.reset_pipeline()

    def eval_step(self, batch: PreparedBatch, args: StepArgs) -> Any:
        if self._inference is None:
            from zpml_core.inference import InferenceConfig

            self._inference = InferenceConfig(
                tau_infer=self.config.tau_infer, tau_train=self.config.tau_train_max
            )
        return self._dispatch(
            self._eval_jit,
            self._eval_static_jit,
            self._params,
            batch.inputs,
            batch.targets,
            batch.semantic,
            tau=args.tau,
            epoch=args.epoch,
            step=args.global_step,
            weights=self._weights(args.loss_weights),
        )

    def predict(self, inputs: Any) -> Any:
        return self._predict_jit(self._params, inputs)

    def to_host(self, vec: Any) -> list[float]:
        return np.asarray(vec).tolist()

    def to_host_many(self, vecs: list[Any]) -> list[list[float]]:
        if self._cpu:
            # one array at a time, oldest first: each waits only for its own step (a
            # jitted stack would queue behind every step in flight), ~1.4 µs a vector
            # against ~9 µs through device_get
            return [np.asarray(v).tolist() for v in vecs]
        return [np.asarray(v).tolist() for v in jax.device_get(vecs)]

    def optimizer_lrs(self) -> list[float]:
        hp = getattr(self._opt_state, "hyperparams", None)
        if isinstance(hp, Mapping) and "learning_rate" in hp:
            return [float(hp["learning_rate"])]
        return []

    # -- checkpoints --------------------------------------------------------------------
    def framework_version(self) -> str:
        import optax

        return f"jax {jax.__version__}, optax {optax.__version__}"

    @property
    def model(self) -> Any:
        if self._eqx_static is not None:
            import equinox as eqx

            return eqx.combine(self.params, self._eqx_static)
        return FunctionalModel(self.apply, self.params)


def _copy_tree(tree: Any) -> Any:
    """A copy of every array of ``tree`` in new buffers (traced: one call copies all)."""
    return jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), tree)


def _data_parallel_mesh(device: Any, params: Any) -> Any:
    """The mesh of data-parallel training: ``TrainingConfig(device=mesh)``, or the
    multi-device mesh the parameters are already replicated on; None otherwise."""
    from jax.sharding import Mesh, NamedSharding

    if isinstance(device, Mesh):
        return device if device.size > 1 else None
    if device is not None:
        return None
    meshes = set()
    for leaf in jax.tree_util.tree_leaves(params):
        sh = getattr(leaf, "sharding", None)
        if not isinstance(leaf, jax.Array) or not isinstance(sh, NamedSharding):
            return None
        if not sh.is_fully_replicated:  # (model-parallel: the user's layout stands)
            return None
        meshes.add(sh.mesh)
    if len(meshes) != 1:
        return None
    mesh = meshes.pop()
    return mesh if mesh.size > 1 else None


class JaxTraining(TrainingSupport):
    """``JaxBackend.training()``: ``(apply_fn, params)`` / equinox + optax."""

    name = "jax"

    def claims(self, model: Any, optimizer: Any) -> bool:
        if not _is_optax(optimizer):
            return False
        try:
            _split_model(model)
        except TypeError:
            return False
        return True

    def engine(self, model: Any, optimizer: Any, loss: Any, config: Any, *, scheduler: Any = None) -> JaxEngine:
        return JaxEngine(model, optimizer, loss, config, scheduler)

    def read_metadata(self, path: str) -> dict[str, Any]:
        return read_metadata(path)


class X32Warning(UserWarning):
    """JAX runs in 32-bit mode: 64-bit training data is converted to 32 bits."""


_WIDE = frozenset(np.dtype(t) for t in (np.float64, np.complex128, np.int64, np.uint64))
_X32_WARNED: list[bool] = []


def _warn_x32(dtype: Any) -> None:
    """Warn once per process that JAX (``jax_enable_x64`` off) turns ``dtype`` data into
    its 32-bit counterpart — silently, as ``jnp.asarray`` does."""
    if _X32_WARNED:
        return
    _X32_WARNED.append(True)
    warnings.warn(
        f"JAX runs in 32-bit mode (jax_enable_x64 is off): the {dtype} training data "
        "becomes 32-bit. Enable 64-bit with jax.config.update('jax_enable_x64', True) "
        "before creating any array, or pass 32-bit data to silence this.",
        X32Warning, stacklevel=3,
    )
