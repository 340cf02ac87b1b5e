"""Deployment helpers of ``zpml_core.inference`` on every backend: the result's named-tuple
face, reject/sentinel/route fallbacks, rates and the running monitor, the 3-way censored
decode, and ``SCMInferenceWrapper`` (generic callables, the torch ``nn.Module`` front under
``torch.compile(fullgraph=True)`` and ``torch.export``, ``jax.jit``).

Expected values are derived in numpy from the rules (bottom = non-finite P or Q or
``|Q| < tau``; gap = ``tau <= |Q| < tau_train`` and not bottom; ...), never read back
from the code under test.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from zpml_core.inference import (
    BOTTOM_PROVENANCE_FAULT,
    BOTTOM_PROVENANCE_FINITE,
    BOTTOM_PROVENANCE_MIXED,
    BOTTOM_PROVENANCE_SEMANTIC,
    STRICT_INFERENCE_FIELDS,
    InferenceConfig,
    InferenceResult,
    SCMInferenceWrapper,
    StrictInferenceMonitor,
    decode_strict_censored_3way,
    reject_on_bottom,
    reject_on_gap,
    route_to_analytic_solver,
    safe_sentinel,
    strict_inference,
    strict_inference_rates,
)

TAU, TAU_TRAIN = 1e-6, 1e-4
NAN, INF = math.nan, math.inf
P = np.array([1.0, -2.0, 3.0, NAN, 5.0, -6.0, 0.0, 2.0, -1.0, 4.0])
Q = np.array([1.0, 0.0, 1e-9, 1.0, INF, 1e-7, 0.0, 2e-5, -0.5, 5e-5])


def rule_masks(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bottom, gap, fault, semantic) from the rules, in numpy."""
    fault = ~np.isfinite(p) | ~np.isfinite(q)
    semantic = np.abs(q) < TAU
    bottom = fault | semantic
    gap = (np.abs(q) >= TAU) & (np.abs(q) < TAU_TRAIN) & ~bottom
    return bottom, gap, fault, semantic


B, G, F, S = rule_masks(P, Q)
with np.errstate(all="ignore"):
    DEC = np.where(B, NAN, P / np.where(B, 1.0, Q))
CFG = InferenceConfig(tau_infer=TAU, tau_train=TAU_TRAIN)


def same(arr: Any, got: Any, want: np.ndarray) -> None:
    np.testing.assert_array_equal(arr.np(got), want)


# -- InferenceResult -------------------------------------------------------------------------


def test_result_named_tuple_face_and_codes(arr: Any) -> None:
    assert STRICT_INFERENCE_FIELDS == ("decoded", "bottom_mask", "gap_mask")
    assert (BOTTOM_PROVENANCE_FINITE, BOTTOM_PROVENANCE_FAULT, BOTTOM_PROVENANCE_SEMANTIC,
            BOTTOM_PROVENANCE_MIXED) == (0, 1, 2, 3)
    r = strict_inference(arr(P), arr(Q), config=CFG)
    assert r._fields == STRICT_INFERENCE_FIELDS
    d = r._asdict()
    assert list(d) == list(STRICT_INFERENCE_FIELDS)
    same(arr, d["bottom_mask"], B)
    same(arr, d["gap_mask"], G)
    same(arr, r.bottom_provenance, F.astype(int) + 2 * S.astype(int))
    # three fields only: split masks all False; from provenance codes: split back
    r3 = InferenceResult(r.decoded, r.bottom_mask, r.gap_mask)
    same(arr, r3.fault_mask, np.zeros_like(B))
    same(arr, r3.bottom_provenance, np.zeros(B.shape, int))
    rp = InferenceResult(r.decoded, r.bottom_mask, r.gap_mask, bottom_provenance=r.bottom_provenance)
    same(arr, rp.fault_mask, F & B)
    same(arr, rp.semantic_bottom_mask, S & B)


# -- fallbacks -------------------------------------------------------------------------------


def test_reject_and_sentinel(arr: Any) -> None:
    d, b, g = arr(DEC), arr(B, "bool"), arr(G, "bool")
    out, acc = reject_on_bottom(d, b)
    same(arr, out, np.where(B, NAN, DEC))
    same(arr, acc, ~B)
    out, acc = reject_on_gap(d, b, g)
    same(arr, out, np.where(B | G, NAN, DEC))
    same(arr, acc, ~(B | G))
    same(arr, safe_sentinel(d, b, sentinel=-7.0), np.where(B, -7.0, DEC))
    # masks on Q's shape apply to every trailing output of P
    d2 = np.stack([DEC, 2 * DEC], axis=1)
    out, _ = reject_on_gap(arr(d2), b, g)
    same(arr, out, np.where((B | G)[:, None], NAN, d2))
    same(arr, safe_sentinel(arr(d2), arr(B.astype(int), "int64"), sentinel=0.0),
         np.where(B[:, None], 0.0, d2))


