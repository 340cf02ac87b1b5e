"""``LossConfig`` and ``SCMTrainingLoss`` (SPEC §5.7): the combined training objective."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from zpml_core import _xp
from zpml_core._registry import Backend, get_backend
from zpml_core._xp import Array, Namespace
from zpml_core.autodiff.policies import GradientPolicy, resolve_policy
from zpml_core.losses import _common
from zpml_core.losses.coverage import _k_rejection
from zpml_core.losses.margin import _k_margin
from zpml_core.losses.sign import _k_sign

__all__ = ["LossConfig", "SCMTrainingLoss"]

BREAKDOWN_KEYS = ("fit", "margin", "sign", "rejection", "total")
_ARG_NAMES = ("fit_loss", "P", "Q", "Y_n", "Y_d", "is_bottom", "mask_finite", "mask_singular",
              "tau_train")


@dataclass(frozen=True)
class LossConfig:
    """Weights and thresholds of :class:`SCMTrainingLoss` (immutable, validated).

    Every field is a finite real ``≥ 0``; ``target_coverage`` also ``≤ 1``. Violations
    raise ``ValueError`` (bool/str/None → ``TypeError``) naming the field. Values are
    stored as ``float``.
    """

    gamma: float = 1e-9
    tau_train: float = 1e-4
    epsilon_sing: float = 1e-3
    lambda_margin: float = 0.1
    lambda_sign: float = 1.0
    lambda_rej: float = 0.01
    target_coverage: float = 0.95

    def __post_init__(self) -> None:
        for f in fields(self):
            le = 1.0 if f.name == "target_coverage" else None
            object.__setattr__(self, f.name, _common.threshold(f.name, getattr(self, f.name),
                                                               le=le))

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _k_training(fit: Array, P: Array, Q: Array, Yn: Array, Yd: Array, h: Array | None,
                mf: Array | None, ms: Array | None, tau_array: Array | None, *,
                xp: Namespace, be: Backend,
                tau: float, gamma: float, eps: float, lam_margin: float, lam_sign: float,
                lam_rej: float, target: float, policy: GradientPolicy, cplx: bool,
                dtype: Any) -> tuple[Array, ...]:
    margin = _k_margin(Q, mf, tau_array, xp=xp, be=be, tau=tau, conditional=False)
    sign = _k_sign(P, Q, Yn, Yd, ms, xp=xp, be=be, gamma=gamma, eps=eps, cplx=cplx)
    total = fit + lam_margin * margin + lam_sign * sign
    if h is None:
        rej = xp.zeros_like(fit)
    else:
        rej = _k_rejection(h, xp=xp, be=be, dtype=dtype, target=target, policy=policy)
        total = total + lam_rej * (rej if rej.dtype == total.dtype else xp.astype(rej, total.dtype))
    sg = be.stop_gradient
    return total, sg(fit), sg(margin), sg(sign), rej, sg(total)


class SCMTrainingLoss:
    """``fit + λ_margin·margin + λ_sign·sign + λ_rej·rejection`` (SPEC §5.7).

    ``loss_fn(fit_loss, P, Q, Y_n, Y_d, *, is_bottom=None, mask_finite=None,
    mask_singular=None, tau_train=None) → (total, breakdown)``:

    * ``fit_loss``: the caller's fit term (typically :func:`implicit_loss`), an array;
    * ``margin = margin_loss(Q, tau, mask_finite)`` (population reduction) with
      ``tau = config.tau_train`` unless ``tau_train`` is given (a real, or a 0-d array:
      a threshold sampled inside a jitted step then never retraces);
    * ``sign = sign_consistency_loss(P, Q, Y_n, Y_d, gamma, mask_singular, epsilon_sing)``;
    * ``rejection = rejection_loss(is_bottom, target_coverage,
      policy=get_policy("rejection_loss"))``, or 0 in ``fit_loss``'s dtype without
      ``is_bottom``;
    * ``breakdown``: ``{"fit", "margin", "sign", "rejection", "total"}`` as detached
      0-d arrays (no host sync; convert at the logging boundary).

    Everything runs as one fused kernel per call (one XLA computation on JAX). The
    configuration is read-only: build a new loss for new weights/thresholds (safe to
    close over in ``jax.jit``), or pass ``tau_train=`` per call.
    """

    __slots__ = ("_config",)

    def __init__(self, config: LossConfig | None = None) -> None:
        if config is None:
            config = LossConfig()
        if not isinstance(config, LossConfig):
            raise TypeError(f"config must be a LossConfig or None, got {type(config).__name__}")
        self._config = config

    @property
    def config(self) -> LossConfig:
        return self._config

    def __repr__(self) -> str:
        return f"SCMTrainingLoss({self._config!r})"

    def __call__(self, fit_loss: Array, P: Array, Q: Array, Y_n: Array, Y_d: Array, *,
                 is_bottom: Array | None = None, mask_finite: Array | None = None,
                 mask_singular: Array | None = None,
                 tau_train: float | Array | None = None) -> tuple[Array, dict[str, Array]]:
        cfg = self._config
        xp = _common.namespace(_ARG_NAMES, (fit_loss, P, Q, Y_n, Y_d, is_bottom, mask_finite,
                                             mask_singular, tau_train))
        p, q, yn, yd = _common.float_arrays(xp, ("P", "Q", "Y_n", "Y_d"), (P, Q, Y_n, Y_d))
        if tau_train is None:
            tau, tau_a = cfg.tau_train, None
        else:
            tau, tau_a = _common.threshold_or_array("tau_train", tau_train, xp=xp, like=q)
        if _xp.is_array(fit_loss):
            fit = fit_loss
            if not _common.kind(xp, fit.dtype)[0]:
                fit = _xp.to_float(xp, fit)
        elif isinstance(fit_loss, (int, float)) and not isinstance(fit_loss, bool):
            fit = xp.asarray(float(fit_loss), dtype=_xp.real_dtype(xp, q.dtype),
                             device=_xp.device(q))
        else:
            raise TypeError(f"fit_loss must be an array, got {type(fit_loss).__name__}")
        shape = _common.common_shape([("P", p), ("Q", q), ("Y_n", yn), ("Y_d", yd)])
        mf = _common.mask(xp, mask_finite, "mask_finite", tuple(q.shape), q)
        ms = _common.mask(xp, mask_singular, "mask_singular", shape, p, "the operands")
        be = get_backend(xp)
        policy = GradientPolicy.CLAMP
        h = None
        if is_bottom is not None:
            h = _common.soft_mask(xp, is_bottom, "is_bottom")
            policy = resolve_policy("rejection_loss", traced=be.is_tracing(q))
        total, fit_d, margin, sign, rej, total_d = be.fuse(_k_training)(
            fit, p, q, yn, yd, h, mf, ms, tau_a, xp=xp, be=be, tau=tau, gamma=cfg.gamma,
            eps=cfg.epsilon_sing, lam_margin=cfg.lambda_margin, lam_sign=cfg.lambda_sign,
            lam_rej=cfg.lambda_rej, target=cfg.target_coverage, policy=policy,
            cplx=_common.is_complex(xp, p.dtype), dtype=_xp.default_float(xp, _xp.device(q)),
        )
        if type(total) is not type(q):  # numpy reductions give numpy scalars
            total, fit_d, margin, sign, rej, total_d = (
                _common.as_0d(v, q, xp=xp) for v in (total, fit_d, margin, sign, rej, total_d)
            )
        return total, {
            "fit": fit_d, "margin": margin, "sign": sign, "rejection": rej, "total": total_d,
        }
