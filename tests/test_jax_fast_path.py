"""The JAX fast path (``JaxBackend.fast``): eager calls on concrete float32/float64 arrays
run the public op's jitted kernel without argument preparation. Guard: bit for bit the
array-API path's result (values, masks) for every op and edge value, and the path is
declined wherever that path would do something else (tracers, dtypes, shapes)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requested_backends

if "jax" not in requested_backends()[0]:
    pytest.skip("jax is not among the tested backends", allow_module_level=True)

import jax
import jax.numpy as jnp

import zpml_core._registry as registry
from zpml_core import _xp, get_backend_by_name, scm, strict_inference

BINARY = ("add", "sub", "mul", "div")
UNARY = ("neg", "inv", "log", "exp", "sqrt", "sin", "cos", "tan")


def edge_values(dtype: str) -> np.ndarray:
    fi = np.finfo(dtype)
    tiny, big = float(fi.smallest_normal), float(fi.max)
    base = [0.0, 1.0, 3.0, 0.5, tiny, tiny * 1.5, tiny / 4, float(np.sqrt(tiny)),
            float(np.sqrt(tiny)) * (1 - float(fi.eps)), big, big / 3, float(np.sqrt(big)), 88.7,
            709.8, 1e20, np.inf, np.nan]
    v = np.array(base + [-b for b in base], dtype=dtype)
    rng = np.random.default_rng(31)
    emax = float(np.log10(big))
    rand = (rng.standard_normal(4000) * 10.0 ** rng.uniform(-emax, emax, 4000)).astype(dtype)
    return np.concatenate([v, rand])


def pairs(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    v = edge_values(dtype)
    e = v[:34]
    x = np.concatenate([np.repeat(e, len(e)), v[34:]])
    y = np.concatenate([np.tile(e, len(e)), np.random.default_rng(32).permutation(v[34:])])
    return x, y


def array_api_path(fn, *args):
    """``fn(*args)`` with every fast path switched off (the array-API path)."""
    saved = dict(registry._FAST)
    registry._FAST.clear()
    try:
        return fn(*args)
    finally:
        registry._FAST.update(saved)


def same_bits(a, b) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.dtype.kind == "f":
        a, b = a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")
    np.testing.assert_array_equal(a, b)


@pytest.fixture(autouse=True)
def _x64():
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", prev)


def test_the_fast_path_serves_concrete_arrays():
    x = jnp.ones(3)
    assert registry.fast_backend(type(x)) is get_backend_by_name("jax")
    # the namespace the array-API path detects is the one the fast path compiles with
    assert _xp.namespace(x) is get_backend_by_name("jax").namespace()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_bit_identical_to_the_array_api_path(dtype):
    x, y = (jnp.asarray(a) for a in pairs(dtype))
    be = get_backend_by_name("jax")
    for op in BINARY:
        assert be.fast(op, x, y) is not None
        fast, slow = getattr(scm, op)(x, y), array_api_path(getattr(scm, op), x, y)
        same_bits(fast.value, slow.value)
        same_bits(fast.bottom, slow.bottom)
    for op in UNARY:
        assert be.fast(op, x) is not None
        fast, slow = getattr(scm, op)(x), array_api_path(getattr(scm, op), x)
        same_bits(fast.value, slow.value)
        same_bits(fast.bottom, slow.bottom)
    fast, slow = strict_inference(x, y), array_api_path(strict_inference, x, y)
    for a, b in zip((*fast, fast.fault_mask, fast.semantic_bottom_mask),
                    (*slow, slow.fault_mask, slow.semantic_bottom_mask), strict=True):
        same_bits(a, b)


def test_declined_where_the_array_api_path_differs():
    be = get_backend_by_name("jax")
    x64 = jnp.ones(4)
    assert be.fast("div", x64, jnp.ones(4, dtype=jnp.float32)) is None  # promotion
    assert be.fast("div", x64, jnp.ones(3)) is None  # broadcasting
    assert be.fast("div", x64, jnp.ones((1, 4))) is None
    assert be.fast("div", jnp.ones(4, dtype=jnp.float16), jnp.ones(4, dtype=jnp.float16)) is None
    assert be.fast("div", jnp.ones(4, dtype=jnp.int32), jnp.ones(4, dtype=jnp.int32)) is None
    assert be.fast("inv", jnp.ones(4, dtype=jnp.complex128)) is None
    # tracers are other types: inside jit and grad the public op takes the full path,
    # where the gradient policy gate applies
    seen = []

    def f(a):
        seen.append(registry.fast_backend(type(a)))
        return scm.div(a, a).value.sum()

    jax.jit(f)(x64)
    jax.grad(f)(x64)
    assert seen == [None, None]
    # an underflowing tau_infer is the array-API path's ValueError
    from zpml_core.inference import InferenceConfig

    with pytest.raises(ValueError, match="tau_infer"):
        strict_inference(jnp.ones(2, dtype=jnp.float32), jnp.ones(2, dtype=jnp.float32),
                         config=InferenceConfig(tau_infer=1e-50))
