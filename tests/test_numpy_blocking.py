"""Large numpy calls run block by block (backends/_chunked.py) with identical results.

Every layout-marked kernel is run with a tiny block (so a 1000-row call is split into
many blocks, with a ragged last block) and whole (``ZPML_NUMPY_BLOCK=0``); masks,
values, NaN positions and signs of zero must be bit-identical. And the heap the
kernels' temporaries live in is kept between calls (``prepare_heap``: no page faults).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from zpml_backends import _chunked

from zpml_core import (
    decode,
    lift_targets,
    projectively_equal,
    renormalize,
    scm,
    strict_inference,
)
from zpml_core._layout import ELEMENTWISE, LEADING
from zpml_core.inference import InferenceConfig

# the public ops' numba fast path would take these calls first (tests/test_fused_kernels.py)
pytestmark = pytest.mark.usefixtures("no_fast_path")

N, M = 1003, 7
EDGE = np.array([0.0, -0.0, 1.0, -1.0, 2.5, -3.0, 1e-320, -1e-320, 1e-308, 1e-160, 1e-154,
                 7.4e-155, 2.0**-511, 1e308, -1e308, 709.78, 710.0, np.inf, -np.inf, np.nan,
                 1e-7, 5e-5, 1e200])


def _data(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape) * 10.0 ** rng.integers(-5, 5, shape)
    flat = a.reshape(-1)
    idx = rng.integers(0, flat.size, flat.size // 4)
    flat[idx] = rng.choice(EDGE, idx.size)
    return a


X, Y = _data(0, (N,)), _data(1, (N,))
X2, Y2 = _data(2, (N, M)), _data(3, (N, M))
MASK = np.random.default_rng(4).random((N,)) < 0.1
with np.errstate(all="ignore"):
    EXPO = np.round(_data(5, (N,)) % 7.0) * 0.5
    X32 = X.astype(np.float32)
    Z1, Z2 = X + 1j * Y, Y - 0.5j * X
    ZZ = X2 + 1j * Y2
    X_2, Y_2 = 2.0 * X, 2.0 * Y

Case = Callable[[], Any]
CASES: dict[str, Case] = {
    "add": lambda: scm.add(X, Y, mask_x=MASK),
    "sub": lambda: scm.sub(X2, Y2[0]),
    "mul": lambda: scm.mul(X2, Y2[:1]),
    "div": lambda: scm.div(X, Y, mask_y=MASK),
    "div_2d_broadcast": lambda: scm.div(X2, Y2[5]),
    "inv": lambda: scm.inv(X),
    "neg": lambda: scm.neg(X2),
    "log": lambda: scm.log(X),
    "exp": lambda: scm.exp(X, mask=MASK),
    "sqrt": lambda: scm.sqrt(X2),
    "sin": lambda: scm.sin(X),
    "tan": lambda: scm.tan(X32),
    "pow_scalar": lambda: scm.pow(X, 0.5),
    "pow_array": lambda: scm.pow(X, EXPO, mask=MASK),
    "div_complex": lambda: scm.div(Z1, Z2),
    "log_complex": lambda: scm.log(ZZ),
    "add_int": lambda: scm.add(np.arange(N), np.arange(N)[::-1].copy()),
    "decode": lambda: decode(X2, Y2),
    "renormalize": lambda: renormalize(X, Y),
    "projectively_equal": lambda: projectively_equal(X, Y, X_2, Y_2),
    "lift_targets": lambda: lift_targets(X2),
    "strict_inference": lambda: strict_inference(X, Y, config=InferenceConfig(
        tau_infer=1e-6, tau_train=1e-4)),
    "strict_inference_P_more_dims": lambda: strict_inference(X2, Y),
    "strict_inference_factors": lambda: strict_inference(
        X2, Y, validity_factors=[X, Y2], validity_taus=[1e-3, 1e-2]),
}


def _leaves(r: Any) -> list[np.ndarray]:
    if isinstance(r, np.ndarray | np.generic):
        return [np.asarray(r)]
    if hasattr(r, "decoded"):  # InferenceResult
        return [np.asarray(getattr(r, k)) for k in
                ("decoded", "bottom_mask", "gap_mask", "fault_mask", "semantic_bottom_mask")]
    return [leaf for part in r for leaf in _leaves(part)]


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a.view(np.uint8), b.view(np.uint8))
                    or (np.array_equal(a, b, equal_nan=True)
                        and np.array_equal(np.signbit(a.real), np.signbit(b.real))))
    return bool(np.array_equal(a, b))


@pytest.mark.parametrize("name", list(CASES))
def test_blocked_equals_whole(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_plan = _chunked._plan

    def spy(kind: str, args: tuple[Any, ...], block: int) -> Any:
        plan = real_plan(kind, args, block)
        calls.append(0 if plan is None else -(-plan[0] // plan[1]))
        return plan

    monkeypatch.setattr(_chunked, "_plan", spy)
    monkeypatch.setenv("ZPML_NUMPY_BLOCK", "48")
    blocked = _leaves(CASES[name]())
    assert calls and max(calls) > 5, f"{name}: the call was not split into blocks ({calls})"
    monkeypatch.setenv("ZPML_NUMPY_BLOCK", "0")
    whole = _leaves(CASES[name]())
    assert len(blocked) == len(whole)
    for i, (b, w) in enumerate(zip(blocked, whole, strict=True)):
        assert _identical(b, w), (
            f"{name}[{i}]: blocked result differs at "
            f"{np.flatnonzero(~((b == w) | (np.isnan(b) & np.isnan(w))).reshape(-1))[:5]}"
        )


def test_plans() -> None:
    a, b = np.zeros((1000, 3)), np.zeros((1000,))
    # elementwise: lower-dimensional operands align with trailing axes -> passed whole
    n, rows, cut = _chunked._plan(ELEMENTWISE, (a, np.zeros(3), None), 100)
    assert (n, rows) == (1000, 33) and cut(a) and not cut(np.zeros(3))
    # elementwise with a leading broadcast axis of 1
    n, rows, cut = _chunked._plan(ELEMENTWISE, (a, np.zeros((1, 3))), 100)
    assert n == 1000 and not cut(np.zeros((1, 3)))
    # small calls, 0-d calls and non-numpy inputs run whole
    assert _chunked._plan(ELEMENTWISE, (np.zeros(150),), 100) is None
    assert _chunked._plan(ELEMENTWISE, (np.zeros(()),), 100) is None
    assert _chunked._plan(ELEMENTWISE, ([1.0] * 1000,), 100) is None
    # leading: P with more dims than Q is split; P with fewer dims than Q is not (P's
    # axis 0 would align with a trailing axis of Q), nor are different leading lengths
    assert _chunked._plan(LEADING, (a, b, ()), 100) is not None
    assert _chunked._plan(LEADING, (b, a, ()), 100) is None
    assert _chunked._plan(LEADING, (a, np.zeros(999), ()), 100) is None
    assert _chunked._plan(LEADING, (b, b, (a,)), 100) is None


def test_bad_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZPML_NUMPY_BLOCK", "lots")
    with pytest.raises(ValueError, match="ZPML_NUMPY_BLOCK"):
        scm.div(X, Y)


_HEAP_PROBE = """
import resource, sys
import numpy as np
from zpml_backends import _chunked
if sys.argv[1] == "unprepared":
    _chunked._heap_prepared = True  # pretend it was done: glibc's thresholds stay low
