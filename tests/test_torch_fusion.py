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


# --- the graph rewrite that makes inductor's vector code fast (_torch_graph) ---

def _graph_ops(gm) -> set[str]:
    import operator

    names = set()
    for node in gm.graph.nodes:
        if node.op == "call_function":
            t = node.target
            names.add({operator.and_: "and_", operator.or_: "or_", operator.xor: "xor",
                       operator.invert: "invert"}.get(t, getattr(t, "__name__", str(t))))
        elif node.op == "call_method":
            names.add(node.target)
    return names


def test_rewrite_removes_mask_logic_and_writes_bool_outputs_as_bytes() -> None:
    # Boolean algebra and isfinite are rewritten into selections and one subtraction,
    # bool outputs into uint8: the rewritten graph (run as it is, uncompiled) gives the
    # eager results bit for bit on inf/NaN/signed-zero data, once the bytes are viewed
    # as bool.
    from zpml_backends._torch_graph import vectorisable_masks

    seen: dict = {}

    def capture(gm, example_inputs):
        seen["before"] = _graph_ops(gm)
        seen["positions"] = vectorisable_masks(gm)
        seen["after"] = _graph_ops(gm)
        return gm.forward

    def f(x, y):
        a, b = x < y, torch.isfinite(x - y)
        return x * 2.0, a & b, ~(a | b), a ^ b, torch.where(~a, x, y)

    a = torch.from_numpy(X)
    b = torch.from_numpy(Y)
    got = torch.compile(f, backend=capture, fullgraph=True, dynamic=True)(a, b)
    want = f(a, b)
    assert {"and_", "or_", "xor", "invert", "isfinite"} <= seen["before"]
    assert not {"and_", "or_", "xor", "invert", "isfinite"} & seen["after"]
    assert seen["positions"] == [1, 2, 3]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if i in seen["positions"]:
            assert g.dtype == torch.uint8
            g = g.view(torch.bool)
        assert g.dtype == w.dtype
        assert torch.equal(g.view(torch.uint8) if g.dtype == torch.bool else
                           g.view(torch.int64), w.view(torch.uint8) if w.dtype == torch.bool
                           else w.view(torch.int64)), i


def test_fused_calls_use_the_forward_only_branch(backend) -> None:
    import array_api_compat.torch as compat
    from zpml_backends._torch_fuse import _with_compat_namespace, _with_fused_namespace

    static = {"xp": compat, "be": backend}
    fused = _with_fused_namespace(static)
    twin = fused["be"]
    assert twin.supports_autodiff is False and backend.supports_autodiff is True
    assert isinstance(twin, type(backend)) and twin._fuser is backend._fuser
    assert _with_fused_namespace(static)["be"] is twin  # one twin per adapter
    assert _with_compat_namespace(fused) == static


def test_library_kernels_fuse_from_a_larger_size(backend, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    # a kernel that calls a library function (log: an extern call between two loops)
    # fuses from LIBRARY_FACTOR · min_numel elements, an arithmetic one from min_numel
    from zpml_backends import _torch_fuse as tf

    fresh = tf.TorchFuser()
    fresh.min_numel = 64
    monkeypatch.setattr(backend, "_fuser", fresh)
    used: list[int] = []
    real = fresh._eager_only

    def spy(arrays, min_numel):
        used.append(min_numel)
        return real(arrays, min_numel)

    monkeypatch.setattr(fresh, "_eager_only", spy)
    a = torch.from_numpy(X[:100].copy())
    scm.log(a)  # 100 ≥ 64: compiled; the graph calls zpml::eager_unary
    assert fresh.fused_graphs() == 1 and used[-1] == 64
    scm.log(a)
    assert used[-1] == 64 * tf.LIBRARY_FACTOR  # 100 elements: eager from now on
    scm.div(a, a)
    assert used[-1] == 64 and fresh.fused_graphs() == 2