def test_route_to_analytic_solver(arr: Any) -> None:
    d, b = arr(DEC), arr(B, "bool")
    x = arr(np.arange(10.0))
    seen: list[np.ndarray] = []

    def solver(rows: Any) -> Any:
        seen.append(arr.np(rows))
        return rows * 100.0

    events: list[dict[str, Any]] = []
    out = route_to_analytic_solver(d, b, inputs=x, solver_fn=solver, event_logger=events.append)
    np.testing.assert_array_equal(seen[0], np.flatnonzero(B).astype(float))  # routed rows only
    same(arr, out, np.where(B, np.arange(10.0) * 100.0, DEC))
    assert [(e["count"], e["provenance_tag"]) for e in events] == [(int(B.sum()), "none")]
    # with provenance, semantic bottoms stay (an answer), only faults route
    r = strict_inference(arr(P), arr(Q), config=CFG)
    events.clear()
    out = route_to_analytic_solver(r.decoded, r.bottom_mask, inputs=x, solver_fn=solver,
                                   bottom_provenance=r.bottom_provenance, event_logger=events.append)
    route = B & ~S
    same(arr, out, np.where(route, np.arange(10.0) * 100.0, DEC))
    assert [(e["count"], e["provenance_tag"]) for e in events] == [(int(route.sum()), "fault")]
    # dense: the solver answers every row; where() splices (traceable)
    out = route_to_analytic_solver(d, b, inputs=x, solver_fn=lambda rows: rows - 1.0, dense=True)
    same(arr, out, np.where(B, np.arange(10.0) - 1.0, DEC))
    # nothing to route: the solver is not called, decoded comes back
    n_calls = len(seen)
    out = route_to_analytic_solver(d, arr(np.zeros(10, bool), "bool"), inputs=x, solver_fn=solver)
    assert len(seen) == n_calls
    same(arr, out, DEC)
    with pytest.raises(ValueError, match="solver_fn returned shape"):
        route_to_analytic_solver(d, b, inputs=x, solver_fn=lambda rows: rows[:1])


# -- rates and the monitor -------------------------------------------------------------------


def test_rates_formulas(arr: Any) -> None:
    n = B.size
    rates = strict_inference_rates(arr(B, "bool"), arr(G, "bool"), fault_mask=arr(F, "bool"),
                                   semantic_bottom_mask=arr(S, "bool"),
                                   numerical_hazard_mask=arr(np.abs(Q) < TAU_TRAIN, "bool"))
    want = {"n": n, "bottom_rate": B.sum() / n, "gap_rate": G.sum() / n,
            "accept_rate": (~B).sum() / n, "fault_rate": (F & B).sum() / n,
            "semantic_bottom_rate": (S & B).sum() / n,
            "numerical_hazard_rate": ((np.abs(Q) < TAU_TRAIN) & ~B).sum() / n}
    assert set(rates) == set(want)
    for k, v in rates.items():
        assert getattr(v, "ndim", None) == 0, k          # 0-d arrays, no host transfer
        assert float(v) == pytest.approx(want[k], rel=1e-15), k
    # provenance codes instead of masks; a batch vector against (B, 2) masks
    b2 = np.stack([B, G], axis=1)
    code = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    rates = strict_inference_rates(arr(b2, "bool"), bottom_provenance=arr(code, "int64"))
    fb = b2 & np.isin(code, (1, 3))[:, None]
    assert float(rates["fault_rate"]) == pytest.approx(fb.sum() / b2.size, rel=1e-15)
    empty = strict_inference_rates(arr(np.zeros(0, bool), "bool"))
    assert float(empty["n"]) == 0 and math.isnan(float(empty["bottom_rate"]))


