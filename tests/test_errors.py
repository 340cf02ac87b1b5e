"""Errors are part of the API (design rule 8, semantics §1.4, §2.2, §4.1, §10 #5/#21/#23).

* mixing libraries → TypeError naming both types;
* mismatched shapes → ValueError naming the arguments;
* non-bool/non-int masks → TypeError naming the argument;
* complex exponent → TypeError;
* invalid thresholds → ValueError/TypeError naming the argument;
* non-arrays where arrays are required → TypeError.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import requested_backends

from zpml_core import (
    InferenceConfig,
    decode,
    encode,
    get_backend_by_name,
    lift_semantic_targets,
    lift_targets,
    projectively_equal,
    renormalize,
    scm,
    strict_inference,
)

UNARY = ("inv", "neg", "log", "exp", "sqrt", "sin", "cos", "tan")
BINARY = ("add", "sub", "mul", "div")

# the type name each library's arrays carry in messages (module or class name)
TYPE_WORDS = {"numpy": "numpy", "torch": "torch", "jax": "jax", "strict": "array_api_strict"}


def _pairs():
    # numpy (core dependency) and array-api-strict (test extra) are always installed, so
    # every run, even ZPML_TEST_BACKENDS=<one backend>, has at least one pair to mix
    names = set(requested_backends()[0]) | {"numpy", "strict"}
    wanted = [("numpy", "torch"), ("torch", "jax"), ("numpy", "jax"), ("strict", "numpy"),
              ("strict", "torch"), ("jax", "strict")]
    return [p for p in wanted if p[0] in names and p[1] in names]


def _mk(name, data, dtype="float64"):
    b = get_backend_by_name(name)
    return b.asarray(np.asarray(data, dtype=dtype))


MIXED_CALLS = {
    "add": lambda a, b: scm.add(a, b),
    "div": lambda a, b: scm.div(a, b),
    "mul(mask_x)": lambda a, b: scm.mul(a, a, mask_x=b > 0),
    "sub(mask_y)": lambda a, b: scm.sub(a, a, mask_y=b > 0),
    "neg(mask)": lambda a, b: scm.neg(a, mask=b > 0),
    "sqrt(mask)": lambda a, b: scm.sqrt(a, mask=b > 0),
    "pow": lambda a, b: scm.pow(a, b),
    "pow(mask)": lambda a, b: scm.pow(a, 2.0, mask=b > 0),
    "encode": lambda a, b: encode(a, b > 0),
    "decode": lambda a, b: decode(a, b),
    "renormalize": lambda a, b: renormalize(a, b),
    "projectively_equal": lambda a, b: projectively_equal(a, a, b, a),
    "strict_inference": lambda a, b: strict_inference(a, b),
    "strict_inference(Q first)": lambda a, b: strict_inference(b, a),
    "strict_inference(validity)": lambda a, b: strict_inference(a, a, validity_factors=[b]),
}


@pytest.mark.parametrize("call", list(MIXED_CALLS))
@pytest.mark.parametrize("pair", _pairs(), ids=lambda p: f"{p[0]}+{p[1]}")
def test_mixed_libraries_type_error_names_both(pair, call):
    a = _mk(pair[0], [1.0, 2.0])
    b = _mk(pair[1], [3.0, 4.0])
    with pytest.raises(TypeError) as ei:
        MIXED_CALLS[call](a, b)
    msg = str(ei.value)
    for name in pair:
        assert TYPE_WORDS[name] in msg, f"{call}: message does not name {name}: {msg!r}"


# ---------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("op", BINARY)
def test_binary_shape_mismatch(arr, op):
    with pytest.raises(ValueError) as ei:
        getattr(scm, op)(arr([1.0, 2.0, 3.0]), arr([1.0, 2.0]))
    msg = str(ei.value)
    assert "x" in msg and "y" in msg and "(3,)" in msg and "(2,)" in msg, msg


@pytest.mark.parametrize(("kw", "name"), [("mask_x", "mask_x"), ("mask_y", "mask_y")])
def test_binary_mask_shape_mismatch(arr, kw, name):
    with pytest.raises(ValueError, match=name):
        scm.add(arr([1.0, 2.0, 3.0]), arr([1.0, 2.0, 3.0]), **{kw: arr([True, False], "bool")})


@pytest.mark.parametrize("op", UNARY)
def test_unary_mask_shape_mismatch(arr, op):
    with pytest.raises(ValueError, match="mask"):
        getattr(scm, op)(arr([1.0, 2.0, 3.0]), mask=arr([True, False], "bool"))


def test_pow_shape_mismatch(arr):
    with pytest.raises(ValueError, match="exponent"):
        scm.pow(arr([1.0, 2.0, 3.0]), arr([1.0, 2.0]))
    with pytest.raises(ValueError, match="mask"):
        scm.pow(arr([1.0, 2.0, 3.0]), 2.0, mask=arr([True, False], "bool"))


@pytest.mark.parametrize(
    ("fn", "names"),
    [
        (lambda a, b: encode(a, b > 0), ("value", "bottom")),
        (lambda a, b: decode(a, b), ("N", "D")),
        (lambda a, b: renormalize(a, b), ("N", "D")),
        (lambda a, b: projectively_equal(a, a, b, b), ("N1", "N2")),
        (lambda a, b: strict_inference(a, b), ("P", "Q")),
        (lambda a, b: strict_inference(a, a, validity_factors=[b]), ("validity_factors",)),
    ],
    ids=["encode", "decode", "renormalize", "projectively_equal", "strict_inference", "validity"],
)
def test_projective_shape_mismatch(arr, fn, names):
    with pytest.raises(ValueError) as ei:
        fn(arr([1.0, 2.0, 3.0]), arr([1.0, 2.0]))
    for n in names:
        assert n in str(ei.value), (n, str(ei.value))


# ---------------------------------------------------------------------------------------
# masks must be bool or integer


@pytest.mark.parametrize("op", UNARY)
def test_unary_float_mask(arr, op):
    with pytest.raises(TypeError, match="mask"):
        getattr(scm, op)(arr([1.0, 2.0]), mask=arr([0.0, 1.0]))


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("kw", ["mask_x", "mask_y"])
def test_binary_float_mask(arr, op, kw):
    with pytest.raises(TypeError, match=kw):
        getattr(scm, op)(arr([1.0, 2.0]), arr([1.0, 2.0]), **{kw: arr([0.0, 1.0])})


def test_pow_and_encode_float_mask(arr):
    with pytest.raises(TypeError, match="mask"):
        scm.pow(arr([1.0, 2.0]), 2.0, mask=arr([0.0, 1.0]))
    with pytest.raises(TypeError, match="bottom"):
        encode(arr([1.0, 2.0]), arr([0.0, 1.0]))


@pytest.mark.parametrize("bad", [[True, False], "mask", 1.5])
def test_non_array_mask(arr, bad):
    with pytest.raises(TypeError):
        scm.neg(arr([1.0, 2.0]), mask=bad)


def test_complex_mask(arr):
    with pytest.raises(TypeError, match="mask_x"):
        scm.add(arr([1.0]), arr([1.0]), mask_x=arr([1 + 0j], "complex128"))


def test_masks_are_keyword_only(arr):
    x = arr([1.0, 2.0])
    m = arr([True, False], "bool")
    with pytest.raises(TypeError):
        scm.add(x, x, m, m)  # type: ignore[misc]
    with pytest.raises(TypeError):
        scm.sqrt(x, m)  # type: ignore[misc]


# ---------------------------------------------------------------------------------------
# pow exponent must be real (semantics §1.4, §10 #5)


@pytest.mark.parametrize("e", [1j, 2 + 0j, complex(0.5, 0.0)])
def test_pow_complex_python_exponent(arr, e):
    with pytest.raises(TypeError, match="real"):
        scm.pow(arr([1.0, 2.0]), e)


@pytest.mark.parametrize("dtype", ["complex128", "complex64"])
@pytest.mark.parametrize("base", ["float64", "complex128"])
def test_pow_complex_array_exponent(arr, dtype, base):
    with pytest.raises(TypeError, match="real"):
        scm.pow(arr([1.0, 2.0], base), arr([2.0 + 0j, 1.0], dtype))


@pytest.mark.parametrize("e", ["2", None, [2.0]])
def test_pow_non_numeric_exponent(arr, e):
    with pytest.raises(TypeError):
        scm.pow(arr([1.0, 2.0]), e)


# ---------------------------------------------------------------------------------------
# thresholds


@pytest.mark.parametrize(("gamma", "exc"), [(-1.0, ValueError), (-1e-300, ValueError), (math.nan, ValueError),
                                            (math.inf, ValueError), ("0.1", TypeError), (None, TypeError),
                                            (True, TypeError), (1j, TypeError)])
def test_renormalize_gamma(arr, gamma, exc):
    with pytest.raises(exc, match="gamma"):
        renormalize(arr([3.0]), arr([4.0]), gamma=gamma)


@pytest.mark.parametrize(("atol", "exc"), [(-1e-8, ValueError), (math.nan, ValueError), (math.inf, ValueError),
                                           ("1e-8", TypeError), (None, TypeError), (False, TypeError)])
def test_projectively_equal_atol(arr, atol, exc):
    with pytest.raises(exc, match="atol"):
        projectively_equal(arr([1.0]), arr([2.0]), arr([2.0]), arr([4.0]), atol=atol)


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"tau_infer": "1e-6"}, TypeError, "tau_infer"),  # semantics §10 #23: str rejected
        ({"tau_infer": None}, TypeError, "tau_infer"),
        ({"tau_infer": True}, TypeError, "tau_infer"),
        ({"tau_infer": 0.0}, ValueError, "tau_infer"),
        ({"tau_infer": -1.0}, ValueError, "tau_infer"),
        ({"tau_infer": math.nan}, ValueError, "tau_infer"),
        ({"tau_infer": math.inf}, ValueError, "tau_infer"),
        ({"tau_train": "1e-4"}, TypeError, "tau_train"),
        ({"tau_train": False}, TypeError, "tau_train"),
        ({"tau_train": 1e-9}, ValueError, "tau_train"),
        ({"tau_train": math.inf}, ValueError, "tau_train"),
        ({"provenance": "yes"}, ValueError, "provenance"),
        ({"provenance_representation": "both"}, ValueError, "provenance_representation"),
        ({"numerical_hazard_threshold": -1.0}, ValueError, "numerical_hazard_threshold"),
        ({"provenance_fault_threshold": "1"}, TypeError, "provenance_fault_threshold"),
    ],
)
def test_inference_config_errors(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        InferenceConfig(**kwargs)


def test_renormalize_stop_gradient_type(arr):
    with pytest.raises(TypeError, match="stop_gradient"):
        renormalize(arr([3.0]), arr([4.0]), stop_gradient="yes")


# ---------------------------------------------------------------------------------------
# non-arrays where arrays are required


@pytest.mark.parametrize("bad", [[1.0, 2.0], (1.0, 2.0), "x", object(), {"a": 1}])
@pytest.mark.parametrize("op", BINARY)
def test_binary_non_array_operand(arr, op, bad):
    with pytest.raises(TypeError):
        getattr(scm, op)(bad, arr([1.0, 2.0]))
    with pytest.raises(TypeError):
        getattr(scm, op)(arr([1.0, 2.0]), bad)


@pytest.mark.parametrize("op", BINARY)
def test_binary_none_operand_names_argument(arr, op):
    with pytest.raises(TypeError, match="y"):
        getattr(scm, op)(arr([1.0]), None)
    with pytest.raises(TypeError, match="x"):
        getattr(scm, op)(None, arr([1.0]))


def test_non_array_operand_names_argument(arr):
    # design rule 8: bad Python arguments → TypeError naming the argument
    with pytest.raises(TypeError, match=r"\by\b"):
        scm.div(arr([1.0]), [1.0])
    with pytest.raises(TypeError, match=r"\bx\b"):
        scm.sqrt("4.0")


@pytest.mark.parametrize("bad", [[1.0, 2.0], "x", None, object()])
@pytest.mark.parametrize("op", UNARY)
def test_unary_non_array(op, bad):
    with pytest.raises(TypeError):
        getattr(scm, op)(bad)


@pytest.mark.parametrize(
    "call",
    [
        lambda a: lift_targets([1.0, 2.0]),
        lambda a: lift_targets(1.0),
        lambda a: lift_semantic_targets([1.0], ["finite"]),
        lambda a: lift_semantic_targets(1.0, "finite"),
        lambda a: strict_inference([1.0], a),
        lambda a: strict_inference(a, 1.0),
        lambda a: strict_inference(a, a, validity_factors=[[1.0]]),
        lambda a: decode([1.0], a),
        lambda a: decode(a, "1"),
        lambda a: encode([1.0], a > 0),
        lambda a: encode(a, [True]),
        lambda a: encode(a, None),
        lambda a: renormalize([1.0], a),
        lambda a: projectively_equal(a, a, [1.0], a),
        lambda a: scm.pow([1.0], 2.0),
    ],
    ids=["lift_targets(list)", "lift_targets(float)", "lift_semantic(list)", "lift_semantic(float)",
         "strict(P list)", "strict(Q float)", "strict(validity list)", "decode(list)", "decode(str)",
         "encode(list)", "encode(bottom list)", "encode(bottom None)", "renormalize(list)",
         "projectively_equal(list)", "pow(list)"],
)
def test_non_array_arguments(arr, call):
    with pytest.raises(TypeError):
        call(arr([1.0]))
