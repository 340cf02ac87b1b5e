"""Large eager torch inputs run fused (inductor) and give the eager results bit for bit.

Values (signed zeros included), NaN positions and masks are identical: only kernels made
of exactly specified operations are fused (``backends/_torch_fuse.py``), so inductor's
own libm/sqrt never decide a value. (Before: values could differ by libm ulps.) The
dtype-by-dtype differential test is ``tests/hostile/test_fused_paths.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zpml_core  # noqa: E402
from zpml_core import decode, lift_targets, projectively_equal, renormalize, scm, strict_inference  # noqa: E402

pytestmark = pytest.mark.slow

N = 1 << 17
EDGE = np.array([0.0, -0.0, 1.0, -1.0, 2.5, -3.0, 1e-320, -1e-320, 1e-308, 1e-160, 1e-154,
                 7.4e-155, 2.0**-511, 1e308, -1e308, 709.78, 710.0, np.inf, -np.inf, np.nan,
                 1e-7, 5e-5, 1e200])


def _data(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(N) * 10.0 ** rng.integers(-5, 5, N)
    idx = rng.integers(0, N, N // 4)
    a[idx] = rng.choice(EDGE, idx.size)
    return a


X, Y = _data(0), _data(1)


@pytest.fixture(scope="module", autouse=True)
def _inductor_path(no_fast_path: None) -> None:
    """These tests hold inductor's fused path to eager: the numba fast path, which
    would take the float32/float64 calls first, is off (``no_fast_path``)."""


@pytest.fixture(scope="module")
def backend():
    b = zpml_core.get_backend_by_name("torch")
    if not b._fuser.enabled:
        pytest.fail("ZPML_TORCH_FUSE=0 is set: fusion cannot be tested")
    return b


CASES = {
    "div": lambda a, b: tuple(scm.div(a, b)),
    "mul": lambda a, b: tuple(scm.mul(a, b)),
    "add": lambda a, b: tuple(scm.add(a, b)),
    "inv": lambda a, b: tuple(scm.inv(a)),
    "log": lambda a, b: tuple(scm.log(a)),
    "exp": lambda a, b: tuple(scm.exp(a)),
    "sqrt": lambda a, b: tuple(scm.sqrt(a)),
    "sin": lambda a, b: tuple(scm.sin(a)),
    "pow": lambda a, b: tuple(scm.pow(a, torch.round(b) * 0.5)),
    "decode": lambda a, b: tuple(decode(a, b)),
    "strict_inference": lambda a, b: (*strict_inference(a, b), ),
    "renormalize": lambda a, b: renormalize(a, b),
    "projectively_equal": lambda a, b: (projectively_equal(a, b, a, b),),
    "lift_targets": lambda a, b: lift_targets(a),
}


def _compare(fused: tuple, eager: tuple, name: str) -> None:
    for i, (f, e) in enumerate(zip(fused, eager, strict=True)):
        f, e = f.numpy(), e.numpy()
        assert f.dtype == e.dtype and f.shape == e.shape, name
        if f.dtype == bool:
            assert np.array_equal(f, e), f"{name}[{i}]: masks differ at {np.flatnonzero(f != e)[:5]}"
            continue
        assert np.array_equal(np.isnan(f), np.isnan(e)), f"{name}[{i}]: NaN positions differ"
        ok = ~np.isnan(f)
        assert np.array_equal(np.signbit(f[ok]), np.signbit(e[ok])), f"{name}[{i}]: signs"
        bad = f[ok] != e[ok]
        assert not bad.any(), f"{name}[{i}]: {int(bad.sum())} values differ"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_fused_equals_eager(backend, name: str, dtype: str) -> None:
    fn = CASES[name]
    with np.errstate(over="ignore"):  # float32 cast of 1e308 etc. is inf on purpose
        a = torch.from_numpy(X.astype(dtype))
        b = torch.from_numpy(Y.astype(dtype))
    fused = fn(a, b)
    backend._fuser.enabled = False
    try:
        eager = fn(a, b)
    finally:
        backend._fuser.enabled = True
    _compare(fused, eager, name)


def test_fusion_happened(backend) -> None:
    scm.div(torch.from_numpy(X), torch.from_numpy(Y))
    assert any("div" in k for k in backend._fuser.compiled_kernels())


def test_grad_and_small_inputs_stay_eager(backend) -> None:
    small = torch.ones(8, dtype=torch.float64)
    seen = lambda: set(backend._fuser.compiled_kernels()) | set(backend._fuser.unfused_kernels())  # noqa: E731
    before = seen()
    scm.exp(small)                                      # small: eager
    x = torch.from_numpy(X.copy()).requires_grad_(True)
    v, _ = scm.tan(x)                                   # requires grad: eager autograd
    v.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert not seen() - before  # nothing was even captured by torch.compile