def test_monitor_pools_batches(arr: Any) -> None:
    events: list[dict[str, Any]] = []
    mon = StrictInferenceMonitor(bundle_id="b", event_logger=events.append,
                                 acceptance_rate_drift_threshold=0.2)
    cuts = [(0, 4), (4, 10), (10, 10)]
    for lo, hi in cuts:
        mon.update(arr(B[lo:hi], "bool"), arr(G[lo:hi], "bool"), fault_mask=arr(F[lo:hi], "bool"),
                   semantic_bottom_mask=arr(S[lo:hi], "bool"))
    r = mon.rates()
    assert r["n"] == 10 and r["bundle_id"] == "b"
    assert r["bottom_rate"] == B.sum() / 10 and r["accept_rate"] == (~B).sum() / 10
    assert r["fault_rate"] == (F & B).sum() / 10 and r["gap_rate"] == G.sum() / 10
    st = mon.export_state(include_histograms=True, include_batch_summaries=True)
    assert st["n_updates"] == 3 and st["n_bottom"] == B.sum() and st["n_accept"] == (~B).sum()
    assert st["histograms"]["batch_size"] == {"0": 1, "4": 1, "6": 1}
    sums = st["batch_summaries"]
    assert [s["bottom_count"] for s in sums] == [B[:4].sum(), B[4:].sum(), 0]
    tags = sums[1]["provenance_tag_counts"]
    assert tags["fault"] + tags["semantic"] + tags["mixed"] == B[4:].sum()
    acc = [(~B[:4]).mean(), (~B[4:]).mean()]
    drift = [e for e in events if e["event"] == "acceptance-rate-drift"]
    assert len(drift) == (abs(acc[1] - acc[0]) >= 0.2)
    assert {e["event"] for e in events} >= {"fault-bottom-trigger", "semantic-bottom-trigger"}
    assert math.isnan(StrictInferenceMonitor().rates()["bottom_rate"])


def test_monitor_counts_on_device(arr: Any) -> None:
    mon = StrictInferenceMonitor()
    mon.update(arr(B, "bool"))
    mon.update(arr(B, "bool"))
    tot = mon._totals["bottom"]
    assert type(tot) is type(arr(B, "bool")) or arr.xp.__name__.endswith("numpy")
    assert mon.n_bottom == 2 * B.sum() and mon.n == 20


# -- the 3-way censored decode ---------------------------------------------------------------


def test_censored_3way_rules(arr: Any) -> None:
    r = decode_strict_censored_3way(arr(P), arr(Q[:, None]), tau_infer=TAU)
    bottom = B
    sign = np.where(P >= 0, 2, 0)
    want = np.where(bottom, np.where(~F & np.isfinite(P), sign, 1), 1)
    same(arr, r.bottom_mask, bottom)
    same(arr, r.class_id, want)
    same(arr, r.decoded, np.where(B, NAN, DEC))
    # orientation side channel at every bottom; then the head at semantic bottoms only
    o = np.array([1.0, -1.0, 0.0, 2.0, -3.0, 0.0, 1.0, -1.0, 1.0, 0.0])
    logits = np.tile([[0.0, 1.0], [1.0, 0.0]], (5, 1))
    r = decode_strict_censored_3way(arr(P), arr(Q), tau_infer=TAU, orientation_signal=arr(o),
                                    direction_logits=arr(logits), semantic_bottom_mask=arr(S, "bool"))
    o_class = np.where(o > 0, 2, np.where(o < 0, 0, 1))
    head = np.where(logits.argmax(axis=1) == 1, 2, 0)
    want = np.where(bottom, np.where(S & bottom, head, o_class), 1)
    same(arr, r.class_id, want)
    # no provenance: the head decides every bottom
    r = decode_strict_censored_3way(arr(P), arr(Q), tau_infer=TAU, direction_logits=arr(logits))
    same(arr, r.class_id, np.where(bottom, head, 1))


# -- SCMInferenceWrapper (generic callables, every backend) ---------------------------------------


def test_wrapper_callable_and_validity(arr: Any) -> None:
    x, p = arr(Q), arr(P)

    def model(v: Any) -> tuple[Any, Any]:
        return p, v

    w = SCMInferenceWrapper(model, config=CFG, metadata={"run": "r1"})
    assert (w.tau_infer, w.tau_train, w.use_gap) == (TAU, TAU_TRAIN, True)
    assert w.metadata == {"run": "r1", "tau_infer": TAU, "tau_train": TAU_TRAIN}
    r = w(x)
    assert isinstance(r, InferenceResult)
    same(arr, r.bottom_mask, B)
    same(arr, r.gap_mask, G)
    same(arr, r.fault_mask, F)
    # (x, q_valid): bottom also where q_valid fails; the gap band is read on q_valid
    qv = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1e-9, 1.0, 3e-5, NAN])
    r = w((x, arr(qv)))
    bv = B | (np.abs(qv) < TAU) | ~np.isfinite(qv)
    same(arr, r.bottom_mask, bv)
    same(arr, r.gap_mask, (np.abs(qv) >= TAU) & (np.abs(qv) < TAU_TRAIN) & ~bv)
    # (apply_fn, params) pairs; training mode returns the raw tuple
    w2 = SCMInferenceWrapper((lambda prm, v: (v * prm, v), arr(2.0)), config=CFG)
    same(arr, w2(x).decoded, np.where(rule_masks(2 * Q, Q)[0], NAN, 2.0))
    raw = w2.train()(x)
    same(arr, raw[1], Q)


