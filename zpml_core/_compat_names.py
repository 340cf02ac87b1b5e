"""zeroproofml's backend-suffixed names as thin, deprecated aliases of the one API.

zeroproofml 0.6.1 has one function per op *and* backend (``scm_inv_numpy``,
``scm_div_torch``, ``lift_targets_jax``, ``strict_inference_numpy``,
``implicit_loss_jax``, ...). Here the namespace of the arrays picks the backend, so each
of these names is a thin alias of the one function (``zpml_core.scm.inv``,
``zpml_core.lift_targets``, ``zpml_core.strict_inference``,
``zpml_core.losses.implicit_loss``): same result, same validation. Every call emits one
``DeprecationWarning`` naming the replacement.

What an alias adds to the one function:

* its backend: an array argument of another library → ``TypeError`` naming the
  argument, the alias and the replacement (the one function takes any backend);
* zeroproofml's positional masks: ``scm_inv_numpy(x, mask)``,
  ``scm_pow_numpy(x, exponent, mask)``, ``scm_add_numpy(x, y, mask_x, mask_y)`` and the
  interleaved ``scm_add_numpy(x, mask_x, y, mask_y)`` (recognised, as in zeroproofml,
  when the second argument is a bool array and the third is not). A mask given both
  positionally and by keyword, or more than four positional arguments → ``TypeError``.
  The one API takes masks by keyword only (``mask=``, ``mask_x=``, ``mask_y=``).

The aliases are re-exported where zeroproofml exposes them: ``zpml_core.scm``
(``scm_<op>_{numpy,torch,jax}``), ``zpml_core.training`` (``lift_targets_*``),
``zpml_core.inference`` (``strict_inference_{numpy,jax}``) and ``zpml_core.losses``
(``implicit_loss_jax``). This module imports the one API lazily (inside the calls), so
those modules can import it while they are being initialised.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

__all__ = [
    "ALIASES",
    "SCM_ALIASES",
    "implicit_loss_jax",
    "lift_targets_jax",
    "lift_targets_numpy",
    "lift_targets_torch",
    "strict_inference_jax",
    "strict_inference_numpy",
]

#: alias name → the one-API function it calls (``module.name``)
ALIASES: dict[str, str] = {}

_BINARY = ("add", "sub", "mul", "div")
_UNARY = ("inv", "neg", "log", "exp", "sqrt", "sin", "cos", "tan")


def _deprecated(alias: str, replacement: str) -> None:
    warnings.warn(
        f"{alias} is a deprecated zeroproofml name: call {replacement} (the arrays' "
        "namespace selects the backend; masks are keyword-only)",
        DeprecationWarning,
        stacklevel=3,
    )


def _check_backend(alias: str, backend: str, replacement: str,
                   named: tuple[tuple[str, object], ...]) -> None:
    """Every array argument belongs to ``backend`` (``TypeError`` naming it otherwise)."""
    from zpml_core import _xp
    from zpml_core._registry import get_backend

    for name, value in named:
        if not _xp.is_array(value) or isinstance(value, (list, tuple)):
            continue  # None, Python scalars; lists are refused by the one function
        got = get_backend(_xp.namespace(value, names=(name,))).name
        if got != backend:
            raise TypeError(
                f"{alias}: {name} is a {got} array ({type(value).__name__}), but {alias} "
                f"takes {backend} arrays; call {replacement}, which takes arrays of any backend"
            )


def _is_bool_array(value: object) -> bool:
    from zpml_core import _xp

    if not _xp.is_array(value) or not hasattr(value, "dtype"):
        return False
    try:
        xp = _xp.namespace(value)
    except TypeError:
        return False
    return bool(value.dtype == xp.bool)


def _binary_masks(alias: str, y: object, positional: tuple[object, ...], mask_x: object,
                  mask_y: object) -> tuple[object, object, object]:
    """``(y, mask_x, mask_y)`` from zeroproofml's accepted call forms."""
    if not positional:
        return y, mask_x, mask_y
    if mask_x is not None or mask_y is not None:
        raise TypeError(f"{alias} got masks both positionally and by keyword; use mask_x=, mask_y=")
    if len(positional) > 2:
        raise TypeError(f"{alias} takes at most 4 positional arguments (x, y, mask_x, mask_y)")
    second = positional[1] if len(positional) == 2 else None
    if _is_bool_array(y) and not _is_bool_array(positional[0]):  # (x, mask_x, y, mask_y)
        return positional[0], y, second
    return y, positional[0], second


def _binary(op: str, backend: str) -> Callable[..., Any]:
    alias, replacement = f"scm_{op}_{backend}", f"zpml_core.scm.{op}"

    def fn(x: Any, y: Any, *masks: Any, mask_x: Any = None, mask_y: Any = None) -> Any:
        _deprecated(alias, replacement)
        y, mask_x, mask_y = _binary_masks(alias, y, masks, mask_x, mask_y)
        _check_backend(alias, backend, replacement,
                       (("x", x), ("y", y), ("mask_x", mask_x), ("mask_y", mask_y)))
        from zpml_core import scm

        return getattr(scm, op)(x, y, mask_x=mask_x, mask_y=mask_y)

    return _named(fn, alias, replacement)


def _unary(op: str, backend: str) -> Callable[..., Any]:
    alias, replacement = f"scm_{op}_{backend}", f"zpml_core.scm.{op}"

    def fn(x: Any, mask: Any = None) -> Any:
        _deprecated(alias, replacement)
        _check_backend(alias, backend, replacement, (("x", x), ("mask", mask)))
        from zpml_core import scm

        return getattr(scm, op)(x, mask=mask)

    return _named(fn, alias, replacement)


