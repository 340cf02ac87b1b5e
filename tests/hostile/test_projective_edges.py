"""Projective helpers at their edges, in every float dtype of every backend.

* ``renormalize`` follows the reference formula ``N/(sqrt(N²+D²)+gamma)`` as IEEE
  arithmetic evaluates it on special tuples — a NaN component gives (NaN, NaN), an
  infinite component NaN and the finite one ±0 — and the zero tuple gives (±0, ±0) for
  every ``gamma > 0`` (also in float16, where 1e-9 underflows) and (NaN, NaN) for
  ``gamma == 0``; subnormal components count as 0. The oracle is that formula in numpy
  float64 (``hypot`` for the norm, so huge tuples stay finite), independent of our code.
* ``decode``/``encode``/``projectively_equal`` at ``±finfo.max`` and over every finite
  float16/bfloat16 value: in the 16-bit dtypes the quotient guard is exact ("N/D rounds
  to ±inf"), so ``decode(v, 1) = v`` for every finite ``v``, including ``±max``.
"""

from __future__ import annotations

import numpy as np
import pytest

from zpml_core.projective import decode, encode, projectively_equal, renormalize

INF, NAN = np.inf, np.nan


def _dtypes(backend):
    names = ["float64", "float32"]
    if backend.name in ("numpy", "torch", "jax"):
        names.append("float16")
    if backend.name in ("torch", "jax"):
        names.append("bfloat16")
    return names


def _info(dtype: str) -> tuple[float, float, float]:
    """(smallest normal, max, eps) of the dtype, from its bit layout."""
    p, emin, emax = {"float64": (53, -1022, 1023), "float32": (24, -126, 127),
                     "float16": (11, -14, 15), "bfloat16": (8, -126, 127)}[dtype]
    return 2.0 ** emin, (2.0 - 2.0 ** (1 - p)) * 2.0 ** emax, 2.0 ** (1 - p)


def _arr(backend, values, dtype: str):
    """Backend array of ``dtype`` holding ``values`` exactly (they must be representable)."""
    a = np.asarray(values, dtype=np.float64)
    if dtype == "bfloat16":
        if backend.name == "torch":
            import torch

            return torch.from_numpy(a).to(torch.bfloat16)
        import jax.numpy as jnp

        return jnp.asarray(a, dtype=jnp.bfloat16)
    with np.errstate(over="ignore"):
        return backend.asarray(a.astype(dtype))


def _np(backend, x) -> np.ndarray:
    """float64 (or bool) numpy copy of a backend array (bfloat16 converted exactly)."""
    if backend.name == "torch":
        import torch

        return x.detach().numpy().copy() if x.dtype == torch.bool else (
            x.detach().double().numpy().copy())
    if backend.name == "jax":
        import jax.numpy as jnp

        return np.asarray(x) if x.dtype == jnp.bool_ else np.asarray(x.astype(jnp.float64))
    a = np.asarray(backend.to_numpy(x))
    return a if a.dtype == bool else a.astype(np.float64)


def _reference_renormalize(n: np.ndarray, d: np.ndarray, gamma: float, tiny: float):
    """``N/(sqrt(N²+D²) + gamma)`` in float64, with subnormal components as 0; finite
    tuples are first scaled by a power of two (exact) so that the norm cannot overflow."""
    with np.errstate(all="ignore"):
        n = np.where(np.abs(n) < tiny, n * 0.0, n)  # DAZ
        d = np.where(np.abs(d) < tiny, d * 0.0, d)
        m = np.maximum(np.abs(n), np.abs(d))
        k = np.where(np.isfinite(m) & (m > 0), np.frexp(np.where(np.isfinite(m), m, 1.0))[1], 0)
        ns, ds = np.ldexp(n, -k), np.ldexp(d, -k)
        s = np.hypot(ns, ds)
        # the reference's sqrt(N²+D²) is NaN when a component is NaN (hypot(inf, nan)
        # is inf in IEEE)
        s = np.where(np.isnan(n) | np.isnan(d), NAN, s) + np.ldexp(gamma, -k)
        return ns / s, ds / s