def test_wrapper_from_checkpoint_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    import zpml_core.training.checkpoint as ck

    meta = {"tau_infer": 3e-5, "tau_train_min": 1e-5, "tau_train_max": 2e-4, "config_hash": "h"}
    monkeypatch.setattr(ck, "read_checkpoint_metadata", lambda path: meta)
    w = SCMInferenceWrapper.from_checkpoint(lambda v: (v, v), "run.ckpt")
    assert (w.tau_infer, w.tau_train) == (3e-5, 2e-4)
    assert w.metadata["config_hash"] == "h" and w.metadata["checkpoint"] == "run.ckpt"
    meta.update(tau_infer=1e-3)  # calibrated above the training range: no gap band
    assert SCMInferenceWrapper.from_checkpoint(lambda v: (v, v), "c").use_gap is False
    for bad in (0.0, "1e-3", True, NAN):
        meta.update(tau_infer=bad)
        with pytest.raises(ck.CheckpointError, match="tau_infer"):
            SCMInferenceWrapper.from_checkpoint(lambda v: (v, v), "c")


def test_wrapper_from_a_real_checkpoint(tmp_path: Any) -> None:
    torch = pytest.importorskip("torch")
    from zpml_core.layers import SCMRationalLayer
    from zpml_core.losses import implicit_loss
    from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig

    layer = SCMRationalLayer(0, 1, dtype=torch.float64)
    x = torch.linspace(-1, 1, 8, dtype=torch.float64)
    trainer = SCMTrainer(model=layer, optimizer=torch.optim.SGD(layer.parameters(), lr=0.0),
                         loss_fn=lambda out, target: implicit_loss(*out, *target),
                         train_loader=ArrayLoader(x, x, batch_size=8),
                         config=TrainingConfig(max_epochs=1, tau_infer=3e-6, tau_train_min=1e-5,
                                               tau_train_max=2e-4))
    trainer.save_checkpoint(tmp_path / "run.pt")
    w = SCMInferenceWrapper.from_checkpoint(layer, tmp_path / "run.pt").eval()
    assert isinstance(w, torch.nn.Module) and (w.tau_infer, w.tau_train) == (3e-6, 2e-4)
    assert w.metadata["tau_train_min"] == 1e-5
    with torch.no_grad():  # P = 1, Q = x
        layer.numerator.copy_(torch.tensor([1.0]))
        layer.denominator.copy_(torch.tensor([0.0, 1.0]))
    q = np.array([-1.0, 0.0, 1e-6, 1e-4, 0.5])
    r = w(torch.tensor(q))
    b = np.abs(q) < 3e-6
    np.testing.assert_array_equal(r.bottom_mask.numpy(), b)
    np.testing.assert_array_equal(r.gap_mask.numpy(), (np.abs(q) >= 3e-6) & (np.abs(q) < 2e-4))
    np.testing.assert_allclose(r.decoded.detach().numpy(), np.where(b, np.nan, 1.0 / np.where(b, 1.0, q)))


def test_pickle_and_copy_round_trip() -> None:
    import copy
    import pickle

    r = strict_inference(P, Q, config=CFG)
    r2 = pickle.loads(pickle.dumps(r))
    assert type(r2) is InferenceResult and type(r2).__module__ == "zpml_core.inference"
    np.testing.assert_array_equal(r2.semantic_bottom_mask, S)
    w = copy.deepcopy(SCMInferenceWrapper((lambda prm, v: (prm * v, v), 2.0), config=CFG))
    with np.errstate(all="ignore"):  # the model itself: 2·Q and Q
        np.testing.assert_array_equal(w(Q).bottom_mask, rule_masks(2 * Q, Q)[0])
    mon = StrictInferenceMonitor()
    mon.update(B)
    assert pickle.loads(pickle.dumps(mon)).rates()["bottom_rate"] == B.mean()