from zpml_core import scm
rng = np.random.default_rng(0)
x, y = rng.standard_normal(100_000), rng.standard_normal(100_000)
for _ in range(3):
    scm.div(x, y)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    scm.div(x, y)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


#: what fixes glibc's malloc thresholds for a process (any of these switches its dynamic
#: adjustment off); distributed's Nanny, for one, exports MALLOC_TRIM_THRESHOLD_
_MALLOC_SETTINGS = (*_chunked._MALLOC_VARS, "GLIBC_TUNABLES", "LD_PRELOAD")


def _default_env(**settings: str) -> dict[str, str]:
    """This environment without malloc settings or ``ZPML_NUMPY_BLOCK``, plus ``settings``."""
    env = {k: v for k, v in os.environ.items()
           if k not in _MALLOC_SETTINGS and k != "ZPML_NUMPY_BLOCK"}
    return {**env, **settings}


def _heap_faults(mode: str, **settings: str) -> int:
    env = _default_env(ZPML_FAST="0", **settings)
    out = subprocess.run([sys.executable, "-c", _HEAP_PROBE, mode], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.split()[-1])


_GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _GLIBC, reason="glibc's dynamic malloc thresholds")
def test_heap_is_kept_between_calls() -> None:
    # 10^5 float64 elements run whole (below the blocking threshold): ~20 temporaries of
    # 800 KB. Without prepare_heap glibc trims the heap after every call and the next
    # call page-faults it back (~1000 faults per call); with it, none. glibc's defaults:
    # the probe's environment carries no malloc settings.
    assert _heap_faults("unprepared") > 2000  # the failure this guards against is real here
    assert _heap_faults("prepared") < 200


