"""Every public array function under ``jax.jit`` and ``torch.compile(fullgraph=True)``
gives results identical to eager (design rule 6), and a changed threshold takes
effect between calls of the same jitted/compiled wrapper (no stale trace).

numpy and array-api-strict have no tracing compiler; those parametrizations skip (a
genuine limitation, not an accident).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import assert_same_bits

from zpml_core import (
    InferenceConfig,
    InferenceResult,
    decode,
    encode,
    lift_semantic_targets,
    lift_targets,
    projectively_equal,
    renormalize,
    scm,
    strict_inference,
)

INF, NAN = math.inf, math.nan

# edge inputs (float64)
X = np.array([0.0, -0.0, 1.0, -1.0, 2.5, 1e-320, 710.0, -746.0, INF, NAN, 1e308, 1e-160])
Y = np.array([2.0, 0.0, -0.0, 3.0, 1e-200, 0.5, 1e-5, 4.0, 1.0, 1.0, 1e-308, 7.4e-155])
E = np.array([0.5, 0.0, -1.0, 3.0, 1 / 3, 2.0, 1025.0, -0.5, 1.0, 0.0, 2.0, INF])
BOTTOM = np.array([False, True, False, False, True, False, False, True, True, False, False, False])
LABELS = (("finite", "bottom", "censored_below", "censored_above"),
          ("domain_invalid", "fault", "missing", "finite"))
Y_LAB = np.array([[1.5, NAN, -INF, INF], [0.0, 2.0, NAN, -0.0]])


# One named function per public function: torch.compile caches per code object, so a
# shared wrapper would hit the recompile limit and could silently fall back to eager.
def t_add(x, y):
    return tuple(scm.add(x, y, mask_x=x > 2.0))


def t_sub(x, y):
    return tuple(scm.sub(x, y))


def t_mul(x, y):
    return tuple(scm.mul(x, y, mask_y=y > 3.5))


def t_div(x, y):
    return tuple(scm.div(x, y))


def t_pow(x, e):
    return tuple(scm.pow(x, e))


def t_pow_scalar(x):
    return tuple(scm.pow(x, 0.5))


def t_inv(x):
    return tuple(scm.inv(x))


def t_neg(x):
    return tuple(scm.neg(x, mask=x > 700.0))


def t_log(x):
    return tuple(scm.log(x))


def t_exp(x):
    return tuple(scm.exp(x))


def t_sqrt(x):
    return tuple(scm.sqrt(x))


def t_sin(x):
    return tuple(scm.sin(x))


def t_cos(x):
    return tuple(scm.cos(x))


def t_tan(x):
    return tuple(scm.tan(x))


def t_lift_targets(x):
    return tuple(lift_targets(x))


def t_encode(x, b):
    return tuple(encode(x, b))


def t_decode(x, y):
    return tuple(decode(x, y))


def t_renormalize(x, y):
    return tuple(renormalize(x, y))


def t_projectively_equal(x, y):
    return (projectively_equal(x, y, y, x),)


def t_strict_inference(x, y):
    r = strict_inference(x, y, config=InferenceConfig(tau_infer=1e-6, tau_train=1e-4))
    return (*r, r.fault_mask, r.semantic_bottom_mask, r.bottom_provenance)


def t_strict_inference_bcast(p, q):
    r = strict_inference(p, q)
    return (*r, r.fault_mask, r.semantic_bottom_mask, r.bottom_provenance)


def t_lift_semantic_targets(y):
    return tuple(lift_semantic_targets(y, [list(r) for r in LABELS]))


CASES = {
    "add": (t_add, (X, Y)),
    "sub": (t_sub, (X, Y)),
    "mul": (t_mul, (X, Y)),
    "div": (t_div, (X, Y)),
    "pow": (t_pow, (X, E)),
    "pow_scalar": (t_pow_scalar, (X,)),
    "inv": (t_inv, (X,)),
    "neg": (t_neg, (X,)),
    "log": (t_log, (X,)),
    "exp": (t_exp, (X,)),
    "sqrt": (t_sqrt, (X,)),
    "sin": (t_sin, (X,)),
    "cos": (t_cos, (X,)),
    "tan": (t_tan, (X,)),
    "lift_targets": (t_lift_targets, (X,)),
    "encode": (t_encode, (X, BOTTOM)),
    "decode": (t_decode, (X, Y)),
    "renormalize": (t_renormalize, (X, Y)),
    "projectively_equal": (t_projectively_equal, (X, Y)),
    "strict_inference": (t_strict_inference, (X, Y)),
    "strict_inference_bcast": (t_strict_inference_bcast, (np.stack([X, Y], axis=1), Y)),
    "lift_semantic_targets": (t_lift_semantic_targets, (Y_LAB,)),
}


def _compiler(backend):
    if backend.name == "jax":
        import jax

        return jax.jit
    if backend.name == "torch":
        import torch

        return lambda f: torch.compile(f, fullgraph=True)
    pytest.skip(f"{backend.name} has no tracing compiler (genuine limitation)")


def _same(arr, got, want, where, ulps=0):
    assert len(got) == len(want), where
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.dtype == w.dtype, (where, i, g.dtype, w.dtype)
        gn, wn = arr.np(g), arr.np(w)
        assert gn.shape == wn.shape, (where, i)
        if gn.dtype.kind == "f" and ulps:
            # same NaN positions, same signs, values within `ulps` ulp
            assert (np.isnan(gn) == np.isnan(wn)).all(), (where, i)
            assert (np.signbit(gn) == np.signbit(wn)).all(), (where, i)
            ok = ~np.isnan(wn)
            tol = ulps * np.spacing(np.abs(wn[ok]))
            assert (np.abs(gn[ok] - wn[ok]) <= tol).all(), (where, i, gn, wn)
        elif gn.dtype.kind == "f":
            assert_same_bits(gn, wn)
        else:
            assert np.array_equal(gn, wn), (where, i, gn, wn)


# Inductor generates its own vectorised sin/cos/... code: under torch.compile libm-valued
# results may differ from eager torch in the last ulp (observed: sin(2.5), 1 ulp). That is
# the framework's codegen, not zpml_core; masks, NaN positions and signs stay exact.
LIBM = {"sin", "cos", "tan", "exp", "log", "pow", "pow_scalar"}


@pytest.mark.parametrize("name", list(CASES))
def test_traced_equals_eager(backend, arr, name):
    compile_ = _compiler(backend)
    fn, inputs = CASES[name]
    args = [arr(a, "bool" if a.dtype == bool else "float64") for a in inputs]
    eager = fn(*args)
    traced = compile_(fn)(*args)
    ulps = 1 if backend.name == "torch" and name in LIBM else 0
    _same(arr, traced, eager, name, ulps)


def test_jax_jit_returns_structured_results(backend, arr):
    # SCMArray and InferenceResult (pytree with extra attributes) survive jax.jit
    if backend.name != "jax":
        pytest.skip("jax.jit only")
    import jax

    r = jax.jit(lambda a, b: strict_inference(a, b))(arr(X), arr(Y))
    assert isinstance(r, InferenceResult) and len(r) == 3
    e = strict_inference(arr(X), arr(Y))
    _same(arr, (*r, r.fault_mask, r.semantic_bottom_mask, r.bottom_provenance),
          (*e, e.fault_mask, e.semantic_bottom_mask, e.bottom_provenance), "InferenceResult")
    s = jax.jit(lambda a, b: scm.div(a, b))(arr(X), arr(Y))
    assert isinstance(s, scm.SCMArray)


def test_jax_jit_lift_semantic_targets_static_labels(backend, arr):
    if backend.name != "jax":
        pytest.skip("jax.jit only")
    import jax

    f = jax.jit(lambda y, labels: tuple(lift_semantic_targets(y, labels)), static_argnums=1)
    y = arr(Y_LAB)
    _same(arr, f(y, LABELS), tuple(lift_semantic_targets(y, LABELS)), "lift_semantic_targets")
    other = (("finite",) * 4, ("missing",) * 4)
    got = f(y, other)
    assert arr.np(got[3]).tolist() == [[False] * 4, [False] * 4]  # new static labels retrace


def test_torch_compile_returns_structured_results(backend, arr):
    if backend.name != "torch":
        pytest.skip("torch.compile only")
    import torch

    r = torch.compile(lambda a, b: strict_inference(a, b), fullgraph=True)(arr(X), arr(Y))
    assert isinstance(r, tuple) and len(r) == 3
    e = strict_inference(arr(X), arr(Y))
    _same(arr, tuple(r), tuple(e), "InferenceResult")
    assert hasattr(r, "fault_mask") and hasattr(r, "semantic_bottom_mask")
    _same(arr, (r.fault_mask, r.semantic_bottom_mask, r.bottom_provenance),
          (e.fault_mask, e.semantic_bottom_mask, e.bottom_provenance), "InferenceResult attrs")


# ---------------------------------------------------------------------------------------
# a changed threshold takes effect between calls of the same traced wrapper

P_T = np.array([1.0, 1.0, 1.0, 1.0])
Q_T = np.array([1e-7, 1e-3, 0.1, 2.0])


def _bottom_for(tau):
    return (np.abs(Q_T) < tau).tolist()


_TAU = [1e-6]


def t_tau_closure(p, q):
    return strict_inference(p, q, config=InferenceConfig(tau_infer=_TAU[0]))[1]


def t_tau_arg(p, q, tau):
    return strict_inference(p, q, config=InferenceConfig(tau_infer=tau))[1]


_GAMMA = [0.0]


def t_gamma_closure(n, d):
    return renormalize(n, d, gamma=_GAMMA[0])[0]


def t_gamma_arg(n, d, gamma):
    return renormalize(n, d, gamma=gamma)[0]


_ATOL = [1e-8]


def t_atol_closure(a, b):
    return projectively_equal(a, b, b, a, atol=_ATOL[0])


def t_atol_arg(a, b, atol):
    return projectively_equal(a, b, b, a, atol=atol)


def _run_tau(f, arr, mode):
    P, Q = arr(P_T), arr(Q_T)
    for tau in (1e-6, 0.5, 1e-2):
        _TAU[0] = tau
        got = f(P, Q) if mode == "closure" else f(P, Q, tau)
        assert arr.np(got).tolist() == _bottom_for(tau), tau


def _run_gamma(f, arr, mode):
    n, d = arr([3.0]), arr([4.0])
    for g in (0.0, 5.0, 1.0):
        _GAMMA[0] = g
        got = f(n, d) if mode == "closure" else f(n, d, g)
        assert arr.np(got).tolist() == [3 / (5 + g)], g


def _run_atol(f, arr, mode):
    a, b = arr([1.0]), arr([1.0 + 1e-6])
    for atol, want in ((1e-8, False), (1e-3, True), (1e-9, False)):
        _ATOL[0] = atol
        got = f(a, b) if mode == "closure" else f(a, b, atol)
        assert arr.np(got).tolist() == [want], atol


THRESHOLDS = {
    "tau_infer": (t_tau_closure, t_tau_arg, _run_tau),
    "gamma": (t_gamma_closure, t_gamma_arg, _run_gamma),
    "atol": (t_atol_closure, t_atol_arg, _run_atol),
}


@pytest.mark.parametrize("mode", ["closure", "argument"])
@pytest.mark.parametrize("param", list(THRESHOLDS))
def test_torch_compile_changed_threshold(backend, arr, param, mode):
    # InferenceConfig(tau_infer=...) / renormalize(gamma=...) / projectively_equal(atol=...)
    # built inside the compiled wrapper from a closure variable or a Python float argument
    if backend.name != "torch":
        pytest.skip("torch.compile only")
    import torch

    closure_fn, arg_fn, run = THRESHOLDS[param]
    f = torch.compile(closure_fn if mode == "closure" else arg_fn, fullgraph=True)
    try:
        run(f, arr, mode)
    finally:
        _TAU[0], _GAMMA[0], _ATOL[0] = 1e-6, 0.0, 1e-8


def test_jax_jit_changed_thresholds_static(backend, arr):
    if backend.name != "jax":
        pytest.skip("jax.jit only")
    import jax

    f = jax.jit(t_tau_arg, static_argnums=2)
    P, Q = arr(P_T), arr(Q_T)
    for tau in (1e-6, 0.5, 1e-2, 0.5):
        assert arr.np(f(P, Q, tau)).tolist() == _bottom_for(tau), tau
    g = jax.jit(t_gamma_arg, static_argnums=2)
    for gamma in (0.0, 5.0):
        assert arr.np(g(arr([3.0]), arr([4.0]), gamma)).tolist() == [3 / (5 + gamma)]
    h = jax.jit(t_atol_arg, static_argnums=2)
    for atol, want in ((1e-8, False), (1e-3, True)):
        assert arr.np(h(arr([1.0]), arr([1.0 + 1e-6]), atol)).tolist() == [want]


def test_jax_jit_config_built_inside_from_static_closure(backend, arr):
    # a fresh jit wrapper per tau value built from a Python closure: each sees its own tau
    if backend.name != "jax":
        pytest.skip("jax.jit only")
    import jax

    P, Q = arr(P_T), arr(Q_T)
    for tau in (1e-6, 0.5):
        def f(p, q, tau=tau):
            return strict_inference(p, q, config=InferenceConfig(tau_infer=tau))[1]

        assert arr.np(jax.jit(f)(P, Q)).tolist() == _bottom_for(tau)