# -- hostile input -------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.0, -1e-6, NAN, INF, "1e-6", True])
def test_bad_tau_rejected(arr: Any, tau: Any) -> None:
    err = TypeError if isinstance(tau, (str, bool)) else ValueError
    with pytest.raises(err, match="tau_infer"):
        decode_strict_censored_3way(arr(P), arr(Q), tau_infer=tau)
    with pytest.raises(err, match="tau_infer"):
        SCMInferenceWrapper(lambda v: (v, v), config=InferenceConfig(tau_infer=tau))


def test_tau_underflowing_the_dtype_rejected(arr: Any) -> None:
    with pytest.raises(ValueError, match="underflows"):
        decode_strict_censored_3way(arr(P, "float32"), arr(Q, "float32"), tau_infer=1e-50)


def test_hostile_shapes_dtypes_values(arr: Any) -> None:
    d, b = arr(DEC), arr(B, "bool")
    with pytest.raises(ValueError, match="bottom_mask"):
        reject_on_bottom(d, arr(B[:5], "bool"))
    with pytest.raises(ValueError, match="gap_mask"):
        strict_inference_rates(b, arr(np.zeros((10, 3), bool), "bool"))
    with pytest.raises(TypeError, match="decoded"):
        reject_on_bottom(arr(np.arange(10), "int64"), b)
    with pytest.raises(TypeError, match="bottom_mask"):
        reject_on_bottom(d, arr(B, "float64"))
    with pytest.raises(TypeError, match="sentinel"):
        safe_sentinel(d, b, sentinel="0")
    with pytest.raises(ValueError, match="sentinel"):
        safe_sentinel(arr(DEC, "float32"), b, sentinel=1e300)
    with pytest.raises(ValueError, match="orientation_signal"):
        decode_strict_censored_3way(arr(P), arr(Q), tau_infer=TAU, orientation_signal=arr(np.full(10, NAN)))
    with pytest.raises(ValueError, match="disagree"):
        decode_strict_censored_3way(arr(P), arr(Q), tau_infer=TAU, bottom_provenance=arr(np.zeros(10), "int64"),
                                    semantic_bottom_mask=arr(np.ones(10, bool), "bool"))
    with pytest.raises(ValueError, match="same shape"):
        decode_strict_censored_3way(arr(np.ones((2, 2))), arr(np.ones((2, 3))), tau_infer=TAU)
    with pytest.raises(TypeError, match="numerator must be a real array"):
        decode_strict_censored_3way(arr(P, "complex128"), arr(Q), tau_infer=TAU)
    with pytest.raises(ValueError, match="direction_logits"):
        decode_strict_censored_3way(arr(P), arr(Q), tau_infer=TAU, direction_logits=arr(np.ones((10, 3))))
    with pytest.raises(TypeError, match="bottom_provenance"):
        strict_inference_rates(b, bottom_provenance=arr(np.zeros(10)))
    with pytest.raises(TypeError, match="model"):
        SCMInferenceWrapper(42)


def test_monitor_refuses_a_second_library(arr: Any, backend_name: str) -> None:
    if backend_name == "numpy":
        pytest.skip("needs a second library")
    mon = StrictInferenceMonitor()
    mon.update(np.zeros(3, bool))
    with pytest.raises(TypeError, match="one array library"):
        mon.update(arr(np.zeros(3, bool), "bool"))


# -- tracing: torch.compile / torch.export / jax.jit ---------------------------------------------


def _torch_model() -> Any:
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(1, 2, dtype=torch.float64)
            with torch.no_grad():
                self.lin.weight.copy_(torch.tensor([[2.0], [1.0]]))
                self.lin.bias.copy_(torch.tensor([0.0, -1.0]))

        def forward(self, x: Any) -> tuple[Any, Any]:
            out = self.lin(x[:, None])
            return out[:, 0], out[:, 1]

    return Net()


XS = np.array([1.0, 2.0, 1.0 + 1e-7, 1.00005, 3.0, NAN])  # P = 2x, Q = x - 1


def _expected_wrapped() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p, q = 2 * XS, XS - 1.0
    b, g, _, _ = rule_masks(p, q)
    with np.errstate(all="ignore"):
        return np.where(b, NAN, p / np.where(b, 1.0, q)), b, g


