"""Projective helpers (semantics §2, §3 and decisions §10 #19–#22), on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zpml_core import projective
from zpml_core.projective import (
    decode,
    encode,
    lift_semantic_targets,
    lift_targets,
    projectively_equal,
    renormalize,
)

INF, NAN = math.inf, math.nan
F64_TINY = float(np.finfo(np.float64).smallest_normal)


def default_float(xp):
    return xp.__array_namespace_info__().default_dtypes()["real floating"]


def default_int(xp):
    return xp.__array_namespace_info__().default_dtypes()["integral"]


def same_bits(a, e):
    a, e = np.asarray(a), np.asarray(e, dtype=a.dtype)
    assert a.shape == e.shape, (a.shape, e.shape)
    assert np.array_equal(a, e), (a, e)
    assert (np.signbit(a) == np.signbit(e)).all(), ("signed zeros differ", a, e)


def grads(backend, f, *args):
    """Gradients of the scalar ``f(*args)`` w.r.t. every argument (float64), as numpy."""
    if backend.name == "torch":
        import torch

        ts = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in args]
        out = f(*ts)
        gs = torch.autograd.grad(out, ts, allow_unused=True)
        return [np.zeros(np.shape(a)) if g is None else g.numpy() for g, a in zip(gs, args, strict=True)]
    if backend.name == "jax":
        import jax
        import jax.numpy as jnp

        gs = jax.grad(f, argnums=tuple(range(len(args))))(*[jnp.asarray(np.asarray(a, dtype=np.float64)) for a in args])
        return [np.asarray(g) for g in gs]
    raise NotImplementedError(backend.name)


# ---------------------------------------------------------------------------------------
# lift_targets (semantics §3.1, §10 #19)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lift_targets_table(arr, dtype):
    y = [1.5, -0.0, 0.0, 1e20, -7.0, INF, -INF, NAN]
    yn, yd = lift_targets(arr(y, dtype))
    n, d = arr.np(yn), arr.np(yd)
    assert n.dtype == np.dtype(dtype) and d.dtype == np.dtype(dtype)
    same_bits(n, [1.5, -0.0, 0.0, 1e20, -7.0, 1.0, -1.0, 1.0])
    same_bits(d, [1, 1, 1, 1, 1, 0, 0, 0])


def test_lift_targets_extremes_f64(arr):
    yn, yd = lift_targets(arr([1e308, -1e308, 1e-320, -1e-320]))
    n, d = arr.np(yn), arr.np(yd)
    assert n[0] == 1e308 and n[1] == -1e308
    # subnormal finite targets stay finite (value within the subnormal band, sign kept)
    assert abs(n[2] - 1e-320) < F64_TINY and not np.signbit(n[2])
    assert abs(n[3] + 1e-320) < F64_TINY and np.signbit(n[3])
    same_bits(d, [1.0, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("int_dtype", ["int64", "int32"])
def test_lift_targets_int_promotes_to_default_float(arr, xp, int_dtype):
    yn, yd = lift_targets(arr([1, -2, 0], int_dtype))
    assert yn.dtype == default_float(xp) and yd.dtype == default_float(xp)
    same_bits(arr.np(yn), [1.0, -2.0, 0.0])
    same_bits(arr.np(yd), [1.0, 1.0, 1.0])


def test_lift_targets_shape_and_0d(arr):
    yn, yd = lift_targets(arr([[1.0, INF], [-INF, 2.0]]))
    same_bits(arr.np(yn), [[1.0, 1.0], [-1.0, 2.0]])
    same_bits(arr.np(yd), [[1.0, 0.0], [0.0, 1.0]])
    yn, yd = lift_targets(arr(-INF))
    assert arr.np(yn).shape == () and float(arr.np(yn)) == -1.0 and float(arr.np(yd)) == 0.0


@pytest.mark.parametrize("bad", [[1.0, 2.0], 1.0, (1.0,), "y", None])
def test_lift_targets_rejects_non_arrays(bad):
    with pytest.raises(TypeError):
        lift_targets(bad)


# ---------------------------------------------------------------------------------------
# lift_semantic_targets (semantics §3.2)

LABELS = ["finite", "bottom", "censored_below", "censored_above", "domain_invalid", "fault", "missing"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lift_semantic_targets_table(arr, xp, dtype):
    # values at non-finite labels are ignored (may be NaN/inf)
    y = [2.5, NAN, INF, -INF, 3.0, 7.0, NAN]
    st = lift_semantic_targets(arr(y, dtype), LABELS)
    assert isinstance(st, projective.SemanticTargets)
    same_bits(arr.np(st.Y_n), np.array([2.5, 1, -1, 1, 1, 1, 0], dtype=dtype))
    same_bits(arr.np(st.Y_d), np.array([1, 0, 0, 0, 0, 0, 1], dtype=dtype))
    assert arr.np(st.mask_finite).tolist() == [True, False, False, False, False, False, False]
    assert arr.np(st.mask_bottom).tolist() == [False, True, True, True, True, True, False]
    assert arr.np(st.orientation_label).tolist() == [0, 0, -1, 1, 0, 0, 0]
    assert arr.np(st.bottom_kind).tolist() == [0, 2, 2, 2, 2, 1, 0]
    assert st.Y_n.dtype == st.Y_d.dtype == arr(y, dtype).dtype
    assert st.mask_finite.dtype == xp.bool and st.mask_bottom.dtype == xp.bool
    assert st.orientation_label.dtype == default_int(xp)
    assert st.bottom_kind.dtype == default_int(xp)


def test_lift_semantic_targets_constants():
    assert (projective.ORIENTATION_BELOW, projective.ORIENTATION_NONE, projective.ORIENTATION_ABOVE) == (-1, 0, 1)
    assert (projective.BOTTOM_KIND_NONE, projective.BOTTOM_KIND_FAULT, projective.BOTTOM_KIND_SEMANTIC) == (0, 1, 2)
    assert set(projective.STATUS_LABELS) == set(LABELS)


def test_lift_semantic_targets_2d_and_numpy_labels(arr):
    y = arr([[1.0, -0.0], [NAN, 4.0]])
    labels = [["finite", "finite"], ["censored_below", "finite"]]
    for lab in (labels, tuple(tuple(r) for r in labels), np.array(labels)):
        st = lift_semantic_targets(y, lab)
        same_bits(arr.np(st.Y_n), [[1.0, -0.0], [-1.0, 4.0]])
        same_bits(arr.np(st.Y_d), [[1.0, 1.0], [0.0, 1.0]])
        assert arr.np(st.orientation_label).tolist() == [[0, 0], [-1, 0]]
        assert arr.np(st.mask_bottom).tolist() == [[False, False], [True, False]]


def test_lift_semantic_targets_0d(arr):
    st = lift_semantic_targets(arr(INF), "censored_above")
    assert arr.np(st.Y_n).shape == ()
    assert float(arr.np(st.Y_n)) == 1.0 and float(arr.np(st.Y_d)) == 0.0
    assert int(arr.np(st.orientation_label)) == 1 and int(arr.np(st.bottom_kind)) == 2
    st = lift_semantic_targets(arr(3.0), "finite")
    assert float(arr.np(st.Y_n)) == 3.0 and bool(arr.np(st.mask_finite))


def test_lift_semantic_targets_int_targets(arr, xp):
    st = lift_semantic_targets(arr([3, 4], "int64"), ["finite", "fault"])
    assert st.Y_n.dtype == default_float(xp)
    same_bits(arr.np(st.Y_n), [3.0, 1.0])


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_lift_semantic_targets_finite_label_on_nonfinite(arr, value):
    with pytest.raises(ValueError, match="finite"):
        lift_semantic_targets(arr([1.0, value]), ["finite", "finite"])


def test_lift_semantic_targets_unknown_label(arr):
    with pytest.raises(ValueError) as ei:
        lift_semantic_targets(arr([1.0, 2.0]), ["finite", "infinite"])
    msg = str(ei.value)
    assert "infinite" in msg
    for lab in LABELS:  # the message lists the allowed set
        assert lab in msg


@pytest.mark.parametrize(
    ("shape", "labels"),
    [
        ((3,), ["finite", "finite"]),
        ((2, 2), ["finite", "finite", "finite", "finite"]),
        ((), ["finite"]),
        ((1,), "finite"),
    ],
)
def test_lift_semantic_targets_shape_mismatch(arr, shape, labels):
    with pytest.raises(ValueError, match="shape"):
        lift_semantic_targets(arr(np.ones(shape)), labels)


@pytest.mark.parametrize(
    "labels",
    [[["finite", "bottom"], ["finite"]], ["finite", ["bottom"]], [["finite"], "bottom"]],
)
def test_lift_semantic_targets_ragged(arr, labels):
    with pytest.raises(ValueError, match="ragged"):
        lift_semantic_targets(arr(np.ones((2, 2))), labels)


@pytest.mark.parametrize("labels", [5, None, 1.5, {"finite": 1}, [1, 2], [None, "finite"]])
def test_lift_semantic_targets_label_type(arr, labels):
    with pytest.raises(TypeError):
        lift_semantic_targets(arr([1.0, 2.0]), labels)


@pytest.mark.parametrize("y", [[1.0, 2.0], 1.0, None])
def test_lift_semantic_targets_non_array_targets(y):
    with pytest.raises(TypeError):
        lift_semantic_targets(y, ["finite", "finite"])


# ---------------------------------------------------------------------------------------
# encode / decode (semantics §2.1 array contract, §10 #22)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bottom_dtype", ["bool", "int64"])
def test_encode(arr, xp, dtype, bottom_dtype):
    n, d = encode(arr([1.5, 0.0, -2.0, -0.0], dtype), arr([0, 1, 0, 0], bottom_dtype))
    assert n.dtype == d.dtype == arr([0.0], dtype).dtype
    same_bits(arr.np(n), np.array([1.5, 1.0, -2.0, -0.0], dtype=dtype))
    same_bits(arr.np(d), np.array([1.0, 0.0, 1.0, 1.0], dtype=dtype))


def test_encode_broadcast_and_complex(arr):
    n, d = encode(arr([1.0, 2.0]), arr([[True], [False]], "bool"))
    same_bits(arr.np(n), [[1.0, 1.0], [1.0, 2.0]])
    same_bits(arr.np(d), [[0.0, 0.0], [1.0, 1.0]])
    n, d = encode(arr([1 + 2j, 3j], "complex128"), arr([False, True], "bool"))
    assert arr.np(n).tolist() == [1 + 2j, 1 + 0j]
    assert arr.np(d).tolist() == [1, 0]


def test_encode_decode_roundtrip(arr):
    v = arr([0.25, -3.0, 1e300, -0.0])
    b = arr([False, True, False, False], "bool")
    r = decode(*encode(v, b))
    assert arr.np(r.bottom).tolist() == [False, True, False, False]
    same_bits(arr.np(r.value), [0.25, 0.0, 1e300, -0.0])


# (N, D, expected value or None for ⊥)
DECODE_CASES = [
    (6.0, 3.0, 2.0),
    (3.0, -2.0, -1.5),
    (-0.0, 5.0, -0.0),
    (1.0, 0.0, None),
    (0.0, 0.0, None),
    (-1.0, 0.0, None),
    (1.0, -0.0, None),
    (INF, 1.0, None),  # reference raises ValueError; the array form gives ⊥ (semantics §10 #22)
    (1.0, INF, None),
    (1.0, NAN, None),
    (NAN, 1.0, None),
    (1e308, 1e-5, None),  # non-finite quotient
    (1.0, 1e-320, None),  # subnormal D (DAZ)
    (0.0, 1e-308, None),  # subnormal D (DAZ)
    (1.0, F64_TINY, 2.0**1022),  # smallest normal D is fine
    (1e-300, 1e-10, 1e-300 / 1e-10),
    (1e-320, 1.0, 0.0),  # DAZ numerator (IEEE value 1e-320 is within the subnormal band)
]


def test_decode_table(arr):
    n = arr([c[0] for c in DECODE_CASES])
    d = arr([c[1] for c in DECODE_CASES])
    r = decode(n, d)  # must not raise
    b, v = arr.np(r.bottom), arr.np(r.value)
    assert b.dtype == np.bool_ and v.dtype == np.float64
    assert b.tolist() == [c[2] is None for c in DECODE_CASES]
    assert np.isfinite(v).all()
    assert (v[b] == 0).all() and not np.signbit(v[b]).any()
    for i, (_, _, e) in enumerate(DECODE_CASES):
        if e is None:
            continue
        if abs(e) < F64_TINY:
            assert abs(v[i] - e) < F64_TINY and np.signbit(v[i]) == np.signbit(e), (i, v[i], e)
        else:
            assert v[i] == e, (i, v[i], e)


def test_decode_f32_and_broadcast(arr):
    r = decode(arr([[1.0], [2.0]], "float32"), arr([4.0, 0.0, 1e-40], "float32"))
    assert arr.np(r.value).dtype == np.float32
    assert arr.np(r.bottom).tolist() == [[False, True, True], [False, True, True]]
    same_bits(arr.np(r.value), np.array([[0.25, 0, 0], [0.5, 0, 0]], dtype=np.float32))


def test_decode_int_and_complex(arr, xp):
    r = decode(arr([3, 1], "int64"), arr([2, 0], "int64"))
    assert r.value.dtype == default_float(xp)
    assert arr.np(r.value).tolist() == [1.5, 0.0] and arr.np(r.bottom).tolist() == [False, True]
    r = decode(arr([1 + 1j, 1j], "complex128"), arr([2 + 0j, 0j], "complex128"))
    assert arr.np(r.value).tolist() == [0.5 + 0.5j, 0j] and arr.np(r.bottom).tolist() == [False, True]


# ---------------------------------------------------------------------------------------
# renormalize (semantics §2.2 with §10 #21: scaled norm, gamma validated)


def test_renormalize_3_4(arr):
    n, d = renormalize(arr([3.0]), arr([4.0]), gamma=0.0)
    assert arr.np(n).tolist() == [3 / 5] and arr.np(d).tolist() == [4 / 5]
    n, d = renormalize(arr([3.0]), arr([4.0]))  # default gamma = 1e-9
    s = 5.0 + 1e-9
    np.testing.assert_allclose(arr.np(n), [3 / s], rtol=4e-16, atol=0)
    np.testing.assert_allclose(arr.np(d), [4 / s], rtol=4e-16, atol=0)
    n, d = renormalize(arr([3.0]), arr([4.0]), 0.5)
    np.testing.assert_allclose(arr.np(n), [3 / 5.5], rtol=4e-16)
    np.testing.assert_allclose(arr.np(d), [4 / 5.5], rtol=4e-16)
    assert abs(arr.np(n)[0] - 0.5454545454545454) < 1e-15


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_renormalize_unit_norm(arr, dtype):
    rng = np.random.default_rng(0)
    N = rng.normal(size=64) * 10.0 ** rng.integers(-5, 5, size=64)
    D = rng.normal(size=64) * 10.0 ** rng.integers(-5, 5, size=64)
    n, d = renormalize(arr(N, dtype), arr(D, dtype), gamma=0.0)
    n, d = arr.np(n), arr.np(d)
    assert n.dtype == d.dtype == np.dtype(dtype)
    eps = float(np.finfo(dtype).eps)
    norm = np.hypot(n.astype(np.float64), d.astype(np.float64))
    assert np.all(np.abs(norm - 1) <= 4 * eps), norm
    # direction preserved
    assert (np.sign(n) == np.sign(N)).all() and (np.sign(d) == np.sign(D)).all()


@pytest.mark.parametrize(
    ("dtype", "N", "D"),
    [
        ("float64", 1e200, 1e200),
        ("float64", 1e300, -1e300),
        ("float64", -1e308, 1e308),
        ("float64", 1e-200, 1e-200),
        ("float32", 1e20, 1e20),
        ("float32", 2e38, -2e38),  # norm 2.8e38 still representable
        ("float32", 1e-20, 1e-20),
    ],
)
def test_renormalize_huge_and_tiny_tuples(arr, dtype, N, D):
    # reference overflows (N² + D² = inf → (0, 0)); the scaled norm normalises (§10 #21)
    n, d = renormalize(arr([N], dtype), arr([D], dtype), gamma=0.0)
    n, d = arr.np(n), arr.np(d)
    h = math.sqrt(0.5)
    eps = float(np.finfo(dtype).eps)
    assert abs(n[0] - math.copysign(h, N)) <= 4 * eps, n
    assert abs(d[0] - math.copysign(h, D)) <= 4 * eps, d


def test_renormalize_zero_tuple_and_int(arr, xp):
    n, d = renormalize(arr([0.0, 3.0]), arr([0.0, 4.0]))
    assert arr.np(n)[0] == 0 and arr.np(d)[0] == 0
    n, d = renormalize(arr([3, 0], "int64"), arr([4, 2], "int64"), gamma=0.0)
    assert n.dtype == d.dtype == default_float(xp)
    np.testing.assert_allclose(arr.np(n), [0.6, 0.0], rtol=1e-7)
    np.testing.assert_allclose(arr.np(d), [0.8, 1.0], rtol=1e-7)


@pytest.mark.parametrize("gamma", [0.0, 1e-9])
def test_renormalize_subnormal_tuple_is_the_zero_tuple(arr, gamma):
    # DAZ (semantics §10 #1): a tuple of subnormals is the zero tuple, on every backend. The
    # result must be the zero tuple's (whatever that is for this gamma: (0, 0) for
    # gamma > 0, the reference's NaN for gamma = 0), not numpy's (1, 0) vs JAX's NaN.
    n, d = renormalize(arr([1e-320, 1e-310, 0.0]), arr([0.0, 1e-310, 0.0]), gamma)
    n, d = arr.np(n), arr.np(d)
    for i in (0, 1):
        if np.isnan(n[2]):
            assert np.isnan(n[i]) and np.isnan(d[i]), (i, n, d)
        else:
            assert abs(n[i] - n[2]) < F64_TINY and abs(d[i] - d[2]) < F64_TINY, (i, n, d)


@pytest.mark.parametrize("gamma", [-1.0, -1e-12, NAN, INF])
def test_renormalize_gamma_invalid_value(arr, gamma):
    with pytest.raises(ValueError, match="gamma"):
        renormalize(arr([3.0]), arr([4.0]), gamma)


@pytest.mark.parametrize("gamma", ["1e-9", None, True, [0.1]])
def test_renormalize_gamma_invalid_type(arr, gamma):
    with pytest.raises(TypeError, match="gamma"):
        renormalize(arr([3.0]), arr([4.0]), gamma)


@pytest.mark.autodiff
def test_renormalize_gradient_stop_gradient(backend):
    # s is treated as a constant: ∂(N/s)/∂N = 1/s, ∂(N/s)/∂D = 0 (semantics §2.2)
    from zpml_core.projective import renormalize as rn

    gN, gD = grads(backend, lambda N, D: rn(N, D, gamma=0.0)[0].sum(), [3.0, 1e-3], [4.0, 0.0])
    np.testing.assert_allclose(gN, [0.2, 1000.0], rtol=1e-12)
    np.testing.assert_array_equal(gD, [0.0, 0.0])
    gN, gD = grads(backend, lambda N, D: rn(N, D, gamma=0.0)[1].sum(), [3.0], [4.0])
    np.testing.assert_array_equal(gN, [0.0])
    np.testing.assert_allclose(gD, [0.2], rtol=1e-12)
    # default gamma: 1/(s + 1e-9)
    gN, _ = grads(backend, lambda N, D: rn(N, D)[0].sum(), [1e-3], [0.0])
    np.testing.assert_allclose(gN, [1 / (1e-3 + 1e-9)], rtol=1e-12)


@pytest.mark.autodiff
def test_renormalize_gradient_attached(backend):
    # stop_gradient=False differentiates through s = |(N, D)|
    gN, gD = grads(backend, lambda N, D: renormalize(N, D, 0.0, stop_gradient=False)[0].sum(), [3.0], [4.0])
    np.testing.assert_allclose(gN, [1 / 5 - 9 / 125], rtol=1e-12)
    np.testing.assert_allclose(gD, [-12 / 125], rtol=1e-12)


# ---------------------------------------------------------------------------------------
# projectively_equal (semantics §2.3, elementwise contract §10 #20)

PE_CASES = [
    ((1.0, 2.0), (2.0, 4.0), True),
    ((1.0, 0.0), (-3.0, 0.0), True),  # sign-insensitive
    ((0.0, 0.0), (5.0, 1.0), True),  # the zero tuple equals everything
    ((NAN, 1.0), (1.0, 1.0), False),
    ((1.0, 1.0), (1.0, NAN), False),
    ((1.0, 2.0), (1.0, 2.0 + 1e-9), True),  # absolute tolerance 1e-8
    ((1.0, 2.0), (1.0, 2.0 + 1e-7), False),
    ((1e8, 1.0), (1e8 + 1.0, 1.0), False),  # absolute, not scale-relative
    ((1.0, 2.0), (1.0, 3.0), False),
    ((INF, 1.0), (INF, 1.0), False),
]


def test_projectively_equal_examples(arr, xp):
    a = [c[0] for c in PE_CASES]
    b = [c[1] for c in PE_CASES]
    out = projectively_equal(arr([t[0] for t in a]), arr([t[1] for t in a]),
                             arr([t[0] for t in b]), arr([t[1] for t in b]))
    assert out.dtype == xp.bool
    assert arr.np(out).tolist() == [c[2] for c in PE_CASES]


def test_projectively_equal_atol_and_broadcast(arr):
    N1, D1 = arr([1.0, 1.0]), arr([2.0, 2.0])
    N2, D2 = arr([[1.0], [1.0]]), arr([[2.0 + 1e-7], [2.0 + 1e-5]])
    out = arr.np(projectively_equal(N1, D1, N2, D2, atol=1e-6))
    assert out.shape == (2, 2)
    assert out.tolist() == [[True, True], [False, False]]
    assert arr.np(projectively_equal(arr([1.0]), arr([2.0]), arr([2.0]), arr([4.0]), atol=0.0)).tolist() == [True]
    assert arr.np(projectively_equal(arr([1.0]), arr([3.0]), arr([1.0]), arr([3.0 + 1e-12]), atol=0)).tolist() == [False]


def test_projectively_equal_f32_and_int(arr, xp):
    out = projectively_equal(arr([1, 0], "int64"), arr([2, 0], "int64"), arr([2, 7], "int64"), arr([4, 1], "int64"))
    assert out.dtype == xp.bool and arr.np(out).tolist() == [True, True]
    out = projectively_equal(arr([1.0], "float32"), arr([2.0], "float32"), arr([3.0], "float32"), arr([6.0], "float32"))
    assert arr.np(out).tolist() == [True]


@pytest.mark.parametrize(("atol", "exc"), [(-1e-8, ValueError), (NAN, ValueError), (INF, ValueError),
                                            ("1e-8", TypeError), (None, TypeError), (True, TypeError)])
def test_projectively_equal_atol_invalid(arr, atol, exc):
    with pytest.raises(exc, match="atol"):
        projectively_equal(arr([1.0]), arr([2.0]), arr([2.0]), arr([4.0]), atol=atol)
