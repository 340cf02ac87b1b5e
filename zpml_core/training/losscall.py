"""How the trainer calls a loss (semantics §7.2, §10 #13/#14), shared by every backend step.

A plain callable is called as ``loss_fn(outputs, (Y_n, Y_d), **kw)`` and must return a
scalar (a non-0-d result is averaged). ``kw`` holds the keywords its signature accepts
(``**kwargs`` accepts all): ``tau`` (the sampled threshold), ``inputs``, ``targets``
(raw targets; omitted for ``SemanticTargets`` batches), ``epoch``, ``global_step``,
``loss_weights`` (only if not None) and ``semantic_targets`` (only if present).

Under the eager torch step these are Python numbers; inside the jitted JAX step ``tau``,
``epoch``, ``global_step`` and the ``loss_weights`` values are traced 0-d arrays, so a new
threshold, epoch or curriculum weight never recompiles the step (use them
arithmetically, not in ``if``).

Shapes (every loss, before it is called): the lifted targets ``Y_n, Y_d`` must have
exactly the shape of the model's ``P`` (``outputs[0]`` of a ``(P, Q)`` tuple, or the single
decoded output), and ``Q`` ``P``'s leading shape (``Q.shape == P.shape[:Q.ndim]``);
see :func:`zpml_core.training.metrics.check_shapes`. Anything else raises ``ValueError``
naming both shapes on the first step, before any update: a ``(B, 1)`` target column
next to ``(B,)`` outputs would otherwise make every elementwise loss an all-pairs
``B×B`` loss.

An :class:`~zpml_core.losses.SCMTrainingLoss` instance is accepted as is (the guide's
wiring): it is called as ``fit = scm.fit_loss(P, Q, Y_n', Y_d', tau_train=tau)`` (the
``LossConfig.fit`` term: ``implicit_loss`` with ``gamma``, or
``projective_distance_loss``; elements with ``|Q| < tau`` follow the ``"fit_loss"``
gradient policy, i.e. ``TrainingConfig.gradient_policy`` when it is set) and
``scm(fit, P, Q, Y_n, Y_d, is_bottom=|Q| < tau, mask_finite=Y_d != 0, tau_train=tau,
loss_weights=w)`` where

* ``tau`` is the trainer's sampled threshold (``LossConfig.tau_train`` is not used);
* ``w`` is the epoch's ``loss_weights`` (``TrainingConfig.loss_weights`` overridden by
  the ``loss_curriculum``; keys ``fit``, ``margin``, ``sign``, ``rejection`` or the
  aliases ``lambda_margin``, ``lambda_sign``, ``lambda_rej``; a missing key keeps the
  ``LossConfig`` weight);
* with semantic targets, ``mask_finite`` comes from them, and elements labelled
  ``missing`` (neither finite nor bottom) are excluded from the fit term: there
  ``(Y_n', Y_d') = (P, Q)`` (stop-gradient), whose residual ``P·Q − Q·P`` is exactly 0
  (value and gradient); elsewhere ``(Y_n', Y_d') = (Y_n, Y_d)``.

If ``P`` has more dimensions than ``Q`` (one denominator shared by several outputs),
``Q`` is expanded with trailing axes for the loss, as strict inference does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from zpml_core import _xp
from zpml_core._xp import Array
from zpml_core.training.metrics import check_output_shapes

__all__ = ["LOSS_KEYWORDS", "LossCaller", "is_scm_training_loss"]

LOSS_KEYWORDS = ("tau", "inputs", "targets", "epoch", "global_step", "loss_weights", "semantic_targets")


def is_scm_training_loss(obj: object) -> bool:
    try:
        from zpml_core.losses import SCMTrainingLoss
    except ImportError:
        return False
    return isinstance(obj, SCMTrainingLoss)


def _expand_like(q: Array, p: Array) -> Array:
    while q.ndim < p.ndim:
        q = q[..., None]
    return q


class _SCMAdapter:
    """``SCMTrainingLoss`` in the trainer's calling convention."""

    def __init__(self, scm: Any) -> None:
        self.scm = scm

    def __call__(
        self,
        outputs: Any,
        targets: tuple[Array, Array],
        *,
        tau: Any,
        loss_weights: Mapping[str, Any] | None = None,
        semantic_targets: Any = None,
    ) -> Array:
        if not (isinstance(outputs, (tuple, list)) and len(outputs) == 2):
            raise TypeError(
                "SCMTrainingLoss needs a model returning a (P, Q) tuple, got "
                f"{type(outputs).__name__}"
            )
        P, Q = outputs
        Y_n, Y_d = targets
        Qb = _expand_like(Q, P)
        yn_fit, yd_fit = Y_n, Y_d
        if semantic_targets is not None:
            # "missing" labels: (P, Q) as the target gives a residual of exactly 0
            xp = _xp.namespace(P, Qb, Y_n, Y_d)
            from zpml_core._registry import get_backend

            sg = get_backend(xp).stop_gradient
            labelled = semantic_targets.mask_finite | semantic_targets.mask_bottom
            yn_fit = xp.where(labelled, Y_n, sg(P))
            yd_fit = xp.where(labelled, Y_d, sg(xp.broadcast_to(Qb, P.shape)))
        fit = self.scm.fit_loss(P, Qb, yn_fit, yd_fit, tau_train=tau)
        mask_finite = semantic_targets.mask_finite if semantic_targets is not None else Y_d != 0
        if mask_finite.ndim > Q.ndim:  # one denominator per sample: finite iff all targets are
            xp = _xp.namespace(mask_finite)
            mask_finite = _expand_like(
                xp.all(mask_finite, axis=tuple(range(Q.ndim, mask_finite.ndim))), P
            )
        kw: dict[str, Any] = {}
        if loss_weights is not None:
            kw["loss_weights"] = loss_weights
        total, _ = self.scm(
            fit,
            P,
            Qb,
            Y_n,
            Y_d,
            is_bottom=abs(Q) < tau,
            mask_finite=mask_finite,
            tau_train=tau,
            **kw,
        )
        return total


