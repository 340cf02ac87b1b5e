"""Differential fuzzing: every backend against the numpy backend on the same random data.

Data is drawn once with the numpy namespace and copied exactly (subnormals included) to
the backend under test through its adapter. Masks must be identical; values agree within
the op's ulp tolerance (``laws.ORACLE_ULPS``), with an absolute floor of the smallest
normal (JAX flushes subnormal results). Python scalars pass through unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import array_api_compat.numpy as np_xp
import numpy as np
from hypothesis import strategies as st

from zpml_core import projective
from zpml_core.inference import InferenceConfig, strict_inference
from zpml_core.testing import (
    SMALL_SHAPES,
    assert_close,
    assert_scm_equal,
    note_reproduction,
    to_numpy,
)

from . import laws
from . import laws_projective as lp

NP = np_xp


def on_backend(backend: Any, a: Any) -> Any:
    """Exact copy of a numpy array (or anything else, unchanged) for ``backend``."""
    if isinstance(a, np.ndarray | np.generic):
        return backend.asarray(np.asarray(a))
    return a


def run_both(backend: Any, fn: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """``fn`` on the numpy data and on the backend copy (the latter is noted for repro)."""
    ref = fn(*args, **kwargs)
    bargs = tuple(on_backend(backend, a) for a in args)
    bkw = {k: on_backend(backend, v) for k, v in kwargs.items()}
    note_reproduction(fn, *bargs, **bkw)
    return fn(*bargs, **bkw), ref


@functools.lru_cache(maxsize=64)
def _labelled(dtype: str, shape: tuple[int, ...]) -> Any:
    from zpml_core.testing import targets

    return targets(NP, dtype=dtype, shape=shape, status_labels=True)


def projective_matches_numpy(data: Any, xp: Any, backend: Any, which: str) -> None:
    """``decode`` / ``encode`` / ``lift_targets`` / ``lift_semantic_targets`` /
    ``renormalize`` / ``projectively_equal`` / ``strict_inference`` on ``backend`` equal
    the numpy backend (masks exact, values within 2 ulp, floor smallest normal)."""
    dt = data.draw(st.sampled_from(laws.dtypes(NP, backend.namespace())), label="dtype")
    shape = data.draw(st.sampled_from(SMALL_SHAPES), label="shape")
    if which == "decode":
        n, d = data.draw(lp._tuples(NP, dt, shape, True), label="(N, D)")
        got, ref = run_both(backend, projective.decode, (n, d), {})
        assert_scm_equal(got, ref, ulps=0, msg="decode differs from numpy (expected)")
    elif which == "encode":
        v, b = data.draw(lp._canonical(NP, dt, shape), label="(value, bottom)")
        got, ref = run_both(backend, projective.encode, (v, b), {})
        for g, r in zip(got, ref, strict=True):
            assert_close(g, r, ulps=0, atol=0.0, signed_zeros=True, msg="encode")
    elif which == "lift_targets":
        y = data.draw(lp._targets(NP, dt, shape), label="y")
        got, ref = run_both(backend, projective.lift_targets, (y,), {})
        for g, r in zip(got, ref, strict=True):
            assert_close(g, r, ulps=0, atol=0.0, signed_zeros=True, msg="lift_targets")
    elif which == "lift_semantic_targets":
        y, labels = data.draw(_labelled(dt, shape), label="(y, labels)")
        got, ref = run_both(backend, projective.lift_semantic_targets, (y, labels), {})
        for g, r, f in zip(got, ref, got._fields, strict=True):
            gn, rn = to_numpy(g), to_numpy(r)
            if gn.dtype.kind == "f":
                assert_close(gn, rn, ulps=0, atol=0.0, signed_zeros=True, msg=f)
            else:
                assert gn.dtype.kind == rn.dtype.kind and np.array_equal(gn, rn), (f, gn, rn)
    elif which == "renormalize":
        n, d = data.draw(lp._tuples(NP, dt, shape, False), label="(N, D)")
        gamma = data.draw(st.sampled_from(lp.GAMMAS), label="gamma")
        if gamma == 0.0:  # (0, 0) / 0 is NaN on every backend; compare where h > 0
            n = np.where((laws.daz(n) == 0) & (laws.daz(d) == 0), np.ones((), n.dtype), n)
        got, ref = run_both(backend, projective.renormalize, (n, d, gamma), {})
        for g, r in zip(got, ref, strict=True):
            assert_close(g, r, ulps=2, msg=f"renormalize (gamma={gamma})")
    elif which == "projectively_equal":
        n1, d1 = data.draw(lp._tuples(NP, dt, shape, True), label="(N1, D1)")
        n2, d2 = data.draw(lp._tuples(NP, dt, shape, True), label="(N2, D2)")
        atol = data.draw(st.sampled_from([0.0, 1e-8, 1.0]), label="atol")
        got, ref = run_both(backend, projective.projectively_equal, (n1, d1, n2, d2),
                            {"atol": atol})
        gn, rn = to_numpy(got), to_numpy(ref)
        assert gn.dtype == np.bool_ and np.array_equal(gn, rn), (gn, rn)
    elif which == "strict_inference":
        tau = data.draw(st.sampled_from(lp.TAUS), label="tau_infer")
        fac = data.draw(st.sampled_from(lp.TRAIN_FACTORS), label="tau_train / tau_infer")
        tau_train = None if fac is None else tau * fac
        taus = (tau,) if tau_train is None else (tau, tau_train)
        extra = data.draw(st.booleans(), label="P has a trailing axis")
        q = data.draw(lp._q_arrays(NP, dt, shape, taus), label="Q").value
        p = data.draw(lp._q_arrays(NP, dt, lp._p_shape(shape, extra), taus), label="P").value
        cfg = InferenceConfig(tau_infer=tau, tau_train=tau_train)
        got, ref = run_both(backend, strict_inference, (p, q), {"config": cfg})
        assert_close(got.decoded, ref.decoded, ulps=0, signed_zeros=True,
                     msg="strict_inference decoded differs from numpy (expected)")
        for f in ("bottom_mask", "gap_mask", "fault_mask", "semantic_bottom_mask",
                  "bottom_provenance"):
            gn, rn = to_numpy(getattr(got, f)), to_numpy(getattr(ref, f))
            if not np.array_equal(gn, rn):
                laws._fail(f"strict_inference {f} differs from numpy", gn != rn,
                           ("got", gn), ("numpy", rn))
    else:  # pragma: no cover
        raise ValueError(which)


PROJECTIVE_CASES = ("decode", "encode", "lift_targets", "lift_semantic_targets",
                    "renormalize", "projectively_equal", "strict_inference")
