"""Gradient policies: what derivatives do on bottom (⊥) paths.

=============  ==========  ===================  =========================================
policy         value       gradient on ⊥ path   gradient on a non-⊥ path
=============  ==========  ===================  =========================================
CLAMP          ``clamp``   0                    real: clipped to [-1, 1]; complex: unchanged
PROJECT        ``project`` 0                    unchanged
REJECT         ``reject``  0                    0
PASSTHROUGH    ``pass``    unchanged            unchanged
=============  ==========  ===================  =========================================

Resolution (:func:`get_policy`): the innermost active ``with
gradient_policy(p):`` context, else the registry entry of the layer name, else CLAMP.
Call sites use ``explicit_policy or get_policy(name)``, so an explicit argument wins.

When policies are read
----------------------
* Every SCM op, :func:`zpml_core.projective.decode` and
  :func:`zpml_core.inference.strict_inference` gate their output with the policy that is
  active **when the forward pass runs** (layer names ``"scm_ops"``, ``"decode"``,
  ``"strict_inference"``; none is registered by default, so CLAMP applies unless a
  context or :func:`register_policy` says otherwise). The reference applied no policy in
  these functions; zpml_core does — a documented deviation.
* Eager PyTorch additionally honours a context that is active while ``.backward()``
  runs: it overrides the forward-time policy, so
  ``with gradient_policy(GradientPolicy.PROJECT): loss.backward()`` works as written.
* JAX: the context around the ``jax.grad`` / ``jax.jvp`` / ``jax.jit`` call applies
  (the derivative is traced there).
* Forward mode (``jax.jvp``/``jacfwd``, ``torch.func.jvp``/``jacfwd``, ``hessian``)
  applies the same policies as a linear tangent map (``rules.tangent_transform``):
  PROJECT and CLAMP zero the tangent at ⊥, REJECT everywhere; CLAMP does not clip
  tangents (clipping is defined on cotangents, and a tangent map must be linear).

Contexts under ``jax.jit`` and ``torch.compile`` (no stale trace)
-----------------------------------------------------------------
The context is a :class:`contextvars.ContextVar` (nestable, inherited by asyncio tasks
created inside it, not by new threads). Traced code cannot read a ContextVar safely
(Dynamo graph-breaks on ``ContextVar.get``; ``jax.jit`` would bake the value into a
cached trace), so the context manager also keeps a per-thread *mirror* of the active
override, and traced code resolves policies from the mirror (:func:`resolve_policy` with
``traced=True``):

* ``torch.compile`` guards on the mirror attribute and on the registry entries it reads,
  so entering another policy (or registering one) recompiles instead of reusing a graph.
* JAX adapters subscribe through :func:`add_state_listener`; the jax adapter keeps the
  mirror and the registry in ``jax.make_user_context`` values, which are part of every
  ``jax.jit`` cache key, so a changed policy retraces.

Limitation: the mirror is per thread, not per asyncio task. Traced code running in
several interleaved asyncio tasks of one thread, each inside a *different* policy
context, may see another task's policy. Eager code always reads the ContextVar.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any

__all__ = [
    "GradientPolicy",
    "GradientPolicyConfig",
    "add_state_listener",
    "apply_policy",
    "get_policy",
    "gradient_policy",
    "policy_registry_snapshot",
    "register_policy",
    "resolve_policy",
    "restore_policy_registry",
]


class GradientPolicy(str, Enum):
    """How gradients are treated on bottom paths; the value is the serialised form."""

    CLAMP = "clamp"
    PROJECT = "project"
    REJECT = "reject"
    PASSTHROUGH = "pass"

    def __str__(self) -> str:
        return self.value


_DEFAULT = GradientPolicy.CLAMP
_DEFAULT_REGISTRY: dict[str, GradientPolicy] = {
    "scm_rational": GradientPolicy.PROJECT,
    "scm_norm": GradientPolicy.CLAMP,
    "scm_softmax": GradientPolicy.CLAMP,
    "coverage": GradientPolicy.CLAMP,
    "rejection_loss": GradientPolicy.CLAMP,
    # the fit losses' singular paths (``tau_train=``): unchanged unless a context or a
    # registration says otherwise (zpml_core.autodiff.fit_rules)
    "fit_loss": GradientPolicy.PASSTHROUGH,
}

# Registry: normalised layer name → policy. Replaced atomically, never mutated while
# someone else might iterate it (a new dict per change keeps snapshots cheap).
_REGISTRY: dict[str, GradientPolicy] = dict(_DEFAULT_REGISTRY)

_OVERRIDE: ContextVar[GradientPolicy | None] = ContextVar("zpml_gradient_policy", default=None)


class _Mirror(threading.local):
    """Per-thread copy of the active override, readable by traced code."""

    def __init__(self) -> None:
        # set in __init__ (runs once per thread), so the attribute always lives in the
        # instance dict: Dynamo then guards it by value
        self.override: GradientPolicy | None = None


_MIRROR = _Mirror()
_LISTENERS: list[Callable[[str], None]] = []


def _type_name(obj: object) -> str:
    return type(obj).__name__


def _check_policy(policy: object, name: str = "policy") -> GradientPolicy:
    if not isinstance(policy, GradientPolicy):
        raise TypeError(
            f"{name} must be a GradientPolicy (CLAMP, PROJECT, REJECT, PASSTHROUGH), "
            f"got {_type_name(policy)} {policy!r}"
        )
    return policy


def _normalise_layer(layer: object, name: str = "layer") -> str:
    if not isinstance(layer, str):
        raise TypeError(f"{name} must be a string, got {_type_name(layer)}")
    key = layer.strip().lower()
    if not key:
        raise ValueError(f"{name} must be a non-empty layer name, got {layer!r}")
    return key


def _notify(kind: str) -> None:
    for cb in _LISTENERS:
        cb(kind)


def add_state_listener(callback: Callable[[str], None]) -> None:
    """Subscribe an adapter to policy-state changes (for jit cache keys).

    ``callback(kind)`` runs in the thread that changed the state, after the change;
    ``kind`` is ``"override"`` (a context was entered or left: read
    :func:`traced_override`) or ``"registry"`` (read :func:`registry_items`).
    Idempotent per callback.
    """
    if callback not in _LISTENERS:
        _LISTENERS.append(callback)


def traced_override() -> GradientPolicy | None:
    """The override active in this thread as seen by traced code (the mirror)."""
    return _MIRROR.override


def registry_items() -> tuple[tuple[str, GradientPolicy], ...]:
    """The registry as a sorted, hashable tuple (a jit cache-key component)."""
    return tuple(sorted(_REGISTRY.items()))


# ---------------------------------------------------------------------------------------
# resolution


def get_policy(layer: str | None = None) -> GradientPolicy:
    """The policy in effect: active context, else the registry entry for ``layer``
    (``layer.strip().lower()``), else CLAMP.

    Reads the context variable: call it from eager code. Traced code (inside
    ``jax.jit`` / ``torch.compile``) resolves through :func:`resolve_policy`.
    """
    override = _OVERRIDE.get()
    if override is not None:
        return override
    if layer is None:
        return _DEFAULT
    return _REGISTRY.get(_normalise_layer(layer), _DEFAULT)


def resolve_policy(layer: str | None, *, traced: bool) -> GradientPolicy:
    """:func:`get_policy` for library call sites.

    With ``traced=True`` (the caller's arrays are jit tracers or Dynamo fake tensors)
    the override is read from the per-thread mirror that compiled code is keyed on,
    instead of the ContextVar (which Dynamo cannot trace). ``layer`` must already be a
    normalised name.
    """
    override = _MIRROR.override if traced else _OVERRIDE.get()
    if override is not None:
        return override
    if layer is None:
        return _DEFAULT
    policy = _REGISTRY.get(layer)
    return _DEFAULT if policy is None else policy


def backward_override() -> GradientPolicy | None:
    """The context active right now (read by eager backward passes)."""
    return _OVERRIDE.get()


# ---------------------------------------------------------------------------------------
# context manager


class gradient_policy:
    """Context manager overriding the gradient policy inside its block.

    Nestable and restored on exit (also on exceptions). Re-entrant: one instance may be
    entered again while active. A non-:class:`GradientPolicy` argument (including the
    string ``"clamp"``) raises ``TypeError`` immediately.
    """

    __slots__ = ("_policy", "_saved")

    def __init__(self, policy: GradientPolicy) -> None:
        self._policy = _check_policy(policy)
        self._saved: list[tuple[Token[GradientPolicy | None], GradientPolicy | None]] = []

    @property
    def policy(self) -> GradientPolicy:
        return self._policy

    def __enter__(self) -> GradientPolicy:
        token = _OVERRIDE.set(self._policy)
        self._saved.append((token, _MIRROR.override))
        _MIRROR.override = self._policy
        if _LISTENERS:
            _notify("override")
        return self._policy

    def __exit__(self, *exc: object) -> None:
        token, previous = self._saved.pop()
        _OVERRIDE.reset(token)
        _MIRROR.override = previous
        if _LISTENERS:
            _notify("override")

    def __repr__(self) -> str:
        return f"gradient_policy({self._policy.name})"


# ---------------------------------------------------------------------------------------
# registry


def register_policy(layer: str, policy: GradientPolicy) -> None:
    """Set the default policy of ``layer`` (name normalised with ``strip().lower()``).

    Non-string ``layer`` → ``TypeError``; empty/blank → ``ValueError``; non-enum
    ``policy`` → ``TypeError``. Traced code keyed on the registry recompiles/retraces.
    """
    global _REGISTRY
    key = _normalise_layer(layer)
    p = _check_policy(policy)
    new = dict(_REGISTRY)
    new[key] = p
    _REGISTRY = new
    _notify("registry")


def policy_registry_snapshot() -> Mapping[str, GradientPolicy]:
    """A read-only copy of the registry (pass it to :func:`restore_policy_registry`)."""
    return MappingProxyType(dict(_REGISTRY))


def restore_policy_registry(snapshot: Mapping[str, GradientPolicy]) -> None:
    """Replace the whole registry by ``snapshot`` (validated first, then swapped
    atomically: on error the registry is unchanged)."""
    global _REGISTRY
    if not isinstance(snapshot, Mapping):
        raise TypeError(f"snapshot must be a mapping of layer name → GradientPolicy, got "
                        f"{_type_name(snapshot)}")
    new: dict[str, GradientPolicy] = {}
    for k, v in snapshot.items():
        key = _normalise_layer(k, "snapshot key")
        new[key] = _check_policy(v, f"snapshot[{k!r}]")
    _REGISTRY = new
    _notify("registry")


def _reset_registry() -> None:
    """Restore the built-in defaults (tests)."""
    restore_policy_registry(_DEFAULT_REGISTRY)


# ---------------------------------------------------------------------------------------
# configuration object


@dataclass(frozen=True)
class GradientPolicyConfig:
    """Serialisable policy choice: ``to_dict() → {"policy": "clamp"}``."""

    policy: GradientPolicy = GradientPolicy.CLAMP

    def __post_init__(self) -> None:
        _check_policy(self.policy)

    def to_dict(self) -> dict[str, str]:
        return {"policy": self.policy.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GradientPolicyConfig:
        """Inverse of :meth:`to_dict`. Non-mapping or non-string policy → ``TypeError``;
        unknown policy value → ``ValueError``; a missing key gives the default (CLAMP)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping, got {_type_name(data)}")
        if "policy" not in data:
            return cls()
        value = data["policy"]
        if isinstance(value, GradientPolicy):
            return cls(value)
        if not isinstance(value, str):
            raise TypeError(f"data['policy'] must be a string, got {_type_name(value)}")
        try:
            return cls(GradientPolicy(value))
        except ValueError:
            allowed = ", ".join(repr(p.value) for p in GradientPolicy)
            raise ValueError(
                f"data['policy'] must be one of {allowed}, got {value!r}"
            ) from None


# ---------------------------------------------------------------------------------------
# array helper


def apply_policy(
    gradient: Any, is_bottom: Any, policy: GradientPolicy | None = None
) -> Any:
    """Apply ``policy`` (default :func:`get_policy`) to a gradient array elementwise.

    ``is_bottom`` is a bool (or 0/1 integer) array broadcastable against ``gradient``, or
    a Python bool. CLAMP clips real gradients to [-1, 1] with array ``clip`` semantics,
    so NaN stays NaN; complex gradients are not clipped.
    """
    from zpml_core import _xp
    from zpml_core.autodiff.rules import policy_transform

    p = get_policy() if policy is None else _check_policy(policy)
    xp = _xp.namespace(gradient, is_bottom)
    g = gradient
    if not _xp.is_array(g):
        if isinstance(g, bool) or not isinstance(g, (int, float, complex)):
            raise TypeError(f"gradient must be an array or a number, got {_type_name(g)}")
        g = _xp.as_array(xp, g, None)
    if not _xp.is_floating(xp, g.dtype):
        g = _xp.to_float(xp, g)
    b = _xp.as_mask(xp, is_bottom, "is_bottom", g)
    if b is None:
        raise TypeError("is_bottom must be a boolean array or a bool, got None")
    _xp.broadcast_shape([("gradient", g.shape), ("is_bottom", b.shape)])
    return policy_transform(g, b, p, xp=xp)