@pytest.mark.skipif(not _GLIBC, reason="glibc's malloc settings")
def test_explicit_malloc_settings_stand() -> None:
    # a process whose thresholds were fixed (here as distributed's Nanny fixes its
    # workers') keeps them: prepare_heap never overrides them (no mallopt), so the trim
    # threshold chosen there holds and the whole 10^5 call pays its page faults
    assert _heap_faults("prepared", MALLOC_TRIM_THRESHOLD_="65536", ZPML_NUMPY_BLOCK="0") > 2000


def _environ(**kv: str) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in {"PATH": "/usr/bin", **kv}.items())


def test_fixed_threshold_block_from_the_start_environment() -> None:
    f = _chunked.fixed_threshold_block
    assert f(b"") is None and f(_environ()) is None  # dynamic thresholds
    assert f(_environ(GLIBC_TUNABLES="glibc.malloc.hugetlb=1")) is None  # not a threshold
    # distributed's Nanny: trim 64 KiB, top pad 128 KiB → four 32 KiB temporaries
    assert f(_environ(MALLOC_TRIM_THRESHOLD_="65536")) == 4096
    assert f(_environ(GLIBC_TUNABLES="glibc.malloc.trim_threshold=65536")) == 4096
    assert f(_environ(MALLOC_MMAP_MAX_="0")) == 4096
    # large thresholds keep large temporaries on the heap: the default block
    big = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=67108864"
    assert f(_environ(GLIBC_TUNABLES=big)) == _chunked.DEFAULT_BLOCK
    # a small mmap threshold bounds the block even with a large trim threshold
    assert f(_environ(MALLOC_TRIM_THRESHOLD_="67108864", MALLOC_MMAP_THRESHOLD_="32768")) == 4096
    # tiny or unparsable settings: the smallest block, never below it
    assert f(_environ(MALLOC_TOP_PAD_="0", MALLOC_TRIM_THRESHOLD_="x")) == _chunked.MIN_FIXED_BLOCK
    assert f(_environ(MALLOC_MMAP_THRESHOLD_="1")) == _chunked.MIN_FIXED_BLOCK


_BLOCK_PROBE = """
import os, sys
from zpml_backends import _chunked
print(_chunked.block_size())
os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"  # after the start: glibc never sees it
_chunked._process_block.cache_clear()
print(_chunked.block_size())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/environ")
def test_block_size_follows_the_settings_glibc_started_with() -> None:
    def blocks(**extra: str) -> list[int]:
        out = subprocess.run([sys.executable, "-c", _BLOCK_PROBE], env=_default_env(**extra),
                             capture_output=True, text=True, timeout=120, check=True)
        return [int(v) for v in out.stdout.split()]

    assert blocks() == [_chunked.DEFAULT_BLOCK] * 2
    assert blocks(MALLOC_TRIM_THRESHOLD_="65536") == [4096, 4096]
    assert blocks(MALLOC_TRIM_THRESHOLD_="65536", ZPML_NUMPY_BLOCK="1000") == [1000, 1000]
