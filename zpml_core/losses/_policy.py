"""The fit losses' ``tau_train=`` argument: which elements are singular paths, and the
gradient policy applied there (:mod:`zpml_core.autodiff.fit_rules`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from zpml_core._registry import Backend, get_backend
from zpml_core._xp import Array, Namespace
from zpml_core.autodiff import fit_rules
from zpml_core.autodiff.policies import GradientPolicy, resolve_policy
from zpml_core.losses import _common, _safe
from zpml_core.losses._safe import Limits

__all__ = ["FIT_LAYER", "FitGate", "FitOperands", "fit_gate", "fit_operands"]

#: the registry layer name of the fit losses' singular paths (registered as PASSTHROUGH)
FIT_LAYER = "fit_loss"


@dataclass(frozen=True)
class FitGate:
    """Static part of the gate (hashable: a static argument of a fused kernel)."""

    policy: GradientPolicy
    tau: float  # the threshold when it is a Python real (else the kernel's array)

    def apply(self, P: Array, Q: Array, tau_array: Array | None, *, xp: Namespace,
              be: Backend, lim: Limits) -> tuple[Array, Array]:
        """``(P, Q)`` broadcast to one shape and gated on ``|Q| < tau`` (``|Q|`` of the
        stopped value; the comparison in the computation dtype). PASSTHROUGH on an
        adapter without a ``pair_gate`` hook changes nothing (not even the graph)."""
        if self.policy is GradientPolicy.PASSTHROUGH and getattr(be, "pair_gate", None) is None:
            return P, Q
        if tuple(P.shape) != tuple(Q.shape):  # (the four operands' shapes were checked)
            P, Q = xp.broadcast_arrays(P, Q)
        tau = self.tau if tau_array is None else xp.astype(tau_array, lim.rdt)
        bottom = xp.abs(be.stop_gradient(Q)) < tau
        return fit_rules.pair_gate(be, P, Q, bottom, self.policy, xp=xp)


def fit_gate(tau_train: object, *, xp: Namespace, be: Backend, q: Array,
             lim: Limits) -> tuple[FitGate | None, Array | None]:
    """``(gate, tau array)`` for a fit loss's ``tau_train`` argument (validated eagerly).

    ``None`` → no gate. A Python real must be finite and ``≥ 0`` (``ValueError``); a 0-d
    real array is used as is (a traced threshold never retraces). Complex operands have
    no gate (``TypeError``): the policies are defined on real pairs. Forward-only
    backends validate and skip the gate (there is no gradient to shape).
    """
    if tau_train is None:
        return None, None
    tau, tau_a = _common.threshold_or_array("tau_train", tau_train, xp=xp, like=q)
    if _common.is_complex(xp, q.dtype):
        raise TypeError("tau_train (gradient policies on the fit loss) needs real operands, "
                        f"got dtype {q.dtype}")
    if not be.supports_autodiff:
        return None, None
    policy = resolve_policy(FIT_LAYER, traced=be.is_tracing(q))
    return FitGate(policy=policy, tau=_safe.clamp(tau, lim)), tau_a


class FitOperands(NamedTuple):
    """A fit loss's prepared arguments."""

    xp: Namespace
    be: Backend
    P: Array
    Q: Array
    Y_n: Array
    Y_d: Array
    lim: Limits
    cplx: bool
    gate: FitGate | None
    tau_array: Array | None


def fit_operands(P: object, Q: object, Y_n: object, Y_d: object,
                 tau_train: object) -> FitOperands:
    """Namespace, floating operands in one dtype, the one-way broadcasting check, the
    loss limits and the gate of a fit loss ``f(P, Q, Y_n, Y_d, ..., tau_train=)``."""
    xp = _common.namespace(("P", "Q", "Y_n", "Y_d", "tau_train"), (P, Q, Y_n, Y_d, tau_train))
    p, q, yn, yd = _common.float_arrays(xp, ("P", "Q", "Y_n", "Y_d"), (P, Q, Y_n, Y_d))
    _common.common_shape([("P", p), ("Q", q), ("Y_n", yn), ("Y_d", yd)])
    be = get_backend(xp)
    lim = _safe.limits(xp, p.dtype)
    gate, tau_a = fit_gate(tau_train, xp=xp, be=be, q=q, lim=lim)
    return FitOperands(xp, be, p, q, yn, yd, lim, _common.is_complex(xp, p.dtype), gate, tau_a)
