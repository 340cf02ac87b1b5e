"""Every public array function of zpml_core with the names of its array arguments.

Hostile tests iterate over this table, so a class of failure is checked on every public
function, not on one example: ``call(fn, arrays)`` runs the function with the arrays in
the order of ``ARGS``; ``good(xp, n)`` builds valid float64 inputs of length ``n``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from zpml_core import scm, strict_inference
from zpml_core.inference import (
    SCMInferenceWrapper,
    decode_strict_censored_3way,
    reject_on_bottom,
    reject_on_gap,
    safe_sentinel,
    strict_inference_rates,
)
from zpml_core.losses import (
    SCMTrainingLoss,
    coverage,
    implicit_loss,
    margin_loss,
    projective_distance_loss,
    rejection_loss,
    scm_separation_losses,
    sign_consistency_loss,
    soft_coverage_loss,
)
from zpml_core.projective import (
    decode,
    encode,
    lift_semantic_targets,
    lift_targets,
    projectively_equal,
    renormalize,
)


class Public(NamedTuple):
    name: str
    args: tuple[str, ...]  # names of the array arguments, in call order
    call: Callable[..., Any]
    bool_args: tuple[str, ...] = ()  # arguments that must be masks


UNARY = ("inv", "neg", "log", "exp", "sqrt", "sin", "cos", "tan")
BINARY = ("add", "sub", "mul", "div")

PUBLIC: list[Public] = [
    *(Public(f"scm.{op}", ("x", "y"), getattr(scm, op)) for op in BINARY),
    *(Public(f"scm.{op}", ("x",), getattr(scm, op)) for op in UNARY),
    Public("scm.pow", ("x", "exponent"), scm.pow),
    Public("scm.div[mask_x]", ("x", "y", "mask_x"),
           lambda x, y, m: scm.div(x, y, mask_x=m), bool_args=("mask_x",)),
    Public("scm.log[mask]", ("x", "mask"), lambda x, m: scm.log(x, mask=m), bool_args=("mask",)),
    Public("lift_targets", ("y",), lift_targets),
    Public("lift_semantic_targets", ("y",),
           lambda y: lift_semantic_targets(
               y, "finite" if y.ndim == 0 else ["finite"] * int(y.shape[0]))),
    Public("encode", ("value", "bottom"), encode, bool_args=("bottom",)),
    Public("decode", ("N", "D"), decode),
    Public("renormalize", ("N", "D"), renormalize),
    Public("projectively_equal", ("N1", "D1", "N2", "D2"), projectively_equal),
    Public("strict_inference", ("P", "Q"), strict_inference),
    Public("SCMInferenceWrapper", ("P", "Q"),
           lambda p, q: SCMInferenceWrapper(lambda _: (p, q))(q)),
    Public("decode_strict_censored_3way", ("numerator", "denominator"),
           lambda p, q: decode_strict_censored_3way(p, q, tau_infer=1e-6)),
    Public("reject_on_bottom", ("decoded", "bottom_mask"), reject_on_bottom,
           bool_args=("bottom_mask",)),
    Public("reject_on_gap", ("decoded", "bottom_mask", "gap_mask"), reject_on_gap,
           bool_args=("bottom_mask", "gap_mask")),
    Public("safe_sentinel", ("decoded", "invalid_mask"),
           lambda d, m: safe_sentinel(d, m, sentinel=0.0), bool_args=("invalid_mask",)),
    Public("strict_inference_rates", ("bottom_mask", "gap_mask"),
           lambda b, g: tuple(strict_inference_rates(b, g).values()),
           bool_args=("bottom_mask", "gap_mask")),
    Public("implicit_loss", ("P", "Q", "Y_n", "Y_d"), implicit_loss),
    Public("implicit_loss[tau_train]", ("P", "Q", "Y_n", "Y_d"),
           lambda P, Q, Yn, Yd: implicit_loss(P, Q, Yn, Yd, tau_train=1e-4)),
    Public("projective_distance_loss", ("P", "Q", "Y_n", "Y_d"), projective_distance_loss),
    Public("projective_distance_loss[tau_train]", ("P", "Q", "Y_n", "Y_d"),
           lambda P, Q, Yn, Yd: projective_distance_loss(P, Q, Yn, Yd, tau_train=1e-4)),
    Public("projective_distance_loss[power=1]", ("P", "Q", "Y_n", "Y_d"),
           lambda P, Q, Yn, Yd: projective_distance_loss(P, Q, Yn, Yd, power=1, tau_train=1e-4)),
    Public("margin_loss", ("Q",), margin_loss),
    Public("sign_consistency_loss", ("P", "Q", "Y_n", "Y_d"), sign_consistency_loss),
    Public("coverage", ("outputs", "is_bottom"), coverage),
    Public("rejection_loss", ("is_bottom",), rejection_loss),
    Public("soft_coverage_loss", ("Q",), lambda q: soft_coverage_loss(q, 1e-4, 0.1, 0.9)),
    Public("scm_separation_losses", ("Q", "mask_censored"),
           lambda q, m: scm_separation_losses(q, mask_censored=m), bool_args=("mask_censored",)),
    Public("SCMTrainingLoss", ("fit_loss", "P", "Q", "Y_n", "Y_d"),
           lambda f, p, q, yn, yd: SCMTrainingLoss()(f, p, q, yn, yd)),
]


def good(xp: Any, public: Public, n: int = 4) -> dict[str, Any]:
    """Valid inputs (float64 values in [0.5, 2], bool masks, a 0-d fit loss)."""
    out: dict[str, Any] = {}
    for i, name in enumerate(public.args):
        if name in public.bool_args:
            out[name] = xp.asarray([k % 2 == 0 for k in range(n)])
        elif name == "fit_loss":
            out[name] = xp.asarray(0.5, dtype=xp.float64)
        else:
            out[name] = xp.asarray([0.5 + 0.25 * ((k + i) % 7) for k in range(n)],
                                   dtype=xp.float64)
    return out


def call(public: Public, inputs: dict[str, Any]) -> Any:
    return public.call(*(inputs[a] for a in public.args))
