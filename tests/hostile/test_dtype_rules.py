"""Class "dtype rules": promote or reject — never truncate, never ignore a mask.

* Python scalars next to integer/bool arrays promote when they need a wider kind
  (``mul(int, 0.5)``, ``add(bool, 2.5)``); numbers that do not fit the operands' dtype
  raise ``ScalarRangeError`` (a ``ValueError`` and an ``OverflowError``) naming the
  argument.
* Integer overflow in ``add``/``sub``/``mul``/``neg`` is bottom, checked against exact
  Python-integer arithmetic for every integer dtype of every backend.
* Unsupported dtypes (``np.longdouble``, ml_dtypes' numpy ``bfloat16``, objects,
  strings) and array types (``np.matrix``, masked arrays) raise ``TypeError`` naming the
  argument, in every public function.
* numpy scalars are 0-d numpy arrays everywhere (``np.float64`` and ``np.float32`` alike).
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from zpml_core import scm, strict_inference
from zpml_core._xp import ScalarRangeError, default_float, default_int

from .public_api import PUBLIC, call, good

INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def _np(backend, x):
    return np.asarray(backend.to_numpy(x))


def _int_dtypes(backend, xp):
    """(name, dtype, arithmetic supported) for every integer dtype the library has."""
    out = []
    for name in INT_DTYPES:
        dt = getattr(xp, name, None)
        if dt is None:
            continue
        out.append((name, dt, backend.integer_arithmetic(dt)))
    return out


def _edge_ints(name):
    info = np.iinfo(name)
    cand = {0, 1, -1, 2, -2, 3, 7, 11, 127, -128, 255, 256, 1 << 15, (1 << 16) - 1,
            (1 << 31) - 1, -(1 << 31), 1 << 32, 3037000499, 3037000500, -3037000500,
            info.max, info.min, info.max - 1, info.min + 1, info.max // 2, info.min // 2,
            info.max // 3 + 1}
    return sorted(v for v in cand if info.min <= v <= info.max)


# ---------------------------------------------------------------------------------------
# promotion of Python scalars


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("scalar", [0.5, -2.5, 1e-3])
def test_float_scalar_promotes_integer_arrays(backend, xp, op, scalar):
    x = xp.asarray([2, 3, -4, 0], dtype=xp.int64)
    r = getattr(scm, op)(x, scalar)
    assert r.value.dtype == default_float(xp)
    fx = np.array([2.0, 3.0, -4.0, 0.0])
    want = {"add": fx + scalar, "sub": fx - scalar, "mul": fx * scalar, "div": fx / scalar}[op]
    got = _np(backend, r.value)
    assert not _np(backend, r.bottom).any()
    np.testing.assert_allclose(got, want.astype(got.dtype), rtol=1e-6)


@pytest.mark.parametrize("op", ["add", "mul"])
def test_bool_array_with_float_scalar_promotes(backend, xp, op):
    x = xp.asarray([True, False])
    r = getattr(scm, op)(x, 2.5)
    assert r.value.dtype == default_float(xp)
    want = np.array([3.5, 2.5]) if op == "add" else np.array([2.5, 0.0])
    np.testing.assert_allclose(_np(backend, r.value), want)


def test_bool_array_with_int_scalar_promotes_to_default_int(backend, xp):
    r = scm.add(xp.asarray([True, False]), 2)
    assert r.value.dtype == default_int(xp)
    assert _np(backend, r.value).tolist() == [3, 2]


def test_bool_add_mul_are_logical(backend, xp):
    a = xp.asarray([True, True, False, False])
    b = xp.asarray([True, False, True, False])
    s, p = scm.add(a, b), scm.mul(a, b)
    assert s.value.dtype == xp.bool and p.value.dtype == xp.bool
    assert _np(backend, s.value).tolist() == [True, True, True, False]
    assert _np(backend, p.value).tolist() == [True, False, False, False]
    assert not _np(backend, s.bottom).any() and not _np(backend, p.bottom).any()


@pytest.mark.parametrize("op", ["sub", "neg"])
def test_bool_sub_and_neg_raise_naming_the_argument(xp, op):
    a = xp.asarray([True, False])
    with pytest.raises(TypeError, match=r"\bx\b"):
        scm.sub(a, a) if op == "sub" else scm.neg(a)


# ---------------------------------------------------------------------------------------
# integer overflow is bottom


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
def test_integer_overflow_is_bottom(backend, xp, op):
    checked = 0
    for name, dt, arithmetic in _int_dtypes(backend, xp):
        vals = _edge_ints(name)
        pairs = list(itertools.product(vals, vals))
        a = xp.asarray(np.array([p[0] for p in pairs], dtype=name), dtype=dt)
        b = xp.asarray(np.array([p[1] for p in pairs], dtype=name), dtype=dt)
        if not arithmetic:
            with pytest.raises(TypeError, match=r"\bx\b.*" + name):
                getattr(scm, op)(a, b)
            continue
        r = getattr(scm, op)(a, b)
        assert r.value.dtype == dt
        value, bottom = _np(backend, r.value), _np(backend, r.bottom)
        info = np.iinfo(name)
        for i, (x, y) in enumerate(pairs):
            exact = {"add": x + y, "sub": x - y, "mul": x * y}[op]
            fits = info.min <= exact <= info.max
            assert bool(bottom[i]) == (not fits), (name, op, x, y)
            assert int(value[i]) == (exact if fits else 0), (name, op, x, y, value[i])
        checked += 1
    assert checked >= 4


def test_integer_neg_overflow_is_bottom(backend, xp):
    for name, dt, arithmetic in _int_dtypes(backend, xp):
        vals = _edge_ints(name)
        a = xp.asarray(np.array(vals, dtype=name), dtype=dt)
        if not arithmetic:
            with pytest.raises(TypeError, match=r"\bx\b"):
                scm.neg(a)
            continue
        r = scm.neg(a)
        value, bottom = _np(backend, r.value), _np(backend, r.bottom)
        info = np.iinfo(name)
        for i, x in enumerate(vals):
            fits = info.min <= -x <= info.max
            assert bool(bottom[i]) == (not fits), (name, x)
            assert int(value[i]) == (-x if fits else 0), (name, x)


def test_integer_masks_still_apply(backend, xp):
    a = xp.asarray([1, 2, 3], dtype=xp.int32)
    r = scm.add(a, a, mask_x=xp.asarray([False, True, False]))
    assert _np(backend, r.bottom).tolist() == [False, True, False]
    assert _np(backend, r.value).tolist() == [2, 0, 6]


# ---------------------------------------------------------------------------------------
# numbers that do not fit


@pytest.mark.parametrize(("dtype", "scalar"), [
    ("int8", 128), ("int8", -129), ("uint8", -1), ("uint8", 256), ("int64", 2**63),
    ("int64", 2**70), ("float64", 10**400), ("float32", 1e39), ("float32", 10**39),
    ("float32", -3.5e38),
])
def test_out_of_range_scalar_raises_naming_argument(xp, dtype, scalar):
    dt = getattr(xp, dtype)
    x = xp.asarray([1, 2], dtype=dt)
    for err in (ValueError, OverflowError):
        with pytest.raises(err, match=r"\by="):
            scm.add(x, scalar)
    with pytest.raises(ScalarRangeError, match=r"\bx="):
        scm.mul(scalar, x)


def test_float16_scalar_range(backend, xp):
    if not hasattr(xp, "float16"):
        pytest.skip(f"{backend.name} has no float16")
    x = xp.asarray([2.0], dtype=xp.float16)
    with pytest.raises(ScalarRangeError, match=r"\by=70000"):
        scm.mul(x, 70000.0)
    with pytest.raises(ScalarRangeError, match=r"\by=65520"):
        scm.add(x, 65520.0)  # the rounding edge of float16: would round to inf
    r = scm.add(x, 65519.0)  # rounds to 65504 (finite): a legal operand
    assert _np(backend, r.bottom).tolist() == [False]  # 65504 + 2 rounds to 65504
    assert _np(backend, r.value).tolist() == [65504.0]
    r = scm.mul(x, 65519.0)
    assert _np(backend, r.bottom).tolist() == [True]  # 2·65504 overflows float16
    r = scm.add(x, float("inf"))  # explicit infinities are bottom operands, not errors
    assert _np(backend, r.bottom).tolist() == [True]


def test_pow_exponent_range(xp):
    x = xp.asarray([2.0], dtype=xp.float32)
    with pytest.raises(ScalarRangeError, match="exponent"):
        scm.pow(x, 1e300)
    with pytest.raises(ScalarRangeError, match="exponent"):
        scm.pow(x, 10**400)


# ---------------------------------------------------------------------------------------
# unsupported dtypes and array types, in every public function


def _bad_arrays():
    out = {
        "longdouble": np.array([1.0, 2.0, 3.0, 4.0], dtype=np.longdouble),
        "clongdouble": np.array([1.0, 2.0, 3.0, 4.0], dtype=np.clongdouble),
        "object": np.array([1.0, 2.0, 3.0, 4.0], dtype=object),
        "str": np.array(["a", "b", "c", "d"]),
        "masked": np.ma.masked_array([1.0, 2.0, 3.0, 4.0], mask=[False, True, False, False]),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        out["matrix"] = np.matrix([[1.0, 2.0, 3.0, 4.0]])
    try:
        import ml_dtypes

        out["ml_bfloat16"] = np.array([1.0, 2.0, 3.0, 4.0], dtype=ml_dtypes.bfloat16)
    except ImportError:  # pragma: no cover - jax installs ml_dtypes
        pass
    return out


BAD = _bad_arrays()


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("public", PUBLIC, ids=lambda p: p.name)
def test_unsupported_arrays_raise_naming_the_argument(public, kind):
    import array_api_compat.numpy as nxp

    inputs = good(nxp, public)
    for arg in public.args:
        bad_inputs = dict(inputs)
        bad_inputs[arg] = BAD[kind]
        with pytest.raises(TypeError) as info:
            call(public, bad_inputs)
        assert arg in str(info.value), (public.name, arg, str(info.value))


def test_torch_storage_only_dtypes_raise_naming_the_argument():
    torch = pytest.importorskip("torch")
    x = torch.tensor([1, 2], dtype=torch.uint32)
    with pytest.raises(TypeError, match=r"\bx\b.*uint32"):
        scm.add(x, x)
    r = scm.div(x, x)  # promoted to float: fine
    assert r.value.dtype == torch.get_default_dtype()


# ---------------------------------------------------------------------------------------
# numpy scalars are 0-d arrays


@pytest.mark.parametrize("ctor", [np.float64, np.float32, np.float16])
def test_numpy_scalars_are_zero_d_arrays(ctor):
    res = strict_inference(ctor(1.0), ctor(2.0))
    assert res.decoded.dtype == np.dtype(ctor)
    assert float(res.decoded) == 0.5
    r = scm.div(ctor(1.0), np.asarray([2.0, 0.0], dtype=ctor))
    assert r.value.dtype == np.dtype(ctor)
    assert r.bottom.tolist() == [False, True]
    # a numpy scalar is a strong (array) operand: float64 scalar promotes float32
    r = scm.add(np.float64(1.0), np.asarray([1.0], dtype=np.float32))
    assert r.value.dtype == np.float64
    # numpy bool scalar as a mask
    r = scm.log(np.asarray([1.0, 2.0]), mask=np.True_)
    assert r.bottom.tolist() == [True, True]


def test_numpy_bool_scalar_is_not_a_number():
    from zpml_core.inference import InferenceConfig

    with pytest.raises(TypeError, match="tau_infer"):
        InferenceConfig(tau_infer=np.True_)


def _outputs(result):
    """Every array in a public function's result (tuples, NamedTuples, InferenceResult's
    extra masks, the breakdown dict of SCMTrainingLoss)."""
    if isinstance(result, dict):
        for v in result.values():
            yield from _outputs(v)
    elif isinstance(result, tuple):
        for v in result:
            yield from _outputs(v)
        for extra in ("fault_mask", "semantic_bottom_mask", "bottom_provenance"):
            if hasattr(result, extra):
                yield getattr(result, extra)
    else:
        yield result


@pytest.mark.parametrize("public", PUBLIC, ids=lambda p: p.name)
def test_zero_d_inputs_give_arrays_of_the_library(xp, public):
    """0-d inputs give arrays of the input's library (numpy ufuncs would return numpy
    scalars such as ``np.False_``)."""
    array_type = type(xp.asarray(1.0))
    inputs = {k: xp.reshape(v, ()) if v.ndim else v for k, v in good(xp, public, n=1).items()}
    outs = list(_outputs(call(public, inputs)))
    assert outs
    for o in outs:
        assert isinstance(o, array_type), (public.name, type(o))
        assert o.ndim == 0, (public.name, o.shape)