class LossCaller:
    """Bind a user loss once (signature introspection at construction, semantics §7.2)."""

    def __init__(self, loss_fn: Callable[..., Any]) -> None:
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        self.loss_fn = loss_fn
        if is_scm_training_loss(loss_fn):
            self.fn: Callable[..., Any] = _SCMAdapter(loss_fn)
            self.accepts = frozenset({"tau", "loss_weights", "semantic_targets"})
            return
        self.fn = loss_fn
        try:
            sig = inspect.signature(loss_fn)
        except (TypeError, ValueError):
            self.accepts = frozenset(LOSS_KEYWORDS)
            return
        params = list(sig.parameters.values())
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            accepts = set(LOSS_KEYWORDS)
        else:
            names = {
                p.name
                for p in params
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            }
            accepts = names & set(LOSS_KEYWORDS)
        # semantics §10 #14: a positional parameter named like a keyword the trainer passes
        positional = [
            p
            for p in params
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
        for p in positional[:2]:
            if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name in accepts:
                raise TypeError(
                    f"loss_fn's positional parameter {p.name!r} collides with the {p.name}= "
                    "keyword SCMTrainer passes; rename it (the trainer calls "
                    "loss_fn(outputs, (Y_n, Y_d), **kw))"
                )
        if len(positional) < 2 and not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
            raise TypeError(
                "loss_fn must accept two positional arguments (outputs, (Y_n, Y_d)); "
                f"its signature is {sig}"
            )
        self.accepts = frozenset(accepts)

    def __call__(
        self,
        outputs: Any,
        y_n: Array,
        y_d: Array,
        *,
        tau: Any,
        inputs: Any = None,
        targets: Any = None,
        epoch: Any = None,
        global_step: Any = None,
        loss_weights: Mapping[str, Any] | None = None,
        semantic_targets: Any = None,
    ) -> Array:
        check_output_shapes(outputs, y_n, y_d)
        acc = self.accepts
        kw: dict[str, Any] = {}
        if "tau" in acc:
            kw["tau"] = tau
        if "inputs" in acc:
            kw["inputs"] = inputs
        if "targets" in acc and targets is not None:
            kw["targets"] = targets
        if "epoch" in acc:
            kw["epoch"] = epoch
        if "global_step" in acc:
            kw["global_step"] = global_step
        if "loss_weights" in acc and loss_weights is not None:
            kw["loss_weights"] = loss_weights
        if "semantic_targets" in acc and semantic_targets is not None:
            kw["semantic_targets"] = semantic_targets
        loss = self.fn(outputs, (y_n, y_d), **kw)
        if isinstance(loss, (tuple, list)):
            raise TypeError(
                "loss_fn must return a scalar loss, got a "
                f"{type(loss).__name__}; return only the total"
            )
        if not _xp.is_array(loss):
            raise TypeError(f"loss_fn must return a scalar array, got {type(loss).__name__}")
        if loss.ndim:
            xp = _xp.namespace(loss)
            loss = xp.mean(loss)
        return loss

    @property
    def wants_semantic_targets(self) -> bool:
        return "semantic_targets" in self.accepts

    def check_controls(self, config: Any) -> None:
        """Refuse loss controls of ``config`` that would have no effect on this loss.

        * ``loss_weights``/``loss_curriculum`` set but the loss takes no
          ``loss_weights=`` keyword → ``ValueError``;
        * for an ``SCMTrainingLoss``: every ``loss_weights`` key and every curriculum
          ramp name must be one it reads (``LOSS_WEIGHT_KEYS``) → else ``ValueError``
          naming the key; one term named twice (``margin`` and ``lambda_margin``) and
          negative ramp values → ``ValueError``; a ``LossConfig.tau_train`` outside
          ``[tau_train_min, tau_train_max]`` → ``UserWarning`` (the trainer passes its
          sampled threshold; ``LossConfig.tau_train`` is not used).
        """
        weights = config.loss_weights
        ramps = config.loss_curriculum.ramps if config.loss_curriculum is not None else {}
        if (weights is not None or ramps) and "loss_weights" not in self.accepts:
            which = "loss_weights" if weights is not None else "loss_curriculum"
            raise ValueError(
                f"TrainingConfig.{which} is set but loss_fn does not accept a "
                "loss_weights= keyword, so it would have no effect; add a loss_weights "
                "parameter to the loss or remove the setting"
            )
        if not isinstance(self.fn, _SCMAdapter):
            return
        if weights or ramps:
            from zpml_core.losses.training import LOSS_WEIGHT_KEYS, _weight_items

            for source, keys in (("loss_weights", weights or {}), ("loss_curriculum", ramps)):
                for k in keys:
                    if k not in LOSS_WEIGHT_KEYS:
                        raise ValueError(
                            f"TrainingConfig.{source} has the key {k!r}, which "
                            "SCMTrainingLoss does not read; use one of "
                            f"{', '.join(map(repr, LOSS_WEIGHT_KEYS))}"
                        )
            try:  # one term named twice ("margin" and "lambda_margin")
                _weight_items({**(weights or {}), **dict.fromkeys(ramps, 0.0)})
            except ValueError as exc:
                raise ValueError(
                    f"TrainingConfig.loss_weights with the loss_curriculum ramps: {exc}"
                ) from None
        for k, ramp in ramps.items():
            for field in ("start_value", "end_value"):
                if getattr(ramp, field) < 0:
                    raise ValueError(
                        f"TrainingConfig.loss_curriculum ramp {k!r} has {field}="
                        f"{getattr(ramp, field)!r}; SCMTrainingLoss weights must be >= 0"
                    )
        tau = getattr(getattr(self.loss_fn, "config", None), "tau_train", None)
        lo, hi = config.tau_train_min, config.tau_train_max
        if tau is not None and not lo <= tau <= hi:
            import warnings

            warnings.warn(
                f"LossConfig.tau_train={tau!r} is not used by SCMTrainer: the margin and "
                "rejection terms use the per-step threshold sampled from "
                f"TrainingConfig [tau_train_min, tau_train_max] = [{lo!r}, {hi!r}]",
                UserWarning,
                stacklevel=3,
            )
