"""The dask backend (out-of-core strict inference and losses): chunked, lazily evaluated,
same masks as numpy, no warnings at compute time for the fused kernels."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
import dask  # noqa: E402
from dask.callbacks import Callback  # noqa: E402
from zpml_backends.dask_adapter import DaskBackend  # noqa: E402
from zpml_conformance import runner  # noqa: E402

import zpml_core  # noqa: E402
from zpml_core import losses, projective, scm, strict_inference  # noqa: E402
from zpml_core.inference import InferenceConfig  # noqa: E402


@pytest.fixture(scope="module")
def dask_backend() -> DaskBackend:
    known = zpml_core.registered_backends()
    if "dask" not in known:  # entry point not installed yet: register for this run
        zpml_core.register_backend(DaskBackend())
    b = zpml_core.get_backend_by_name("dask")
    assert isinstance(b, DaskBackend)
    return b


class _Counter(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.computes = 0

    def _start(self, dsk: Any) -> None:
        self.computes += 1


@contextmanager
def no_compute() -> Iterator[None]:
    c = _Counter()
    with c:
        yield
    assert c.computes == 0, "the call computed a dask graph (it must stay lazy)"


def _data(seed: int = 0, n: int = 1000, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=n) * 10.0 ** rng.uniform(-8, 0, size=n)
    q[::17] = 0.0
    q[5::23] = np.inf
    q[7::29] = 1e-320
    p = rng.normal(size=(n, k))
    p[3::31, 1] = np.nan
    p[11::37, 0] = 1e308
    return p, q


def test_strict_inference_is_chunked_lazy_and_identical(dask_backend: DaskBackend) -> None:
    p, q = _data()
    P = da.from_array(p, chunks=(128, 3))
    Q = da.from_array(q, chunks=128)
    cfg = InferenceConfig(tau_infer=1e-6, tau_train=1e-4)
    with no_compute():
        res = strict_inference(P, Q, config=cfg)
        prov = res.bottom_provenance
    assert isinstance(res.decoded, da.Array)
    assert res.decoded.numblocks == (8, 1) and res.bottom_mask.numblocks == (8,)
    ref = strict_inference(p, q, config=cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning at compute time
        got = dask.compute(*res, res.fault_mask, res.semantic_bottom_mask, prov)
    exp = (*ref, ref.fault_mask, ref.semantic_bottom_mask, ref.bottom_provenance)
    for g, e in zip(got, exp, strict=True):
        if e.dtype == bool or e.dtype.kind == "i":
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_array_equal(np.isnan(g), np.isnan(e))
            np.testing.assert_allclose(g, e, rtol=1e-15, atol=0)


def test_scm_ops_are_lazy_quiet_and_identical(dask_backend: DaskBackend) -> None:
    from zpml_conformance.cases import edge_values

    e = edge_values("float64")
    x = da.from_array(e[:, None], chunks=(10, 1))
    y = da.from_array(e[None, :], chunks=(1, 7))
    for op in (scm.div, scm.mul, scm.add):
        with no_compute():
            r = op(x, y)
        assert r.value.numblocks == (6, 8)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            v, b = dask.compute(*r)
        ev, eb = op(e[:, None], e[None, :])
        np.testing.assert_array_equal(b, eb)
        np.testing.assert_array_equal(v, ev)
    with no_compute():
        r = scm.pow(da.from_array(e, chunks=9), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v, b = dask.compute(*r)
    np.testing.assert_array_equal(b, scm.pow(e, 0.5).bottom)


def test_losses_on_chunks_match_numpy(dask_backend: DaskBackend) -> None:
    rng = np.random.default_rng(1)
    n = 999
    P, Q = rng.normal(size=n), rng.normal(size=n) * 1e-3
    y = rng.normal(size=n)
    y[::10] = np.inf
    Yn, Yd = projective.lift_targets(y)
    ch = {k: da.from_array(v, chunks=100) for k, v in
          {"P": P, "Q": Q, "Y_n": Yn, "Y_d": Yd}.items()}
    mask = da.from_array(np.isfinite(y), chunks=100)
    with no_compute():
        fit = losses.implicit_loss(ch["P"], ch["Q"], ch["Y_n"], ch["Y_d"])
        margin = losses.margin_loss(ch["Q"], 1e-3, mask, reduction="conditional")
        total, _ = losses.SCMTrainingLoss()(fit, ch["P"], ch["Q"], ch["Y_n"], ch["Y_d"],
                                                is_bottom=da.abs(ch["Q"]) < 1e-4)
    assert ch["P"].numblocks == (10,)
    ref_fit = losses.implicit_loss(P, Q, Yn, Yd)
    ref_total, _ = losses.SCMTrainingLoss()(ref_fit, P, Q, Yn, Yd, is_bottom=np.abs(Q) < 1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got_fit = fit.compute()
    assert type(got_fit) is np.ndarray or type(got_fit).__module__ == "numpy"
    np.testing.assert_allclose(float(got_fit), float(ref_fit), rtol=1e-12)
    np.testing.assert_allclose(
        float(margin.compute()),
        float(losses.margin_loss(Q, 1e-3, np.isfinite(y), reduction="conditional")),
        rtol=1e-12)
    np.testing.assert_allclose(float(total.compute()), float(ref_total), rtol=1e-12)


def test_semantic_targets_validation_does_not_compute(dask_backend: DaskBackend) -> None:
    y = da.from_array(np.asarray([1.0, np.inf, 3.0, np.nan]), chunks=2)
    with no_compute():
        st = projective.lift_semantic_targets(y, ["finite", "censored_above", "finite", "fault"])
    np.testing.assert_array_equal(st.Y_d.compute(), [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(st.Y_n.compute(), [1.0, 1.0, 3.0, 1.0])


def test_conformance_subset_fused_and_unfused(dask_backend: DaskBackend) -> None:
    only = ["scm.div/*", "scm.pow/f64/edge-bcast", "inference.*/P-more-dims*",
            "inference.*/edge-bcast*", "inference.*/validity-*", "projective.decode/f64/*",
            "losses.margin_loss/f64/*", "losses.SCMTrainingLoss/f32/default-*"]
    rep = runner.run(dask_backend, only=only, xfails=None)
    assert not rep.failed, "\n".join(r.message for r in rep.failed)

    class Unfused(DaskBackend):
        name = "dask-unfused"

    from zpml_core._registry import unregister_backend

    unfused = Unfused(fuse=False)
    zpml_core.register_backend(unfused, replace=True)  # serve dask arrays op by op
    try:
        assert zpml_core.get_backend(unfused.namespace()) is unfused
        rep = runner.run(unfused, only=only, xfails=None)
    finally:
        unregister_backend("dask-unfused")
        zpml_core.register_backend(dask_backend, replace=True)
    assert not rep.failed, "\n".join(r.message for r in rep.failed)


def test_asarray_makes_several_chunks(dask_backend: DaskBackend) -> None:
    x = dask_backend.asarray(np.zeros((7, 10)), dtype=np.float64)
    assert x.numblocks == (3, 3)
    assert dask_backend.to_numpy(x).shape == (7, 10)


def test_losses_on_non_finite_data_compute_quietly(dask_backend: DaskBackend) -> None:
    from zpml_conformance.cases import edge_values

    e = edge_values("float64")
    rng = np.random.default_rng(3)
    P, Q, Yn, Yd = (da.from_array(rng.permutation(e), chunks=10) for _ in range(4))
    with no_compute():
        out = [losses.implicit_loss(P, Q, Yn, Yd, gamma=0.0),
               losses.sign_consistency_loss(P, Q, Yn, Yd),
               losses.soft_coverage_loss(Q, 1e-4, 1e-4, 0.9),
               losses.margin_loss(Q)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = dask.compute(*out)
    assert all(type(g) is np.ndarray or type(g).__module__ == "numpy" for g in got)
