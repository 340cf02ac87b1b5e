"""Strict inference and its configuration (semantics §4, §10 #1 DAZ, §10 #23), on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zpml_core import InferenceConfig, InferenceResult, strict_inference

INF, NAN = math.inf, math.nan
F64_TINY = float(np.finfo(np.float64).smallest_normal)


def default_float(xp):
    return xp.__array_namespace_info__().default_dtypes()["real floating"]


def default_int(xp):
    return xp.__array_namespace_info__().default_dtypes()["integral"]


def same_bits(a, e):
    a = np.asarray(a)
    e = np.asarray(e, dtype=a.dtype)
    assert a.shape == e.shape, (a.shape, e.shape)
    nan = np.isnan(a) & np.isnan(e)
    assert ((a == e) | nan).all(), (a, e)
    z = (a == 0) & (e == 0)
    assert (np.signbit(a[z]) == np.signbit(e[z])).all(), ("signed zeros differ", a, e)


# ---------------------------------------------------------------------------------------
# InferenceConfig (semantics §4.1, §10 #23)


def test_config_defaults():
    c = InferenceConfig()
    assert c.tau_infer == 1e-6 and c.tau_train is None
    assert c.provenance == "off" and c.provenance_representation == "split_masks"
    assert c.numerical_hazard_threshold is None and c.provenance_fault_threshold is None


def test_config_values_stored_as_float():
    c = InferenceConfig(tau_infer=1, tau_train=2)
    assert type(c.tau_infer) is float and c.tau_infer == 1.0
    assert type(c.tau_train) is float and c.tau_train == 2.0
    assert InferenceConfig(tau_infer=np.float32(0.5)).tau_infer == 0.5


@pytest.mark.parametrize("value", [True, False, None, "1e-6", "abc", [1e-6], object(), 1j])
def test_config_tau_infer_type(value):
    with pytest.raises(TypeError, match="tau_infer"):
        InferenceConfig(tau_infer=value)


@pytest.mark.parametrize("value", [NAN, INF, -INF, 0.0, -0.0, -1e-6])
def test_config_tau_infer_value(value):
    with pytest.raises(ValueError, match="tau_infer"):
        InferenceConfig(tau_infer=value)


@pytest.mark.parametrize("value", [True, "1e-4", [1e-4], 1j])
def test_config_tau_train_type(value):
    with pytest.raises(TypeError, match="tau_train"):
        InferenceConfig(tau_train=value)


@pytest.mark.parametrize("value", [NAN, INF, 0.0, -1.0, 1e-7])
def test_config_tau_train_value(value):
    # 1e-7 < tau_infer (1e-6)
    with pytest.raises(ValueError, match="tau_train"):
        InferenceConfig(tau_train=value)


def test_config_tau_train_equal_allowed():
    c = InferenceConfig(tau_infer=1e-4, tau_train=1e-4)
    assert c.tau_train == c.tau_infer == 1e-4


@pytest.mark.parametrize(("field", "value"), [("provenance", "on"), ("provenance", "OFF"),
                                              ("provenance_representation", "masks")])
def test_config_enums(field, value):
    with pytest.raises(ValueError, match=field):
        InferenceConfig(**{field: value})


def test_config_enum_values_accepted():
    c = InferenceConfig(provenance="experimental", provenance_representation="bottom_provenance")
    assert c.provenance == "experimental" and c.provenance_representation == "bottom_provenance"


@pytest.mark.parametrize("field", ["numerical_hazard_threshold", "provenance_fault_threshold"])
@pytest.mark.parametrize(("value", "exc"), [(True, TypeError), ("0.1", TypeError), (1j, TypeError),
                                            (-0.1, ValueError), (NAN, ValueError), (INF, ValueError)])
def test_config_monitor_thresholds_invalid(field, value, exc):
    with pytest.raises(exc, match=field):
        InferenceConfig(**{field: value})


def test_config_monitor_thresholds_aliases():
    c = InferenceConfig(numerical_hazard_threshold=0.5)
    assert c.provenance_fault_threshold == 0.5
    c = InferenceConfig(provenance_fault_threshold=0.0)
    assert c.numerical_hazard_threshold == 0.0
    c = InferenceConfig(numerical_hazard_threshold=0.25, provenance_fault_threshold=0.25)
    assert c.numerical_hazard_threshold == c.provenance_fault_threshold == 0.25
    with pytest.raises(ValueError, match="numerical_hazard_threshold"):
        InferenceConfig(numerical_hazard_threshold=0.25, provenance_fault_threshold=0.5)


# ---------------------------------------------------------------------------------------
# strict_inference: the verified table (semantics §4.2, tau_infer=1e-6, tau_train=1e-4, f64)

#        P        Q        decoded        bottom gap   fault  semantic prov
TABLE = [
    (1.0, 0.0, NAN, True, False, False, True, 2),
    (1.0, -0.0, NAN, True, False, False, True, 2),
    (1.0, 1e-7, NAN, True, False, False, True, 2),
    (1.0, 1e-320, NAN, True, False, False, True, 2),
    (1.0, 1e-6, 1 / 1e-6, False, True, False, False, 0),
    (1.0, 5e-5, 1 / 5e-5, False, True, False, False, 0),
    (1.0, -1e-4, 1 / -1e-4, False, False, False, False, 0),
    (INF, 1.0, NAN, True, False, True, False, 1),
    (NAN, 1.0, NAN, True, False, True, False, 1),
    (1.0, INF, NAN, True, False, True, False, 1),
    (1.0, NAN, NAN, True, False, True, False, 1),
    (1e308, 1e-5, NAN, True, False, True, False, 1),  # quotient overflow is a fault
    (INF, 0.0, NAN, True, False, True, True, 3),
    (0.0, 1e-3, 0.0, False, False, False, False, 0),
]


def _check_table(arr, xp, res, table):
    assert isinstance(res, InferenceResult) and isinstance(res, tuple) and len(res) == 3
    decoded, bottom, gap = res  # unpacks as a 3-tuple
    same_bits(arr.np(decoded), [r[2] for r in table])
    assert arr.np(bottom).tolist() == [r[3] for r in table]
    assert arr.np(gap).tolist() == [r[4] for r in table]
    assert arr.np(res.fault_mask).tolist() == [r[5] for r in table]
    assert arr.np(res.semantic_bottom_mask).tolist() == [r[6] for r in table]
    assert arr.np(res.bottom_provenance).tolist() == [r[7] for r in table]
    for m in (bottom, gap, res.fault_mask, res.semantic_bottom_mask):
        assert m.dtype == xp.bool
    assert res.bottom_provenance.dtype == default_int(xp)


def test_strict_inference_table(arr, xp):
    P = arr([r[0] for r in TABLE])
    Q = arr([r[1] for r in TABLE])
    res = strict_inference(P, Q, config=InferenceConfig(tau_infer=1e-6, tau_train=1e-4))
    assert res[0].dtype == P.dtype
    _check_table(arr, xp, res, TABLE)
    # tuple indexing and named attributes agree
    assert res[0] is res.decoded and res[1] is res.bottom_mask and res[2] is res.gap_mask


@pytest.mark.parametrize("i", range(len(TABLE)))
def test_strict_inference_table_rows_0d(arr, xp, i):
    row = TABLE[i]
    res = strict_inference(arr(row[0]), arr(row[1]), config=InferenceConfig(tau_infer=1e-6, tau_train=1e-4))
    assert arr.np(res[0]).shape == ()
    same_bits(arr.np(res[0]), row[2])
    assert bool(arr.np(res[1])) == row[3] and bool(arr.np(res[2])) == row[4]
    assert int(arr.np(res.bottom_provenance)) == row[7]


def test_strict_inference_default_config(arr):
    res = strict_inference(arr([1.0, 1.0, 2.0]), arr([1e-7, 1e-6, 4.0]))
    assert arr.np(res[1]).tolist() == [True, False, False]
    assert arr.np(res[2]).tolist() == [False, False, False]  # no tau_train → no gap
    same_bits(arr.np(res[0]), [NAN, 1 / 1e-6, 0.5])


def test_strict_inference_daz_subnormal_q(arr):
    # DAZ: a subnormal Q is zero → semantic, even when tau_infer is itself subnormal
    # (semantics §9 #1: numpy/torch reference called it a fault via the inf quotient).
    cfg = InferenceConfig(tau_infer=1e-320)
    res = strict_inference(arr([1.0, 1.0, 1e10, 1e-320]), arr([1e-320, 1e-300, 1e-300, 1.0]), config=cfg)
    assert arr.np(res.semantic_bottom_mask).tolist() == [True, False, False, False]
    assert arr.np(res.fault_mask).tolist() == [False, False, True, False]
    assert arr.np(res.bottom_provenance).tolist() == [2, 0, 1, 0]
    d = arr.np(res[0])
    assert np.isnan(d[0]) and np.isnan(d[2])
    assert d[1] == 1 / 1e-300
    assert abs(d[3]) < F64_TINY and not np.isnan(d[3])


def test_strict_inference_f32_boundary(arr):
    q = np.float32(1e-6)
    below = np.nextafter(q, np.float32(0))
    P = arr([1.0, 1.0, 1.0, 1.0], "float32")
    Q = arr([q, below, -q, -below], "float32")
    res = strict_inference(P, Q)  # tau_infer = 1e-6 rounded to float32 first
    assert arr.np(res[1]).tolist() == [False, True, False, True]
    d = arr.np(res[0])
    assert d.dtype == np.float32
    assert d[0] == np.float32(1) / q and d[2] == -(np.float32(1) / q)
    assert np.isnan(d[1]) and np.isnan(d[3])


def test_strict_inference_broadcast_p_more_dims(arr):
    # semantics §4.2 broadcast example: masks live on Q's shape, P-derived masks reduced with any
    P = arr([[1.0, 2.0], [NAN, 1.0], [1.0, 1.0], [1e308, 1.0]])
    Q = arr([1.0, 1.0, 0.0, 1e-300])
    res = strict_inference(P, Q)
    same_bits(arr.np(res[0]), [[1.0, 2.0], [NAN, NAN], [NAN, NAN], [NAN, NAN]])
    assert arr.np(res[1]).tolist() == [False, True, True, True]
    assert arr.np(res.fault_mask).tolist() == [False, True, False, False]
    assert arr.np(res.semantic_bottom_mask).tolist() == [False, False, True, True]
    assert arr.np(res[2]).shape == (4,)
    assert arr.np(res.bottom_provenance).tolist() == [0, 1, 2, 2]


def test_strict_inference_broadcast_p_three_dims_overflow(arr):
    # quotient overflow anywhere in the trailing axes makes the whole Q element a fault
    P = arr(np.array([[[1.0, 1.0], [1.0, 1e308]], [[2.0, 4.0], [6.0, 8.0]]]))
    Q = arr([1e-5, 2.0])
    res = strict_inference(P, Q)
    assert arr.np(res[1]).tolist() == [True, False]
    assert arr.np(res.fault_mask).tolist() == [True, False]
    same_bits(arr.np(res[0]), [[[NAN, NAN], [NAN, NAN]], [[1.0, 2.0], [3.0, 4.0]]])


def test_strict_inference_q_more_dims(arr):
    # Q.ndim > P.ndim: plain broadcasting of P / Q
    P = arr([1.0, NAN, 2.0])
    Q = arr([[1.0, 2.0, 0.0], [4.0, 1e-7, 0.5]])
    res = strict_inference(P, Q)
    same_bits(arr.np(res[0]), [[1.0, NAN, NAN], [0.25, NAN, 4.0]])
    assert arr.np(res[1]).tolist() == [[False, True, True], [False, True, False]]
    assert arr.np(res.fault_mask).tolist() == [[False, True, False], [False, True, False]]
    assert arr.np(res.semantic_bottom_mask).tolist() == [[False, False, True], [False, True, False]]


def test_strict_inference_gap_mask(arr):
    Q = [1e-5, 1e-4, 5e-7, -5e-5, NAN, 1e-6, 2e-4, -1e-6]
    P = arr(np.ones(len(Q)))
    res = strict_inference(P, arr(Q), config=InferenceConfig(tau_infer=1e-6, tau_train=1e-4))
    assert arr.np(res[2]).tolist() == [True, False, False, True, False, True, False, True]
    assert arr.np(res[1]).tolist() == [False, False, True, False, True, False, False, False]
    assert not (arr.np(res[1]) & arr.np(res[2])).any()
    # tau_train == tau_infer: gap disabled; tau_train None: gap disabled
    for cfg in (InferenceConfig(tau_infer=1e-6, tau_train=1e-6), InferenceConfig(tau_infer=1e-6)):
        res = strict_inference(P, arr(Q), config=cfg)
        assert not arr.np(res[2]).any()
        assert arr.np(res[2]).shape == (len(Q),)


def test_strict_inference_int_inputs(arr, xp):
    res = strict_inference(arr([3, 1, 4], "int64"), arr([2, 0, 4], "int64"))
    assert res[0].dtype == default_float(xp)
    same_bits(arr.np(res[0]), [1.5, NAN, 1.0])
    assert arr.np(res[1]).tolist() == [False, True, False]
    assert res.bottom_provenance.dtype == default_int(xp)


def test_strict_inference_experimental_provenance_same_data(arr):
    P, Q = arr([1.0, 1.0, INF]), arr([0.5, 0.0, 0.0])
    a = strict_inference(P, Q)
    b = strict_inference(P, Q, experimental_provenance=True)
    assert isinstance(b, InferenceResult) and len(b) == 3
    for x, y in zip((*a, a.fault_mask, a.semantic_bottom_mask, a.bottom_provenance),
                    (*b, b.fault_mask, b.semantic_bottom_mask, b.bottom_provenance), strict=True):
        same_bits(arr.np(y), arr.np(x))
    assert arr.np(b.bottom_provenance).tolist() == [0, 2, 3]


# ---------------------------------------------------------------------------------------
# tau underflow check (semantics §4.2 step 1: only Q's dtype matters)


@pytest.mark.parametrize(
    ("q_dtype", "tau", "raises"),
    [
        ("float32", 1e-46, True),
        ("float32", 1e-40, False),  # subnormal but not 0 in float32
        ("float64", 5e-324, False),
        ("complex64", 1e-46, True),
        ("complex64", 1e-40, False),
        ("int64", 1e-46, False),  # integer Q never raises
        ("int32", 1e-320, False),
    ],
)
def test_strict_inference_tau_underflow(arr, q_dtype, tau, raises):
    # P of Q's kind: mixed int/float operands follow library promotion, which
    # array-api-strict refuses (not defined by the standard)
    P = arr([1.0, 2.0], q_dtype if q_dtype != "float32" else "float64")
    Q = arr([0, 2], q_dtype)
    cfg = InferenceConfig(tau_infer=tau)
    if raises:
        with pytest.raises(ValueError, match="tau_infer"):
            strict_inference(P, Q, config=cfg)
    else:
        res = strict_inference(P, Q, config=cfg)
        assert arr.np(res[1]).tolist() == [True, False]
        assert np.asarray(arr.np(res[0]))[1] == 1.0


def test_strict_inference_tau_underflow_only_q_dtype(arr):
    # P float32 does not trigger the check; Q float64 decides
    res = strict_inference(arr([1.0], "float32"), arr([2.0], "float64"), config=InferenceConfig(tau_infer=1e-46))
    assert arr.np(res[0]).tolist() == [0.5]
    with pytest.raises(ValueError, match="tau_infer"):
        strict_inference(arr([1.0], "float64"), arr([2.0], "float32"), config=InferenceConfig(tau_infer=1e-46))


@pytest.mark.parametrize(("tau", "raises"), [(1e-8, True), (6e-8, False), (1e-7, False)])
def test_strict_inference_tau_underflow_f16(arr, backend, tau, raises):
    if backend.name == "strict":
        pytest.skip("array-api-strict has no float16 (genuine limitation)")
    P, Q = arr([1.0], "float16"), arr([2.0], "float16")
    if raises:
        with pytest.raises(ValueError, match="tau_infer"):
            strict_inference(P, Q, config=InferenceConfig(tau_infer=tau))
    else:
        assert arr.np(strict_inference(P, Q, config=InferenceConfig(tau_infer=tau))[0]).tolist() == [0.5]


# ---------------------------------------------------------------------------------------
# validity factors (experimental, semantics §4.2 step 2)


def test_validity_factors(arr):
    P, Q = arr(np.ones(4)), arr(np.ones(4))
    V = arr([1.0, 1e-9, NAN, -1.0])
    res = strict_inference(P, Q, validity_factors=[V])
    assert arr.np(res.semantic_bottom_mask).tolist() == [False, True, False, False]
    assert arr.np(res.fault_mask).tolist() == [False, False, True, False]
    same_bits(arr.np(res[0]), [1.0, NAN, NAN, 1.0])
    # one tau per factor; a factor with more dims is reduced with any over trailing axes
    V2 = arr([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.3]])
    res = strict_inference(P, Q, validity_factors=[V, V2], validity_taus=[1e-12, 0.5])
    assert arr.np(res.semantic_bottom_mask).tolist() == [False, False, False, True]
    assert arr.np(res.fault_mask).tolist() == [False, False, True, False]


@pytest.mark.parametrize(
    ("taus", "exc"),
    [(True, TypeError), ([True], TypeError), ("1e-6", TypeError), (object(), TypeError),
     (-1.0, ValueError), (NAN, ValueError), (INF, ValueError), ([1e-6, 1e-6], ValueError),
     ([], ValueError), ([-1.0], ValueError)],
)
def test_validity_taus_errors(arr, taus, exc):
    with pytest.raises(exc, match="validity_taus"):
        strict_inference(arr([1.0]), arr([1.0]), validity_factors=[arr([1.0])], validity_taus=taus)


@pytest.mark.parametrize("factor", [[1.0], 1.0, None, "v"])
def test_validity_factors_non_array(arr, factor):
    # design rule 8: the message names the argument
    with pytest.raises(TypeError, match="validity_factors"):
        strict_inference(arr([1.0]), arr([1.0]), validity_factors=[factor])


# ---------------------------------------------------------------------------------------
# argument errors


@pytest.mark.parametrize("bad", [[1.0], 1.0, None, (1.0,)])
def test_strict_inference_non_array(arr, bad):
    with pytest.raises(TypeError):
        strict_inference(bad, arr([1.0]))
    with pytest.raises(TypeError):
        strict_inference(arr([1.0]), bad)


@pytest.mark.parametrize("cfg", [{"tau_infer": 1e-6}, 1e-6, "strict"])
def test_strict_inference_config_type(arr, cfg):
    with pytest.raises(TypeError, match="config"):
        strict_inference(arr([1.0]), arr([1.0]), config=cfg)


def test_strict_inference_experimental_provenance_type(arr):
    with pytest.raises(TypeError, match="experimental_provenance"):
        strict_inference(arr([1.0]), arr([1.0]), experimental_provenance="yes")


def test_strict_inference_shape_mismatch(arr):
    with pytest.raises(ValueError, match="P"):
        strict_inference(arr([1.0, 2.0, 3.0]), arr([1.0, 2.0]))
