"""Library, dtype and device preservation of every public function (design rule 7,
semantics §1.1, §1.3, §10 #4/#6/#19).

array-api-strict runs in multi-device mode: inputs on ``Device('device1')`` must give
outputs on ``'device1'`` (a creation call without ``device=`` lands on the default device
and is caught here).
"""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

from zpml_core import (
    InferenceConfig,
    decode,
    encode,
    lift_semantic_targets,
    lift_targets,
    projectively_equal,
    renormalize,
    scm,
    strict_inference,
)

UNARY = ("inv", "neg", "log", "exp", "sqrt", "sin", "cos", "tan")
BINARY = ("add", "sub", "mul", "div")
FUNCS = (*UNARY, *BINARY, "pow", "lift_targets", "lift_semantic_targets", "encode", "decode",
         "renormalize", "projectively_equal", "strict_inference")


def default_float(xp):
    return xp.__array_namespace_info__().default_dtypes()["real floating"]


def default_int(xp):
    return xp.__array_namespace_info__().default_dtypes()["integral"]


@pytest.fixture
def dev(backend, xp):
    """A non-default device where the library has one (array-api-strict multi-device)."""
    if backend.name == "strict":
        d = xp.Device("device1")
        # guard: the fixture would be vacuous if device1 were the default device
        assert xp.asarray(1.0).device != d
        return d
    return None


def _call(name, A, mask):
    """Run public function ``name`` on arrays built by ``A``; return [(output, kind)] with
    kind 'f' (floating result), 'b' (bool mask) or 'i' (default int)."""
    x = A([0.5, 2.0, 0.0, -1.0])
    y = A([2.0, 0.0, -1.0, 3.0])
    if name in UNARY:
        r = getattr(scm, name)(x, mask=mask)
        return [(r.value, "f"), (r.bottom, "b")]
    if name in BINARY:
        r = getattr(scm, name)(x, y, mask_x=mask, mask_y=mask)
        return [(r.value, "f"), (r.bottom, "b")]
    if name == "pow":
        r = scm.pow(x, y, mask=mask)
        r2 = scm.pow(x, 2.0)
        return [(r.value, "f"), (r.bottom, "b"), (r2.value, "f"), (r2.bottom, "b")]
    if name == "lift_targets":
        return [(o, "f") for o in lift_targets(x)]
    if name == "lift_semantic_targets":
        st = lift_semantic_targets(x, ["finite", "censored_below", "fault", "missing"])
        return [(st.Y_n, "f"), (st.Y_d, "f"), (st.mask_finite, "b"), (st.mask_bottom, "b"),
                (st.orientation_label, "i"), (st.bottom_kind, "i")]
    if name == "encode":
        return [(o, "f") for o in encode(x, mask)]
    if name == "decode":
        r = decode(x, y)
        return [(r.value, "f"), (r.bottom, "b")]
    if name == "renormalize":
        return [(o, "f") for o in renormalize(x, y)]
    if name == "projectively_equal":
        return [(projectively_equal(x, y, y, x), "b")]
    if name == "strict_inference":
        res = strict_inference(x, y, config=InferenceConfig(tau_train=1e-4))
        return [(res[0], "f"), (res[1], "b"), (res[2], "b"), (res.fault_mask, "b"),
                (res.semantic_bottom_mask, "b"), (res.bottom_provenance, "i")]
    raise AssertionError(name)


def _check(xp, outputs, like, float_dtype):
    for out, kind in outputs:
        assert type(out) is type(like), (type(out), type(like))
        assert array_api_compat.array_namespace(out) is array_api_compat.array_namespace(like)
        assert array_api_compat.device(out) == array_api_compat.device(like), (
            array_api_compat.device(out), array_api_compat.device(like))
        want = {"f": float_dtype, "b": xp.bool, "i": default_int(xp)}[kind]
        assert out.dtype == want, (kind, out.dtype, want)
        assert out.shape == (4,)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", FUNCS)
def test_float_dtype_library_device_preserved(arr, xp, dev, name, dtype):
    def A(data):
        return arr(data, dtype, device=dev)

    like = A([1.0])
    if dev is not None:
        assert array_api_compat.device(like) == dev
    mask = arr([False, True, False, False], "bool", device=dev)
    _check(xp, _call(name, A, mask), like, like.dtype)


@pytest.mark.parametrize("name", FUNCS)
def test_float32_results_not_float64(arr, name):
    # a literal created without dtype= would silently upcast float32 in numpy
    outs = _call(name, lambda d: arr(d, "float32"), arr([True, False, False, False], "bool"))
    for out, kind in outs:
        if kind == "f":
            assert arr.np(out).dtype == np.float32


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("name", [*UNARY, *BINARY, "pow", "decode", "encode"])
def test_complex_dtype_preserved(arr, xp, dev, name, dtype):
    x = arr([0.5 + 1j, 2.0, 0.0, -1.0], dtype, device=dev)
    y = arr([2.0, 0.0, -1.0j, 3.0], dtype, device=dev)
    if name in UNARY:
        r = getattr(scm, name)(x)
    elif name in BINARY:
        r = getattr(scm, name)(x, y)
    elif name == "pow":
        r = scm.pow(x, 2.0)
    elif name == "decode":
        r = decode(x, y)
    else:
        r = encode(x, arr([True, False, False, False], "bool", device=dev))
    _check(xp, [(r[0], "f")], x, x.dtype)
    if name != "encode":
        _check(xp, [(r[1], "b")], x, x.dtype)