def _pow(backend: str) -> Callable[..., Any]:
    alias, replacement = f"scm_pow_{backend}", "zpml_core.scm.pow"

    def fn(x: Any, exponent: Any, mask: Any = None) -> Any:
        _deprecated(alias, replacement)
        _check_backend(alias, backend, replacement,
                       (("x", x), ("exponent", exponent), ("mask", mask)))
        from zpml_core import scm

        return scm.pow(x, exponent, mask=mask)

    return _named(fn, alias, replacement)


def _lift(backend: str) -> Callable[..., Any]:
    alias, replacement = f"lift_targets_{backend}", "zpml_core.lift_targets"

    def fn(targets: Any) -> Any:
        _deprecated(alias, replacement)
        _check_backend(alias, backend, replacement, (("targets", targets),))
        from zpml_core.projective import lift_targets

        return lift_targets(targets)

    return _named(fn, alias, replacement)


def _strict(backend: str) -> Callable[..., Any]:
    alias, replacement = f"strict_inference_{backend}", "zpml_core.strict_inference"

    def fn(numerator: Any, denominator: Any, *, config: Any = None,
           experimental_provenance: bool | None = None, validity_factors: Any = None,
           validity_taus: Any = 1e-6) -> Any:
        _deprecated(alias, replacement)
        _check_backend(alias, backend, replacement,
                       (("numerator", numerator), ("denominator", denominator)))
        from zpml_core.inference import strict_inference

        return strict_inference(numerator, denominator, config=config,
                                experimental_provenance=experimental_provenance,
                                validity_factors=validity_factors, validity_taus=validity_taus)

    return _named(fn, alias, replacement)


def _implicit(backend: str) -> Callable[..., Any]:
    alias, replacement = f"implicit_loss_{backend}", "zpml_core.losses.implicit_loss"

    def fn(P: Any, Q: Any, Y_n: Any, Y_d: Any, gamma: float = 1e-9, *,
           detach_scale: bool = False) -> Any:
        _deprecated(alias, replacement)
        _check_backend(alias, backend, replacement, (("P", P), ("Q", Q), ("Y_n", Y_n), ("Y_d", Y_d)))
        from zpml_core.losses.implicit import implicit_loss

        return implicit_loss(P, Q, Y_n, Y_d, gamma, detach_scale=detach_scale)

    return _named(fn, alias, replacement)


def _named(fn: Callable[..., Any], alias: str, replacement: str) -> Callable[..., Any]:
    fn.__name__ = fn.__qualname__ = alias
    fn.__doc__ = (
        f"Deprecated zeroproofml name: calls ``{replacement}`` (``DeprecationWarning``); "
        f"array arguments must be {alias.rsplit('_', 1)[1]} arrays. Accepts zeroproofml's "
        "positional masks (see :mod:`zpml_core._compat_names`)."
    )
    ALIASES[alias] = replacement
    return fn


# zpml_core.scm
scm_add_numpy = _binary("add", "numpy")
scm_sub_numpy = _binary("sub", "numpy")
scm_mul_numpy = _binary("mul", "numpy")
scm_div_numpy = _binary("div", "numpy")
scm_inv_numpy = _unary("inv", "numpy")
scm_neg_numpy = _unary("neg", "numpy")
scm_pow_numpy = _pow("numpy")
scm_log_numpy = _unary("log", "numpy")
scm_exp_numpy = _unary("exp", "numpy")
scm_sqrt_numpy = _unary("sqrt", "numpy")
scm_sin_numpy = _unary("sin", "numpy")
scm_cos_numpy = _unary("cos", "numpy")
scm_tan_numpy = _unary("tan", "numpy")

scm_add_torch = _binary("add", "torch")
scm_sub_torch = _binary("sub", "torch")
scm_mul_torch = _binary("mul", "torch")
scm_div_torch = _binary("div", "torch")
scm_inv_torch = _unary("inv", "torch")
scm_neg_torch = _unary("neg", "torch")
scm_pow_torch = _pow("torch")
scm_log_torch = _unary("log", "torch")
scm_exp_torch = _unary("exp", "torch")
scm_sqrt_torch = _unary("sqrt", "torch")
scm_sin_torch = _unary("sin", "torch")
scm_cos_torch = _unary("cos", "torch")
scm_tan_torch = _unary("tan", "torch")

scm_add_jax = _binary("add", "jax")
scm_sub_jax = _binary("sub", "jax")
scm_mul_jax = _binary("mul", "jax")
scm_div_jax = _binary("div", "jax")
scm_inv_jax = _unary("inv", "jax")
scm_neg_jax = _unary("neg", "jax")
scm_pow_jax = _pow("jax")
scm_log_jax = _unary("log", "jax")
scm_exp_jax = _unary("exp", "jax")
scm_sqrt_jax = _unary("sqrt", "jax")
scm_sin_jax = _unary("sin", "jax")
scm_cos_jax = _unary("cos", "jax")
scm_tan_jax = _unary("tan", "jax")

#: the ``scm_<op>_<backend>`` names (re-exported by ``zpml_core.scm``)
SCM_ALIASES: tuple[str, ...] = tuple(
    f"scm_{op}_{b}" for b in ("numpy", "torch", "jax") for op in (*_BINARY, *_UNARY, "pow")
)

# zpml_core.training
lift_targets_numpy = _lift("numpy")
lift_targets_torch = _lift("torch")
lift_targets_jax = _lift("jax")

# zpml_core.inference
strict_inference_numpy = _strict("numpy")
strict_inference_jax = _strict("jax")

# zpml_core.losses
implicit_loss_jax = _implicit("jax")