def _same(got: np.ndarray, want: np.ndarray, rtol: float, tiny: float, where: str) -> None:
    """NaN positions and signed zeros exactly; values to ``rtol``, with results below the
    smallest normal compared to an absolute ``tiny`` (JAX flushes subnormal results)."""
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{where}: NaN positions {got} {want}"
    ok = ~np.isnan(want)
    g, w = got[ok], want[ok]
    zero = w == 0
    assert np.array_equal(g[zero], w[zero]) and np.array_equal(
        np.signbit(g[zero]), np.signbit(w[zero])), f"{where}: zeros/signs {g} {w}"
    np.testing.assert_allclose(g[~zero], w[~zero], rtol=rtol, atol=tiny, err_msg=where)


SPECIAL_N = [NAN, 1.0, INF, -INF, INF, INF, NAN, 0.0, -0.0, 0.0, 3.0, -1.0, 1.0, -INF, 2.0]
SPECIAL_D = [1.0, NAN, 1.0, 1.0, INF, NAN, NAN, 0.0, 0.0, -0.0, 4.0, INF, -INF, -2.0, -INF]


@pytest.mark.parametrize("gamma", [1e-9, 0.0, 1e-30, 0.5])
def test_renormalize_special_tuples(backend, gamma):
    for dtype in _dtypes(backend):
        tiny, fmax, eps = _info(dtype)
        sub = tiny / 4  # subnormal: counts as 0
        n = np.array([*SPECIAL_N, sub, -sub, fmax, -fmax, tiny, 0.5])
        d = np.array([*SPECIAL_D, 0.0, sub, fmax, 1.0, -tiny, -sub])
        for sg in (True, False):
            u, v = renormalize(_arr(backend, n, dtype), _arr(backend, d, dtype), gamma,
                               stop_gradient=sg)
            wu, wv = _reference_renormalize(n, d, gamma, tiny)
            where = f"{backend.name} {dtype} gamma={gamma} stop_gradient={sg}"
            _same(_np(backend, u), wu, 8 * eps, tiny, where + " N")
            _same(_np(backend, v), wv, 8 * eps, tiny, where + " D")


def test_renormalize_nan_propagates_and_zero_tuple_in_half(backend):
    """The issue's two examples on every backend/dtype: NaN stays NaN, (0, 0) stays (0, 0)."""
    for dtype in _dtypes(backend):
        u, v = renormalize(_arr(backend, [NAN], dtype), _arr(backend, [1.0], dtype))
        assert np.isnan(_np(backend, u)).all() and np.isnan(_np(backend, v)).all(), dtype
        u, v = renormalize(_arr(backend, [0.0, -0.0], dtype), _arr(backend, [0.0, 0.0], dtype))
        assert _np(backend, u).tolist() == [0.0, 0.0], dtype
        assert np.signbit(_np(backend, u)).tolist() == [False, True], dtype
        assert _np(backend, v).tolist() == [0.0, 0.0], dtype


@pytest.mark.autodiff
def test_renormalize_special_tuples_have_zero_gradient(backend):
    n = np.array([NAN, INF, 0.0, 1e-320, 3.0, -INF])
    d = np.array([1.0, 2.0, 0.0, 0.0, 4.0, INF])
    for sg in (True, False):
        if backend.name == "torch":
            import torch

            N = torch.tensor(n, requires_grad=True)
            D = torch.tensor(d, requires_grad=True)
            u, v = renormalize(N, D, stop_gradient=sg)
            (torch.nan_to_num(u).sum() + torch.nan_to_num(v).sum()).backward()
            gn, gd = N.grad.numpy(), D.grad.numpy()
        else:
            import jax
            import jax.numpy as jnp

            def f(a, b, sg=sg):
                u, v = renormalize(a, b, stop_gradient=sg)
                return jnp.nan_to_num(u).sum() + jnp.nan_to_num(v).sum()

            gn, gd = (np.asarray(g) for g in jax.grad(f, argnums=(0, 1))(jnp.asarray(n),
                                                                          jnp.asarray(d)))
        special = [0, 1, 2, 3, 5]
        assert (gn[special] == 0).all() and (gd[special] == 0).all(), (sg, gn, gd)
        # (3, 4), loss u + v: ∂/∂N = 1/s with s = 5 + gamma detached; differentiated
        # through s: (1/s)(1 − N²/(r·s)) − D·N/(r·s²) = 0.128 − 0.096
        want = 1 / 5 if sg else 0.032
        np.testing.assert_allclose(gn[4], want, rtol=1e-8)


