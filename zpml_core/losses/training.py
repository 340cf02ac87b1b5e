"""``LossConfig`` and ``SCMTrainingLoss`` (semantics §5.7): the combined training objective."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from zpml_core import _xp
from zpml_core._registry import Backend, get_backend
from zpml_core._xp import Array, Namespace
from zpml_core.autodiff.policies import GradientPolicy, resolve_policy
from zpml_core.losses import _common, _safe
from zpml_core.losses._safe import Limits
from zpml_core.losses.coverage import rejection_value, value_dtype
from zpml_core.losses.implicit import implicit_loss
from zpml_core.losses.margin import margin_value, needs_saturation
from zpml_core.losses.projective import projective_distance_loss
from zpml_core.losses.sign import sign_params, sign_value

__all__ = ["FIT_LOSSES", "LOSS_WEIGHT_KEYS", "LossConfig", "SCMTrainingLoss"]

BREAKDOWN_KEYS = ("fit", "margin", "sign", "rejection", "total")
#: the keys of ``SCMTrainingLoss(...)(..., loss_weights=...)``: the term names, and the
#: ``LossConfig`` field names as aliases of the weighted terms
LOSS_WEIGHT_KEYS = ("fit", "margin", "sign", "rejection", "lambda_margin", "lambda_sign",
                    "lambda_rej")
_TERMS = ("fit", "margin", "sign", "rejection")
_ALIASES = {"lambda_margin": "margin", "lambda_sign": "sign", "lambda_rej": "rejection"}
_NO_WEIGHTS: tuple[None, ...] = (None, None, None, None)
_ARG_NAMES = ("fit_loss", "P", "Q", "Y_n", "Y_d", "is_bottom", "mask_finite", "mask_singular",
              "tau_train")


#: the values of ``LossConfig.fit``
FIT_LOSSES = ("implicit", "angle", "angle_l1")


@dataclass(frozen=True)
class LossConfig:
    """Weights and thresholds of :class:`SCMTrainingLoss` (immutable, validated).

    Every numeric field is a finite real ``≥ 0``; ``target_coverage`` also ``≤ 1``.
    Violations raise ``ValueError`` (bool/str/None → ``TypeError``) naming the field.
    Values are stored as ``float``.

    ``fit`` names the fit term :meth:`SCMTrainingLoss.fit_loss` computes (and with it
    ``SCMTrainer`` when the loss is passed straight to it): ``"implicit"`` (default,
    :func:`~zpml_core.losses.implicit_loss` with ``gamma``), ``"angle"``
    (:func:`~zpml_core.losses.projective_distance_loss`, the bounded projective angle
    ``sin²∠``; ``gamma`` unused) or ``"angle_l1"`` (the same with ``power=1``:
    ``|sin∠|``, which places the zeros of ``Q`` more precisely). Anything else → ``ValueError`` (a non-string → ``TypeError``).
    """

    gamma: float = 1e-9
    tau_train: float = 1e-4
    epsilon_sing: float = 1e-3
    lambda_margin: float = 0.1
    lambda_sign: float = 1.0
    lambda_rej: float = 0.01
    target_coverage: float = 0.95
    fit: str = "implicit"

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "fit":
                continue
            le = 1.0 if f.name == "target_coverage" else None
            object.__setattr__(self, f.name, _common.threshold(f.name, getattr(self, f.name),
                                                               le=le))
        if not isinstance(self.fit, str):
            raise TypeError(f"fit must be one of {', '.join(map(repr, FIT_LOSSES))}, got "
                            f"{_xp._type_name(self.fit)}")
        if self.fit not in FIT_LOSSES:
            raise ValueError(f"fit must be one of {', '.join(map(repr, FIT_LOSSES))}, got "
                             f"{self.fit!r}")

    def to_dict(self) -> dict[str, float | str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _k_training(fit: Array, P: Array, Q: Array, Yn: Array, Yd: Array, h: Array | None,
                mf: Array | None, ms: Array | None, tau_array: Array | None,
                weights: tuple[Array | None, ...], *, xp: Namespace, be: Backend,
                tau: float, saturate: bool, gamma: float, sqrt_g: float, eps: float,
                lams: tuple[float, ...], target: float, policy: GradientPolicy, cplx: bool,
                lim: Limits, lim_rej: Limits, lim_tot: Limits) -> tuple[Array, ...]:
    if lim.cast:
        P, Q, Yn, Yd = (xp.astype(v, lim.cdt) for v in (P, Q, Yn, Yd))
        if tau_array is not None:
            tau_array = xp.astype(tau_array, lim.rdt)
    margin = margin_value(Q, mf, tau_array, xp=xp, be=be, tau=tau, conditional=False,
                          saturate=saturate, lim=lim)
    sign = sign_value(P, Q, Yn, Yd, ms, xp=xp, be=be, gamma=gamma, sqrt_g=sqrt_g, eps=eps,
                      cplx=cplx, lim=lim)
    tdt = lim_tot.rdt

    def weighted(x: Array, i: int) -> Array:
        if x.dtype != tdt:
            x = xp.astype(x, tdt)
        w = weights[i]
        if w is not None:
            return w * x
        return x if lams[i] == 1.0 else lams[i] * x

    total = weighted(fit, 0) + weighted(margin, 1) + weighted(sign, 2)
    if h is None:
        rej = xp.zeros_like(fit)
    else:
        rej = rejection_value(h, xp=xp, be=be, lim=lim_rej, target=target, policy=policy)
        total = total + weighted(rej, 3)
        if lim_rej.cast:
            rej = xp.astype(rej, lim_rej.odt)
    # every weighted term is finite; their sum saturates at finfo.max (gradient 0 there)
    total = _common.clip(total, None, lim_tot.out_max, xp=xp, be=be)
    if lim_tot.cast:
        total = xp.astype(total, lim_tot.odt)
    if lim.cast:
        margin, sign = xp.astype(margin, lim.odt), xp.astype(sign, lim.odt)
    sg = be.stop_gradient
    return total, sg(fit), sg(margin), sg(sign), rej, sg(total)


def _weight_items(loss_weights: object) -> dict[str, tuple[str, object]]:
    """``{term: (key, value)}`` of a ``loss_weights`` mapping (keys validated)."""
    if loss_weights is None:
        return {}
    if not isinstance(loss_weights, Mapping):
        raise TypeError(
            f"loss_weights must be a mapping of str to weight, or None, got "
            f"{_xp._type_name(loss_weights)}"
        )
    out: dict[str, tuple[str, object]] = {}
    for k, v in loss_weights.items():
        if k not in LOSS_WEIGHT_KEYS:
            raise ValueError(
                f"loss_weights has the unknown key {k!r}; allowed keys: "
                f"{', '.join(map(repr, LOSS_WEIGHT_KEYS))}"
            )
        term = _ALIASES.get(k, str(k))
        if term in out:
            raise ValueError(
                f"loss_weights gives the weight of the {term!r} term twice: as "
                f"{out[term][0]!r} and as {k!r}"
            )
        out[term] = (k, v)
    return out


class SCMTrainingLoss:
    """``fit + λ_margin·margin + λ_sign·sign + λ_rej·rejection`` (semantics §5.7).

    ``loss_fn(fit_loss, P, Q, Y_n, Y_d, *, is_bottom=None, mask_finite=None,
    mask_singular=None, tau_train=None, loss_weights=None) → (total, breakdown)``:

    * ``fit_loss``: the caller's fit term (typically :func:`implicit_loss`), a 0-d array
      (or a Python real); any other shape raises ``ValueError``;
    * ``P, Q, Y_n, Y_d``: the package's one-way broadcasting rule (``ValueError`` naming
      the arguments when their broadcast would enlarge the largest of them);
    * ``margin = margin_loss(Q, tau, mask_finite)`` (population reduction) with
      ``tau = config.tau_train`` unless ``tau_train`` is given (a real, or a 0-d array:
      a threshold sampled inside a jitted step then never retraces);
    * ``sign = sign_consistency_loss(P, Q, Y_n, Y_d, gamma, mask_singular, epsilon_sing)``;
    * ``rejection = rejection_loss(is_bottom, target_coverage,
      policy=get_policy("rejection_loss"))`` in ``is_bottom``'s dtype if it is floating,
      else in the (real) dtype of ``P`` — or 0 in ``fit_loss``'s dtype without
      ``is_bottom``;
    * ``loss_weights``: per-call weights, a mapping whose keys are the terms ``"fit"``,
      ``"margin"``, ``"sign"``, ``"rejection"`` or the aliases ``"lambda_margin"``,
      ``"lambda_sign"``, ``"lambda_rej"`` (:data:`LOSS_WEIGHT_KEYS`). Rule: a given
      weight **replaces** the configured weight of its term (``fit``: 1, the others
      ``config.lambda_*``); a missing key keeps it. Values: finite reals ``≥ 0``, or
      0-d real arrays (e.g. traced values inside ``jax.jit``: a new value never
      retraces; arrays are not range-checked). Unknown keys, or one term named twice
      (``"margin"`` and ``"lambda_margin"``) → ``ValueError``;
    * ``total`` has the promoted dtype of ``fit_loss`` and ``P``'s real dtype; it
      saturates at that dtype's ``finfo.max`` (every term is finite, see the package
      docstring; a Python weight beyond the computation dtype's range acts as its
      ``finfo.max``);
    * ``breakdown``: ``{"fit", "margin", "sign", "rejection", "total"}`` as detached
      0-d arrays (no host sync; convert at the logging boundary); the terms unweighted.

    Everything runs as one fused kernel per call (one XLA computation on JAX). The
    configuration is read-only: build a new loss for new weights/thresholds (safe to
    close over in ``jax.jit``), or pass ``tau_train=``/``loss_weights=`` per call.
    """

    __slots__ = ("_config", "_lams")

    def __init__(self, config: LossConfig | None = None) -> None:
        if config is None:
            config = LossConfig()
        if not isinstance(config, LossConfig):
            raise TypeError(f"config must be a LossConfig or None, got {type(config).__name__}")
        self._config = config
        self._lams = (1.0, config.lambda_margin, config.lambda_sign, config.lambda_rej)

    @property
    def config(self) -> LossConfig:
        return self._config

    def fit_loss(self, P: Array, Q: Array, Y_n: Array, Y_d: Array, *,
                 tau_train: float | Array | None = None) -> Array:
        """The configured fit term (``config.fit``): ``implicit_loss(P, Q, Y_n, Y_d,
        config.gamma, tau_train=tau_train)`` or ``projective_distance_loss(P, Q, Y_n, Y_d,
        tau_train=tau_train, power=2 | 1)`` (``"angle"`` | ``"angle_l1"``). With ``tau_train`` the elements with ``|Q| < tau_train``
        follow the gradient policy of layer ``"fit_loss"`` (see :mod:`zpml_core.losses`).
        """
        if self._config.fit == "angle":
            return projective_distance_loss(P, Q, Y_n, Y_d, tau_train=tau_train)
        if self._config.fit == "angle_l1":
            return projective_distance_loss(P, Q, Y_n, Y_d, tau_train=tau_train, power=1)
        return implicit_loss(P, Q, Y_n, Y_d, self._config.gamma, tau_train=tau_train)

    def __repr__(self) -> str:
        return f"SCMTrainingLoss({self._config!r})"

    def __call__(self, fit_loss: Array, P: Array, Q: Array, Y_n: Array, Y_d: Array, *,
                 is_bottom: Array | None = None, mask_finite: Array | None = None,
                 mask_singular: Array | None = None,
                 tau_train: float | Array | None = None,
                 loss_weights: Mapping[str, float | Array] | None = None,
                 ) -> tuple[Array, dict[str, Array]]:
        cfg = self._config
        items = _weight_items(loss_weights)
        w_names = tuple(f"loss_weights[{k!r}]" for k, _ in items.values())
        w_values = tuple(v for _, v in items.values())
        xp = _common.namespace((*_ARG_NAMES, *w_names),
                               (fit_loss, P, Q, Y_n, Y_d, is_bottom, mask_finite,
                                mask_singular, tau_train, *w_values))
        p, q, yn, yd = _common.float_arrays(xp, ("P", "Q", "Y_n", "Y_d"), (P, Q, Y_n, Y_d))
        lim = _safe.limits(xp, p.dtype)
        if tau_train is None:
            tau, tau_a = cfg.tau_train, None
        else:
            tau, tau_a = _common.threshold_or_array("tau_train", tau_train, xp=xp, like=q)
        tau = _safe.clamp(tau, lim)
        if _xp.is_array(fit_loss):
            fit = fit_loss
            if not _common.kind(xp, fit.dtype)[0]:
                fit = _xp.to_float(xp, fit)
            if tuple(fit.shape) != ():
                raise ValueError(
                    f"fit_loss must be a 0-d array (a scalar loss), got shape "
                    f"{tuple(fit.shape)}"
                )
        elif isinstance(fit_loss, (int, float)) and not isinstance(fit_loss, bool):
            fit = xp.asarray(float(fit_loss), dtype=lim.odt, device=_xp.device(q))
        else:
            raise TypeError(f"fit_loss must be an array, got {type(fit_loss).__name__}")
        shape = _common.common_shape([("P", p), ("Q", q), ("Y_n", yn), ("Y_d", yd)])
        mf = _common.mask(xp, mask_finite, "mask_finite", tuple(q.shape), q)
        ms = _common.mask(xp, mask_singular, "mask_singular", shape, p, "the operands")
        be = get_backend(xp)
        policy = GradientPolicy.CLAMP
        h = None
        lim_rej = lim
        if is_bottom is not None:
            h = _common.soft_mask(xp, is_bottom, "is_bottom")
            policy = resolve_policy("rejection_loss", traced=be.is_tracing(q))
            lim_rej = _safe.limits(xp, value_dtype(xp, h, p))
        if fit.dtype == lim.odt and not lim.cast and lim.cdt == lim.odt:
            lim_tot = lim
        else:
            lim_tot = _safe.limits(xp, _xp.result_dtype(xp, fit.dtype, lim.odt))
        lams, weights = self._weights(items, xp, fit, lim_tot)
        g, sqrt_g, eps = sign_params(cfg.gamma, cfg.epsilon_sing, lim)
        total, fit_d, margin, sign, rej, total_d = be.fuse(_k_training)(
            fit, p, q, yn, yd, h, mf, ms, tau_a, weights, xp=xp, be=be, tau=tau,
            saturate=needs_saturation(tau, tau_a, lim), gamma=g, sqrt_g=sqrt_g, eps=eps,
            lams=lams, target=cfg.target_coverage, policy=policy,
            cplx=_common.is_complex(xp, p.dtype), lim=lim, lim_rej=lim_rej, lim_tot=lim_tot,
        )
        if type(total) is not type(q):  # numpy reductions give numpy scalars
            total, fit_d, margin, sign, rej, total_d = (
                _common.as_0d(v, q, xp=xp) for v in (total, fit_d, margin, sign, rej, total_d)
            )
        return total, {
            "fit": fit_d, "margin": margin, "sign": sign, "rejection": rej, "total": total_d,
        }

    def _weights(self, items: dict[str, tuple[str, object]], xp: Namespace, fit: Array,
                 lim_tot: Limits) -> tuple[tuple[float, ...], tuple[Array | None, ...]]:
        """``(static weights, array weights)`` of the four terms (config, then per call)."""
        if not items:
            lams: tuple[float, ...] = self._lams
            if max(lams) > lim_tot.max:
                lams = tuple(_safe.clamp(v, lim_tot) for v in lams)
            return lams, _NO_WEIGHTS
        out_l = list(self._lams)
        out_w: list[Array | None] = [None] * 4
        for i, term in enumerate(_TERMS):
            if term in items:
                key, value = items[term]
                v, w = _common.threshold_or_array(f"loss_weights[{key!r}]", value, xp=xp,
                                                  like=fit)
                if w is not None and w.dtype != lim_tot.rdt:
                    w = xp.astype(w, lim_tot.rdt)
                out_l[i], out_w[i] = (1.0 if w is not None else v), w
            out_l[i] = _safe.clamp(out_l[i], lim_tot)
        return tuple(out_l), tuple(out_w)
