"""SCM training losses (SPEC §5), written once against the array API.

Every loss returns a 0-d array of the input's library (no ``.item()``, no host sync, no
data-dependent shapes), so it runs eagerly and under ``jax.jit`` /
``torch.compile(fullgraph=True)``. Python thresholds are validated eagerly
(``ValueError``/``TypeError`` naming the argument).

====================================  ==========================================
``implicit_loss``                     cross-product fit of ``P/Q`` to ``(Y_n, Y_d)``
``margin_loss``                       keep ``|Q|`` above ``tau_train``
``sign_consistency_loss``             orientation of ``(P, Q)`` at singular targets
``coverage`` / ``rejection_loss``     finite-output rate and its (non-trainable) penalty
``soft_coverage_loss``                differentiable coverage penalty
``scm_separation_losses``             censored vs finite separation by ``|Q|``
``LossConfig`` / ``SCMTrainingLoss``  the combined objective with a detached breakdown
====================================  ==========================================
"""

from zpml_core.losses.coverage import coverage, rejection_loss, soft_coverage_loss
from zpml_core.losses.implicit import implicit_loss
from zpml_core.losses.margin import margin_loss
from zpml_core.losses.separation import scm_separation_losses
from zpml_core.losses.sign import sign_consistency_loss
from zpml_core.losses.training import LossConfig, SCMTrainingLoss

__all__ = [
    "LossConfig",
    "SCMTrainingLoss",
    "coverage",
    "implicit_loss",
    "margin_loss",
    "rejection_loss",
    "scm_separation_losses",
    "sign_consistency_loss",
    "soft_coverage_loss",
]