def test_torch_front_compile_and_export() -> None:
    torch = pytest.importorskip("torch")
    net = _torch_model()
    w = SCMInferenceWrapper(net, config=CFG)
    assert isinstance(w, SCMInferenceWrapper) and isinstance(w, torch.nn.Module)
    assert set(w.state_dict()) == {"model.lin.weight", "model.lin.bias"}
    x = torch.tensor(XS)
    assert isinstance(w(x), tuple) and not isinstance(w(x), InferenceResult)  # training mode: raw
    w.eval()
    dec, b, g = _expected_wrapped()
    for fn in (w, torch.compile(w, fullgraph=True, dynamic=False), torch.export.export(w, (x,)).module()):
        r = fn(x)
        assert isinstance(r, InferenceResult)
        np.testing.assert_allclose(r.decoded.detach().numpy(), dec, rtol=1e-12)
        np.testing.assert_array_equal(r.bottom_mask.numpy(), b)
        np.testing.assert_array_equal(r.gap_mask.numpy(), g)
        np.testing.assert_array_equal(r.bottom_provenance.numpy(), np.isnan(XS) + 2 * (np.abs(XS - 1) < TAU))

    class Direct(torch.nn.Module):  # a module returning strict_inference's result exports too
        def forward(self, v: Any) -> Any:
            return strict_inference(2.0 * v, v - 1.0, config=CFG)

    r = torch.export.export(Direct(), (x,)).module()(x)
    assert isinstance(r, InferenceResult)
    np.testing.assert_array_equal(r.gap_mask.numpy(), g)


def test_jax_jit_wrapper_and_helpers() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def apply(params: Any, x: Any) -> tuple[Any, Any]:
        return params["a"] * x, x - params["b"]

    w = SCMInferenceWrapper((apply, {"a": jnp.asarray(2.0), "b": jnp.asarray(1.0)}), config=CFG)
    x = jnp.asarray(XS)
    r = jax.jit(w)(x)
    dec, b, g = _expected_wrapped()
    assert isinstance(r, InferenceResult)
    np.testing.assert_allclose(np.asarray(r.decoded), dec, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(r.bottom_mask), b)
    np.testing.assert_array_equal(np.asarray(r.gap_mask), g)
    rates = jax.jit(lambda bm, gm: strict_inference_rates(bm, gm))(r.bottom_mask, r.gap_mask)
    assert float(rates["bottom_rate"]) == b.mean() and float(rates["gap_rate"]) == g.mean()
    out = jax.jit(lambda p, q: decode_strict_censored_3way(p, q, tau_infer=TAU))(2 * x, x - 1)
    np.testing.assert_array_equal(np.asarray(out.bottom_mask), b)
    d2, acc = jax.jit(reject_on_gap)(r.decoded, r.bottom_mask, r.gap_mask)
    np.testing.assert_array_equal(np.asarray(acc), ~(b | g))
    np.testing.assert_array_equal(np.isnan(np.asarray(d2)), b | g)
    dense = jax.jit(lambda d, m, xx: route_to_analytic_solver(
        d, m, inputs=xx, solver_fn=jnp.ones_like, dense=True))(r.decoded, r.bottom_mask, x)
    np.testing.assert_allclose(np.asarray(dense), np.where(b, 1.0, dec), rtol=1e-12)
    # traced: a NaN orientation cannot raise, so decoded is poisoned instead
    o = jnp.asarray(np.full(XS.shape, NAN))
    pois = jax.jit(lambda p, q, oo: decode_strict_censored_3way(p, q, tau_infer=TAU, orientation_signal=oo))(
        2 * x, x - 1, o)
    assert np.isnan(np.asarray(pois.decoded)).all()


def test_dask_rates_and_reject() -> None:
    da = pytest.importorskip("dask.array")
    b = da.from_array(B, chunks=4)
    rates = strict_inference_rates(b, da.from_array(G, chunks=4))
    assert float(rates["bottom_rate"]) == B.mean() and float(rates["gap_rate"]) == G.mean()
    out, acc = reject_on_bottom(da.from_array(DEC, chunks=4), b)
    np.testing.assert_array_equal(np.asarray(acc.compute()), ~B)
    np.testing.assert_array_equal(np.asarray(out.compute()), np.where(B, NAN, DEC))
    mon = StrictInferenceMonitor()
    mon.update(b)
    assert mon.rates()["bottom_rate"] == B.mean()
    routed = route_to_analytic_solver(da.from_array(DEC, chunks=4), b, inputs=da.arange(10.0, chunks=4),
                                      solver_fn=lambda rows: rows * 100.0)
    np.testing.assert_array_equal(np.asarray(routed.compute()), np.where(B, np.arange(10.0) * 100.0, DEC))
