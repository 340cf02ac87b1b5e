"""SCM training losses (semantics §5), written once against the array API.

Every loss returns a 0-d array of the input's library (no ``.item()``, no host sync, no
data-dependent shapes), so it runs eagerly and under ``jax.jit`` /
``torch.compile(fullgraph=True)``. Python thresholds are validated eagerly
(``ValueError``/``TypeError`` naming the argument).

====================================  ==========================================
``implicit_loss``                     cross-product fit of ``P/Q`` to ``(Y_n, Y_d)``
``projective_distance_loss``          bounded fit: ``sin²`` of the projective angle
``margin_loss``                       keep ``|Q|`` above ``tau_train``
``sign_consistency_loss``             orientation of ``(P, Q)`` at singular targets
``coverage`` / ``rejection_loss``     finite-output rate and its (non-trainable) penalty
``soft_coverage_loss``                differentiable coverage penalty
``scm_separation_losses``             censored vs finite separation by ``|Q|``
``LossConfig`` / ``SCMTrainingLoss``  the combined objective with a detached breakdown
``LOSS_WEIGHT_KEYS``                  the keys of ``SCMTrainingLoss(..., loss_weights=)``
====================================  ==========================================

Rules shared by every loss:

* **Shapes — one-way broadcasting.** The operands of a loss (``P, Q, Y_n, Y_d``) may
  broadcast one way only: the result has the shape of the largest operand and every
  other operand must broadcast *to* it without enlarging it (fewer or size-1
  dimensions; 0-d operands are fine). So a ``(B, 1)`` denominator next to ``(B, k)``
  numerators is valid, but ``(B,)`` predictions next to ``(B, 1)`` targets — which
  broadcast to ``(B, B)`` and would turn an elementwise loss into an all-pairs loss —
  raise ``ValueError`` naming every argument and its shape. Masks (``mask_finite``,
  ``mask_singular``, ``mask_censored``) follow the same rule towards their operand;
  ``SCMTrainingLoss``'s ``fit_loss`` must be 0-d.
* **dtype.** A loss value has the (real) floating dtype of its operands (complex
  operands give the matching real dtype). ``coverage``, ``rejection_loss`` and the
  rejection term of ``SCMTrainingLoss`` follow ``is_bottom`` if it is floating, else the
  predictions (``outputs``, ``P``), and use the library's default float only when no
  floating operand is given. float16/bfloat16 operands are computed in float32 and the
  value is cast back.
* **Finite for every finite input** up to ``finfo.max``, in every float dtype: tuples
  are divided by power-of-two scales before any product (exact: values unchanged to
  rounding in the normal range), and every element of a loss saturates at
  ``S = 2^(⌊E/2⌋−2)`` with ``E = ⌊log2 finfo.max⌋`` of the computation dtype —
  about 1.7e153 (float64) and 2.3e18 (float32, bfloat16); float16 saturates at its
  ``finfo.max`` — so a mean over up to ``2^(E/2)`` elements cannot overflow and the
  gradients never hold ``inf·0 = NaN`` (they are finite wherever the true gradient is
  representable). Squared shortfalls ``relu(·)²`` are computed as ``min(relu(·), √S)²``;
  thresholds beyond the dtype's range act as its ``finfo.max``. Scales and predicates
  are computed on stop-gradient operands.
* **Gradient policies on the fit's singular paths.** ``implicit_loss`` and
  ``projective_distance_loss`` take ``tau_train=``: elements with ``|Q| < tau_train`` are
  singular paths, and their fit gradient follows the policy in effect for the layer
  ``"fit_loss"`` (registered as PASSTHROUGH, so without a context nothing changes):
  REJECT → no fit gradient there (such samples learn through the margin, sign and
  coverage terms), PROJECT → the radial component along ``(P, Q)`` removed there,
  CLAMP → 0 there and clipped to ``[−1, 1]`` elsewhere, PASSTHROUGH → unchanged. Values
  never change. In eager PyTorch a ``gradient_policy`` context around ``.backward()``
  applies; under ``jax.jit``/``jax.grad``/``torch.compile`` the context active when the
  forward pass is traced (:mod:`zpml_core.autodiff.fit_rules`). ``SCMTrainer`` passes
  its sampled ``tau_train``. The margin, sign and rejection terms act on small ``|Q|``
  by design and are not gated (rejection has its own layer, ``"rejection_loss"``).
* **Empty inputs** give 0 (a mean over no element is ``sum/max(n, 1)``; ``coverage`` of
  nothing is 1), without "Mean of empty slice" warnings.
"""

from zpml_core._compat_names import implicit_loss_jax as implicit_loss_jax  # deprecated name
from zpml_core.losses.coverage import coverage, rejection_loss, soft_coverage_loss
from zpml_core.losses.implicit import implicit_loss
from zpml_core.losses.margin import margin_loss
from zpml_core.losses.projective import projective_distance_loss
from zpml_core.losses.separation import scm_separation_losses
from zpml_core.losses.sign import sign_consistency_loss
from zpml_core.losses.training import LOSS_WEIGHT_KEYS, LossConfig, SCMTrainingLoss

__all__ = [
    "LOSS_WEIGHT_KEYS",
    "LossConfig",
    "SCMTrainingLoss",
    "coverage",
    "implicit_loss",
    "margin_loss",
    "projective_distance_loss",
    "rejection_loss",
    "scm_separation_losses",
    "sign_consistency_loss",
    "soft_coverage_loss",
]
