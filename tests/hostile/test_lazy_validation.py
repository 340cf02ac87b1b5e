"""Class: lazy and traced arrays skip validation.

Value-dependent checks must hold for every kind of array: concrete arrays raise at the
call, dask arrays raise the same ``ValueError`` when the result is computed, traced values
that cannot raise (``jax.jit``, ``torch.compile``, ``vmap``) poison the offending targets
with NaN. Dask arrays with unknown chunk sizes (``x[mask]``) work in every public function
and give the numpy result after compute, or raise a ``ValueError`` that names the argument
and says to call ``compute_chunk_sizes()``.

Expected values come from the label table of ``lift_semantic_targets`` (written out
below) and from the numpy backend (an independent, eager code path for dask).
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from conftest import assert_same_bits

from zpml_core import lift_semantic_targets, losses, scm, strict_inference
from zpml_core._xp import broadcast_shape
from zpml_core.inference import InferenceConfig

from .public_api import PUBLIC

NAN, INF = math.nan, math.inf
MSG = "finite' status label"

# label → (Y_n for a non-finite label, Y_d): the rule, written out independently
TABLE = {"finite": (None, 1.0), "bottom": (1.0, 0.0), "censored_below": (-1.0, 0.0),
         "censored_above": (1.0, 0.0), "domain_invalid": (1.0, 0.0), "fault": (1.0, 0.0),
         "missing": (0.0, 1.0)}


def _labelled(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random targets and labels with non-finite values at non-'finite' labels, plus the
    mask of 'finite' labels where a non-finite value will be planted."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(list(TABLE), size=shape)
    y = rng.normal(size=shape) * 10.0 ** rng.integers(-3, 4, size=shape)
    y = np.where(labels == "finite", y, rng.choice([NAN, INF, -INF, 0.5], size=shape))
    fin = np.argwhere(labels == "finite")
    plant = np.zeros(shape, dtype=bool)
    for idx in fin[rng.permutation(len(fin))[: max(1, len(fin) // 4)]]:
        plant[tuple(idx)] = True
    return y, labels, plant


def _expected(y: np.ndarray, labels: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, ...]:
    yn = np.array([y.flat[i] if lab == "finite" else TABLE[lab][0]
                   for i, lab in enumerate(labels.flat)]).reshape(y.shape)
    yd = np.array([TABLE[lab][1] for lab in labels.flat]).reshape(y.shape)
    return np.where(bad, NAN, yn), np.where(bad, NAN, yd)


# ---------------------------------------------------------------------------------------
# concrete arrays: ValueError at the call (numpy, torch, jax, strict)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_finite_label_on_non_finite_raises_eagerly(arr: Any, seed: int, value: float) -> None:
    y, labels, plant = _labelled(seed, (3, 5))
    st = lift_semantic_targets(arr(y), labels.tolist())  # valid: no error
    yn, yd = _expected(y, labels, np.zeros_like(plant))
    assert_same_bits(arr.np(st.Y_n), yn)
    assert_same_bits(arr.np(st.Y_d), yd)
    with pytest.raises(ValueError, match=MSG):
        lift_semantic_targets(arr(np.where(plant, value, y)), labels.tolist())


# ---------------------------------------------------------------------------------------
# traced values: NaN poison at exactly the offending elements (torch, jax)


def _transforms(backend_name: str) -> list[tuple[str, Any]]:
    if backend_name == "torch":
        import torch

        return [("torch.compile", lambda f: torch.compile(f, fullgraph=True)),
                ("torch.func.vmap", torch.func.vmap)]
    if backend_name == "jax":
        import jax

        return [("jax.jit", jax.jit), ("jax.vmap", jax.vmap)]
    return []


@pytest.mark.parametrize("seed", range(2))
def test_traced_finite_label_on_non_finite_poisons(arr: Any, backend_name: str,
                                                   seed: int) -> None:
    transforms = _transforms(backend_name)
    if not transforms:
        pytest.skip(f"{backend_name} has no tracing transform (eager checks above)")
    y, labels, plant = _labelled(seed + 10, (4, 6))
    ybad = np.where(plant, np.array([NAN, INF, -INF] * 8)[: plant.size].reshape(plant.shape), y)
    for name, transform in transforms:
        if name.endswith("vmap"):  # vmap over rows sharing one row of labels
            r = int(np.argmax((labels == "finite").sum(axis=1)))
            fin = np.flatnonzero(labels[r] == "finite")
            assert fin.size
            yv = np.array(np.broadcast_to(y[r], y.shape))
            bad = np.zeros(y.shape, dtype=bool)
            for i in range(0, y.shape[0], 2):  # even rows get one bad element, odd rows none
                bad[i, fin[(i // 2) % fin.size]] = True
            vals = np.resize(np.array([NAN, INF, -INF]), y.shape)
            row_labels = labels[r].tolist()

            def lift_v(t: Any, lab: list[str] = row_labels) -> tuple[Any, Any]:
                st = lift_semantic_targets(t, lab)
                return st.Y_n, st.Y_d

            fn, inp = transform(lift_v), np.where(bad, vals, yv)
            exp = _expected(yv, np.broadcast_to(labels[r], y.shape), bad)
        else:
            lab2 = labels.tolist()

            def lift_c(t: Any, lab: list[list[str]] = lab2) -> tuple[Any, Any]:
                st = lift_semantic_targets(t, lab)
                return st.Y_n, st.Y_d

            lift_c(arr(y))  # warm: the poison must not depend on a cold start
            fn, inp, exp = transform(lift_c), ybad, _expected(y, labels, plant)
        got_n, got_d = fn(arr(np.ascontiguousarray(inp)))
        assert_same_bits(arr.np(got_n), exp[0])
        assert_same_bits(arr.np(got_d), exp[1])
        # a fit loss over poisoned targets is NaN: the trainer's non-finite guard stops
        p = arr(np.ones(y.shape))
        assert math.isnan(float(arr.np(losses.implicit_loss(p, p, got_n, got_d))))


def test_vmap_lifts_like_eager(backend_name: str) -> None:
    if backend_name not in ("torch", "jax"):
        pytest.skip("vmap transforms: torch.func.vmap and jax.vmap")
    y, labels, _ = _labelled(21, (5, 4))
    lab = labels[2].tolist()
    rows = np.where(np.isfinite(y), y, 1.0)  # every row valid under row 2's labels
    if backend_name == "torch":
        import torch

        to = torch.from_numpy
        # the function itself, labels as an unbatched (host-side) argument
        got = torch.func.vmap(lift_semantic_targets, in_dims=(0, None))(to(rows), lab)
    else:
        import jax
        import jax.numpy as jnp

        to = jnp.asarray
        got = jax.vmap(lift_semantic_targets, in_axes=(0, None))(to(rows), lab)
    for i in range(rows.shape[0]):
        ref = lift_semantic_targets(to(rows[i]), lab)  # eager, one row
        for g, r in zip(got, ref, strict=True):
            assert_same_bits(np.asarray(g[i]), np.asarray(r))


# ---------------------------------------------------------------------------------------
# dask: lazy at the call, ValueError at compute

da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def dask_backend() -> Any:
    from zpml_backends.dask_adapter import DaskBackend

    import zpml_core

    if "dask" not in zpml_core.registered_backends():
        zpml_core.register_backend(DaskBackend())
    return zpml_core.get_backend_by_name("dask")


@contextmanager
def no_compute() -> Iterator[None]:
    from dask.callbacks import Callback

    started: list[int] = []

    class Counter(Callback):
        def _start(self, dsk: Any) -> None:
            started.append(1)

    with Counter():
        yield
    assert not started, "the call computed a dask graph (it must stay lazy)"


@pytest.mark.parametrize("seed", range(3))
def test_dask_finite_label_raises_at_compute(dask_backend: Any, seed: int) -> None:
    y, labels, plant = _labelled(seed + 30, (7, 5))
    lab = labels.tolist()
    ybad = np.where(plant, INF, y)
    with no_compute():
        good = lift_semantic_targets(da.from_array(y, chunks=(3, 2)), lab)
        bad = lift_semantic_targets(da.from_array(ybad, chunks=(3, 2)), lab)
        p = da.ones(y.shape, chunks=3)
        loss = losses.implicit_loss(p, p, bad.Y_n, bad.Y_d)
    ref = lift_semantic_targets(y, lab)
    for g, r in zip(good, ref, strict=True):
        np.testing.assert_array_equal(g.compute(), r)
    for lazy in (bad.Y_n, bad.Y_d, loss, bad.Y_n[:1, :1] if plant[0, 0] else bad.Y_n.sum()):
        with pytest.raises(ValueError, match=MSG):
            lazy.compute()
    # label-only outputs carry no wrong value: they compute
    np.testing.assert_array_equal(bad.mask_finite.compute(), labels == "finite")


def test_generic_lazy_backend_poisons(dask_backend: Any) -> None:
    """An adapter without its own ``require`` (any lazy library array-api-compat knows)
    cannot raise at the call: it poisons, never returns the inf silently."""
    import array_api_compat.dask.array as dxp

    from zpml_core._registry import GenericBackend

    bad = da.from_array(np.array([False, True, False, True]), chunks=2)
    vals = da.from_array(np.array([1.0, INF, 3.0, -INF]), chunks=2)
    flags = da.from_array(np.array([True, False, True, False]), chunks=2)
    out_v, out_f = GenericBackend().require(bad, "m", (vals, flags), xp=dxp)
    assert_same_bits(out_v.compute(), np.array([1.0, NAN, 3.0, NAN]))
    np.testing.assert_array_equal(out_f.compute(), [True, False, True, False])


# ---------------------------------------------------------------------------------------
# dask with unknown chunk sizes

EDGE = np.array([0.0, -0.0, 1.0, -1.0, 2.5, -3e-5, 1e-320, 1e308, -1e308, INF, -INF, NAN,
                 7.0, 1e-5, 0.25, -2.0])
N = 23


def _unknown(a: np.ndarray) -> Any:
    """``a`` as a dask array whose leading size is unknown (a boolean selection)."""
    full = np.concatenate([np.zeros((1, *a.shape[1:]), dtype=a.dtype), a])
    keep = np.arange(full.shape[0]) > 0
    x = da.from_array(full, chunks=(5, *a.shape[1:]))[da.from_array(keep, chunks=5)]
    assert math.isnan(x.shape[0])
    return x


def _inputs(name: str, args: tuple[str, ...], bool_args: tuple[str, ...],
            seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for a in args:
        if a in bool_args:
            out[a] = rng.random(N) < 0.5
        elif a == "fit_loss":
            out[a] = np.asarray(0.5)
        else:
            out[a] = rng.choice(EDGE, size=N) * rng.choice([1.0, 0.5, -1.0], size=N)
    return out


def _flat(r: Any) -> list[Any]:
    if isinstance(r, tuple):
        return [x for item in r for x in _flat(item)]
    if isinstance(r, dict):
        return [x for k in sorted(r) for x in _flat(r[k])]
    return [r]


def _compare(got: Any, ref: Any, name: str) -> None:
    g_all, r_all = _flat(got), _flat(ref)
    assert len(g_all) == len(r_all)
    for g, r in zip(g_all, r_all, strict=True):
        g, r = np.asarray(g), np.asarray(r)
        assert g.shape == r.shape and g.dtype == r.dtype, (name, g.shape, r.shape)
        if r.ndim == 0 and r.dtype.kind == "f":  # a reduction: dask sums chunk by chunk
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=0, err_msg=name)
        elif r.dtype.kind == "f":
            assert_same_bits(g, r)
        else:
            np.testing.assert_array_equal(g, r, err_msg=name)


CASES = [p for p in PUBLIC if p.name != "lift_semantic_targets"]


@pytest.fixture(params=["fused", "unfused"])
def dask_mode(request: pytest.FixtureRequest, dask_backend: Any) -> Iterator[str]:
    if request.param == "fused":
        yield "fused"
        return
    from zpml_backends.dask_adapter import DaskBackend

    import zpml_core
    from zpml_core._registry import unregister_backend

    class Unfused(DaskBackend):
        name = "dask-unfused"

    zpml_core.register_backend(Unfused(fuse=False), replace=True)
    try:
        yield "unfused"
    finally:
        unregister_backend("dask-unfused")
        zpml_core.register_backend(dask_backend, replace=True)


@pytest.mark.parametrize("public", CASES, ids=[p.name for p in CASES])
def test_unknown_chunks_every_public_function(dask_mode: str, public: Any) -> None:
    import dask

    inputs = _inputs(public.name, public.args, public.bool_args, seed=zlib.crc32(public.name.encode()))
    ref = public.call(*(inputs[a] for a in public.args))
    lazy = {k: (_unknown(v) if v.ndim else da.from_array(v)) for k, v in inputs.items()}
    with no_compute():
        out = public.call(*(lazy[a] for a in public.args))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = dask.compute(_flat(out))[0]
    _compare(tuple(got), ref, public.name)


def test_unknown_chunks_strict_inference_more_dims(dask_mode: str) -> None:
    import dask

    rng = np.random.default_rng(5)
    p = rng.choice(EDGE, size=(N, 3))
    q = rng.choice(EDGE, size=N)
    v = np.abs(rng.choice(EDGE, size=(N, 3)))
    cfg = InferenceConfig(tau_infer=1e-6, tau_train=1e-4)
    ref = strict_inference(p, q, config=cfg, validity_factors=[v])
    with no_compute():
        res = strict_inference(_unknown(p), _unknown(q), config=cfg,
                               validity_factors=[_unknown(v)])
        lazy = (*res, res.fault_mask, res.semantic_bottom_mask, res.bottom_provenance)
    got = dask.compute(*lazy)
    _compare(tuple(got), (*ref, ref.fault_mask, ref.semantic_bottom_mask,
                          ref.bottom_provenance), "strict_inference")


def test_unknown_chunks_lift_semantic_targets_names_y(dask_backend: Any) -> None:
    with pytest.raises(ValueError, match=r"y .*compute_chunk_sizes\(\)"):
        lift_semantic_targets(_unknown(np.ones(N)), ["finite"] * N)


@pytest.mark.parametrize("call", [
    lambda x, y: scm.div(x, y),
    lambda x, y: strict_inference(x, y),
    lambda x, y: losses.implicit_loss(x, y, x, y),
    lambda x, y: losses.margin_loss(y, 1e-3, x > 0),
], ids=["div", "strict_inference", "implicit_loss", "margin_loss[mask]"])
def test_unknown_against_known_size_is_refused(dask_backend: Any, call: Any) -> None:
    """An unknown size cannot be checked against a known size > 1 before computing."""
    known = da.from_array(np.ones(N), chunks=5)
    with pytest.raises(ValueError, match=r"unknown size.*compute_chunk_sizes\(\)"):
        call(_unknown(np.ones(N)), known)


@pytest.mark.parametrize("call", [
    lambda x, y: scm.div(x, y).value,
    lambda x, y: strict_inference(x, y).bottom_mask,
    lambda x, y: losses.implicit_loss(x, y, x, y),
    lambda x, y: losses.sign_consistency_loss(x, y, x, y),
], ids=["div", "strict_inference", "implicit_loss", "sign_consistency_loss"])
def test_unknown_sizes_that_differ_raise_at_compute(dask_mode: str, call: Any) -> None:
    """Unknown against unknown is checked block by block: a block of length 1 facing one
    of length 5 must not broadcast silently."""
    base = da.from_array(np.arange(10.0), chunks=5)
    x, y = base[base > 3], base[base < 7]  # blocks of 1 and 5 / 5 and 2
    assert math.isnan(x.shape[0]) and math.isnan(y.shape[0])
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        call(x, y).compute()


def test_broadcast_shape_unknown_sizes() -> None:
    assert broadcast_shape([("a", (NAN,)), ("b", (NAN,))]) == (None,)
    assert broadcast_shape([("a", (None, 1)), ("b", (1, 4))]) == (None, 4)
    assert broadcast_shape([("a", (NAN, 3)), ("b", (3,))]) == (None, 3)
    assert broadcast_shape([("a", (1,)), ("b", (NAN,))]) == (None,)
    for shapes in ([("a", (NAN,)), ("b", (4,))], [("a", (4,)), ("b", (None,))]):
        with pytest.raises(ValueError, match=r"unknown size") as ei:
            broadcast_shape(shapes)
        unk = "a" if shapes[0][1] != (4,) else "b"
        assert f"{unk}.compute_chunk_sizes()" in str(ei.value)
    with pytest.raises(ValueError, match="cannot be broadcast"):
        broadcast_shape([("a", (NAN, 2)), ("b", (NAN, 3))])