def test_decode_encode_at_max(backend):
    for dtype in _dtypes(backend):
        _, fmax, eps = _info(dtype)
        big = np.array([fmax, -fmax, fmax, fmax, fmax / 2, -fmax])
        den = np.array([1.0, 1.0, 0.5, 2.0, 0.5, -1.0])
        r = decode(_arr(backend, big, dtype), _arr(backend, den, dtype))
        with np.errstate(over="ignore"):
            q = big / den
        if dtype in ("float16", "bfloat16"):
            # exact: ⊥ iff N/D rounds to ±inf (|N/D| ≥ max + ulp/2)
            want_b = np.abs(q) >= fmax * (1 + eps / 4)
        else:
            # the documented 4-ulp guard: ⊥ iff |N| > fl(|D|·max·(1 − 2 eps))
            ovf = fmax * (1 - 2 * eps)
            with np.errstate(over="ignore"):
                want_b = np.abs(big) > np.abs(den) * ovf
        assert _np(backend, r.bottom).tolist() == want_b.tolist(), dtype
        np.testing.assert_array_equal(_np(backend, r.value), np.where(want_b, 0.0, q))
        n, d = encode(_arr(backend, big, dtype), _arr(backend, den, dtype) > 1.0)
        np.testing.assert_array_equal(_np(backend, n), np.where(den > 1, 1.0, big))
        np.testing.assert_array_equal(_np(backend, d), np.where(den > 1, 0.0, 1.0))


def test_projectively_equal_at_max(backend):
    for dtype in _dtypes(backend):
        _, fmax, _ = _info(dtype)
        a = np.array([fmax, fmax, fmax, fmax, -fmax, 1.0])
        b = np.array([1.0, 1.0, fmax, 2.0, 1.0, 1.0])
        c = np.array([fmax, -fmax, 1.0, fmax, -fmax, fmax])
        d = np.array([1.0, 1.0, 1.0, 2.0, 1.0, fmax])
        got = projectively_equal(*(_arr(backend, v, dtype) for v in (a, b, c, d)))
        # products a·d, c·b: equal and finite in the dtype; an overflowing product (2·max)
        # makes the pair unequal, as |inf − inf| = NaN in the reference rule
        want = [True, False, True, False, True, True]
        assert _np(backend, got).tolist() == want, dtype


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_every_half_value_decodes_and_equals_itself(backend, dtype):
    if dtype not in _dtypes(backend):
        pytest.skip(f"{backend.name} has no {dtype}")
    tiny = _info(dtype)[0]
    bits = np.arange(1 << 16, dtype=np.uint32)
    if dtype == "float16":
        v = bits.astype(np.uint16).view(np.float16).astype(np.float64)
    else:
        with np.errstate(invalid="ignore"):  # signalling NaN patterns
            v = (bits << 16).view(np.float32).astype(np.float64)
    v = v[np.isfinite(v)]
    one = np.ones_like(v)
    r = decode(_arr(backend, v, dtype), _arr(backend, one, dtype))
    assert not _np(backend, r.bottom).any(), dtype
    want = np.where(np.abs(v) < tiny, v * 0.0, v)  # subnormals count as signed zero
    got = _np(backend, r.value)
    assert np.array_equal(got, want) and np.array_equal(np.signbit(got), np.signbit(want))
    eq = projectively_equal(*(_arr(backend, w, dtype) for w in (v, one, v, one)))
    assert _np(backend, eq).all(), dtype


def test_complex_decode_flushes_subnormal_parts(backend):
    """Complex tuples decode as complex ``scm.div``: parts below the smallest normal count
    as 0 on every backend (JAX flushes them in hardware), so the masks agree."""
    for dtype, sub in (("complex128", 1e-320), ("complex64", 1.6e-39)):
        n = np.array([1 + 0j, 1e-3 + 2j, complex(sub, 1.0), 3 + 4j], dtype=dtype)
        d = np.array([complex(sub, -sub), complex(sub, 0.0), 2 + 0j, complex(0.0, sub)],
                     dtype=dtype)
        r = decode(backend.asarray(n), backend.asarray(d))
        assert np.asarray(backend.to_numpy(r.bottom)).tolist() == [True, True, False, True]
        v = np.asarray(backend.to_numpy(r.value))
        assert v[2] == 0.5j and not np.signbit(v[2].real), (dtype, v)  # (0 + 1j)/2