# ---------------------------------------------------------------------------------------
# integer inputs (semantics §1.3 / §10 #4): add/sub/mul/neg keep int, the rest promote to the
# library's default float


@pytest.mark.parametrize("int_dtype", ["int32", "int64"])
@pytest.mark.parametrize("name", ["add", "sub", "mul", "neg"])
def test_int_inputs_keep_int(arr, xp, dev, name, int_dtype):
    x = arr([3, -2, 0], int_dtype, device=dev)
    y = arr([4, 5, -7], int_dtype, device=dev)
    r = scm.neg(x) if name == "neg" else getattr(scm, name)(x, y)
    assert r.value.dtype == x.dtype
    assert r.bottom.dtype == xp.bool
    assert array_api_compat.device(r.value) == array_api_compat.device(x)
    expected = {"add": [7, 3, -7], "sub": [-1, -7, 7], "mul": [12, -10, 0], "neg": [-3, 2, 0]}[name]
    assert arr.np(r.value).tolist() == expected
    assert not arr.np(r.bottom).any()
    # masks still apply
    m = arr([True, False, False], "bool", device=dev)
    r = scm.neg(x, mask=m) if name == "neg" else getattr(scm, name)(x, y, mask_x=m)
    assert arr.np(r.value).tolist() == [0, *expected[1:]]
    assert arr.np(r.bottom).tolist() == [True, False, False]


@pytest.mark.parametrize("int_dtype", ["int32", "int64"])
@pytest.mark.parametrize("name", ["div", "inv", "log", "exp", "sqrt", "sin", "cos", "tan", "pow"])
def test_int_inputs_promote_to_default_float(arr, xp, dev, name, int_dtype):
    x = arr([4, 1, 0], int_dtype, device=dev)
    y = arr([2, 0, 3], int_dtype, device=dev)
    if name == "div":
        r = scm.div(x, y)
        exp_v, exp_b = [2.0, 0.0, 0.0], [False, True, False]
    elif name == "pow":
        r = scm.pow(x, y)
        exp_v, exp_b = [16.0, 1.0, 0.0], [False, False, False]
    else:
        r = getattr(scm, name)(x)
        exp_v = exp_b = None
    assert r.value.dtype == default_float(xp), (r.value.dtype, default_float(xp))
    assert r.bottom.dtype == xp.bool
    assert array_api_compat.device(r.value) == array_api_compat.device(x)
    if exp_v is not None:
        assert arr.np(r.value).tolist() == exp_v and arr.np(r.bottom).tolist() == exp_b
    if name == "sqrt":
        assert arr.np(r.value).tolist() == [2.0, 1.0, 0.0]
    if name in ("inv", "log"):
        assert arr.np(r.bottom).tolist() == [False, False, True]


@pytest.mark.parametrize("name", ["lift_targets", "lift_semantic_targets", "encode", "decode",
                                  "renormalize", "strict_inference"])
def test_int_inputs_projective_promote(arr, xp, dev, name):
    def A(data):
        return arr(np.asarray(data).astype(np.int64), "int64", device=dev)

    mask = arr([False, True, False, False], "bool", device=dev)
    outs = _call(name, A, mask)
    for out, kind in outs:
        want = {"f": default_float(xp), "b": xp.bool, "i": default_int(xp)}[kind]
        assert out.dtype == want
        assert array_api_compat.device(out) == array_api_compat.device(A([1]))


# ---------------------------------------------------------------------------------------
# Python scalars (semantics §1.4, §10 #6)


def test_python_scalars_only():
    r = scm.div(1.0, 0.0)
    assert bool(np.asarray(r.bottom)) is True
    assert float(np.asarray(r.value)) == 0.0
    r = scm.div(1.0, 4.0)
    assert not bool(np.asarray(r.bottom)) and float(np.asarray(r.value)) == 0.25
    r = scm.add(1.0, 2.0)
    assert float(np.asarray(r.value)) == 3.0
    r = scm.sqrt(-4.0)
    assert bool(np.asarray(r.bottom))
    r = scm.log(0.0)
    assert bool(np.asarray(r.bottom))
    r = scm.pow(0.0, -1.0)
    assert bool(np.asarray(r.bottom))
    r = scm.exp(1000.0)
    assert bool(np.asarray(r.bottom)) and float(np.asarray(r.value)) == 0.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", BINARY)
def test_python_scalar_with_array(arr, xp, dev, op, dtype):
    # the Python scalar adopts the array's dtype, library and device
    x = arr([1.0, 4.0], dtype, device=dev)
    for r in (getattr(scm, op)(x, 2.0), getattr(scm, op)(2.0, x), getattr(scm, op)(x, 2)):
        assert r.value.dtype == x.dtype and type(r.value) is type(x)
        assert array_api_compat.device(r.value) == array_api_compat.device(x)
        assert r.value.shape == (2,)
    r = getattr(scm, op)(x, 0.0)
    assert arr.np(r.bottom).tolist() == ([True, True] if op == "div" else [False, False])
    r = scm.div(1.0, x)
    assert arr.np(r.value).tolist() == [1.0, 0.25]


def test_python_scalar_exponent(arr, dev):
    x = arr([4.0, -8.0], "float32", device=dev)
    for e in (0.5, 2, 3.0):
        r = scm.pow(x, e)
        assert r.value.dtype == x.dtype
        assert array_api_compat.device(r.value) == array_api_compat.device(x)
    assert arr.np(scm.pow(x, 2).value).tolist() == [16.0, 64.0]
    assert arr.np(scm.pow(x, 0.5).bottom).tolist() == [False, True]
