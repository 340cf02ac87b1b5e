"""A representative slice of the conformance suite on every requested backend (the full
suite runs per backend in CI: ``nox -s "conformance(backend=...)"``)."""

from __future__ import annotations

from typing import Any

from zpml_conformance import runner

SLICE = [
    "scm.div/f64/*", "scm.log/*/edge-1d", "scm.pow/*/edge-bcast", "scm.pow/f32/masked-bcast",
    "projective.decode/f64/*", "projective.lift_semantic_targets/f32/*",
    "inference.strict_inference/*/edge-1d", "inference.strict_inference/f64/validity-*",
    "losses.implicit_loss/f64/rand-*", "losses.SCMTrainingLoss/f64/default-2d-masks",
    "losses.coverage/f32/bool-2d",
    "grad.scm.div/*/edge-1d", "grad.scm.sqrt/f64/policy-*", "grad.losses.implicit_loss/f64/*",
    "grad.losses.SCMTrainingLoss/f64/config-1d",
]


def test_conformance_slice(backend: Any) -> None:
    rep = runner.run(backend, only=SLICE)
    assert len(rep.results) > 20
    assert all(r.group != "grad" for r in rep.results) or backend.supports_autodiff
    assert not rep.failed, "\n".join(r.message for r in rep.failed)
