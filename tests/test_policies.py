"""Gradient policies: enum, resolution/precedence (semantics §6.2), context manager, registry,
serialisation, and the array helper ``apply_policy`` on every backend."""

from __future__ import annotations

import asyncio
import threading
from types import MappingProxyType

import numpy as np
import pytest

from zpml_core.autodiff import policies as pol
from zpml_core.autodiff.policies import (
    GradientPolicy,
    GradientPolicyConfig,
    apply_policy,
    get_policy,
    gradient_policy,
    policy_registry_snapshot,
    register_policy,
    resolve_policy,
    restore_policy_registry,
)

C, P, R, T = (GradientPolicy.CLAMP, GradientPolicy.PROJECT, GradientPolicy.REJECT,
              GradientPolicy.PASSTHROUGH)


@pytest.fixture(autouse=True)
def _clean_registry():
    snap = policy_registry_snapshot()
    yield
    restore_policy_registry(snap)
    assert pol.backward_override() is None and pol.traced_override() is None


# ---------------------------------------------------------------------------------------
# enum


def test_enum_values_are_the_serialised_strings():
    assert [p.value for p in GradientPolicy] == ["clamp", "project", "reject", "pass"]
    assert GradientPolicy("pass") is T
    assert str(C) == "clamp"
    assert C == "clamp"  # str enum: compares equal to its value


def test_public_import_paths():
    from zpml_core.autodiff import GradientPolicy as G2
    from zpml_core.autodiff.policies import GradientPolicy as G1

    assert G1 is G2


# ---------------------------------------------------------------------------------------
# resolution and precedence


def test_default_registry_and_fallback():
    assert get_policy() is C
    assert get_policy("scm_rational") is P
    for layer in ("scm_norm", "scm_softmax", "coverage", "rejection_loss"):
        assert get_policy(layer) is C
    assert get_policy("unknown_layer") is C
    assert get_policy("  SCM_Rational ") is P  # strip().lower()


def test_context_beats_registry_and_nests():
    with gradient_policy(R) as active:
        assert active is R
        assert get_policy() is R
        assert get_policy("scm_rational") is R
        with gradient_policy(T):
            assert get_policy("scm_rational") is T
        assert get_policy("scm_rational") is R
    assert get_policy("scm_rational") is P


def test_context_restored_on_exception():
    with pytest.raises(RuntimeError), gradient_policy(R):
        raise RuntimeError("boom")
    assert get_policy() is C


def test_context_instance_is_reentrant():
    ctx = gradient_policy(P)
    with ctx:
        with gradient_policy(R), ctx:
            assert get_policy() is P
        assert get_policy() is P
    assert get_policy() is C


def test_explicit_argument_beats_context_at_call_sites():
    # call sites use ``explicit or get_policy(name)``: rejection_loss(policy=...) wins
    from zpml_core.losses import rejection_loss

    h = np.array([True, False, False, False])
    with gradient_policy(R):
        assert float(rejection_loss(h)) == 0.0
        assert float(rejection_loss(h, policy=C)) == pytest.approx(0.04, abs=1e-12)


def test_resolve_policy_reads_mirror_when_traced():
    assert resolve_policy("scm_rational", traced=True) is P
    with gradient_policy(R):
        assert resolve_policy("scm_rational", traced=True) is R
        assert resolve_policy("scm_rational", traced=False) is R
    assert resolve_policy(None, traced=True) is C


def test_context_inherited_by_asyncio_tasks_created_inside():
    async def child() -> GradientPolicy:
        await asyncio.sleep(0)
        return get_policy()

    async def main() -> tuple[GradientPolicy, GradientPolicy]:
        with gradient_policy(R):
            task = asyncio.ensure_future(child())
        outside = asyncio.ensure_future(child())
        return await task, await outside

    assert asyncio.run(main()) == (R, C)


def test_context_not_inherited_by_new_threads():
    seen: dict[str, object] = {}

    def worker() -> None:
        seen["policy"] = get_policy()
        seen["mirror"] = pol.traced_override()

    with gradient_policy(R):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert pol.traced_override() is R
    assert seen == {"policy": C, "mirror": None}


@pytest.mark.parametrize("bad", ["clamp", None, 1, "PROJECT"])
def test_gradient_policy_rejects_non_enum(bad):
    with pytest.raises(TypeError, match="policy must be a GradientPolicy"):
        gradient_policy(bad)


def test_get_policy_layer_type():
    with pytest.raises(TypeError, match="layer must be a string"):
        get_policy(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# registry


def test_register_policy_normalises_and_overrides():
    register_policy("  My_Layer ", R)
    assert get_policy("my_layer") is R
    assert get_policy("MY_LAYER") is R
    register_policy("scm_rational", T)
    assert get_policy("scm_rational") is T


@pytest.mark.parametrize(
    ("layer", "policy", "exc", "match"),
    [
        (3, C, TypeError, "layer must be a string"),
        (None, C, TypeError, "layer must be a string"),
        ("", C, ValueError, "non-empty"),
        ("   ", C, ValueError, "non-empty"),
        ("x", "clamp", TypeError, "policy must be a GradientPolicy"),
        ("x", None, TypeError, "policy must be a GradientPolicy"),
    ],
)
def test_register_policy_errors(layer, policy, exc, match):
    before = dict(policy_registry_snapshot())
    with pytest.raises(exc, match=match):
        register_policy(layer, policy)
    assert dict(policy_registry_snapshot()) == before


def test_snapshot_is_read_only_copy_and_restore_is_atomic():
    snap = policy_registry_snapshot()
    assert isinstance(snap, MappingProxyType)
    with pytest.raises(TypeError):
        snap["x"] = R  # type: ignore[index]
    register_policy("extra", R)
    assert "extra" not in snap
    # invalid snapshot: nothing changes
    with pytest.raises(TypeError, match=r"snapshot\['b'\]"):
        restore_policy_registry({"a": R, "b": "clamp"})  # type: ignore[dict-item]
    assert get_policy("extra") is R and get_policy("a") is C
    with pytest.raises(ValueError, match="non-empty"):
        restore_policy_registry({" ": R})
    with pytest.raises(TypeError, match="mapping"):
        restore_policy_registry([("a", R)])  # type: ignore[arg-type]
    restore_policy_registry(snap)
    assert dict(policy_registry_snapshot()) == dict(snap)
    restore_policy_registry({"Only ": T})
    assert dict(policy_registry_snapshot()) == {"only": T}
    assert get_policy("scm_rational") is C  # replaced, not merged


# ---------------------------------------------------------------------------------------
# GradientPolicyConfig


def test_config_round_trip():
    assert GradientPolicyConfig().to_dict() == {"policy": "clamp"}
    for p in GradientPolicy:
        cfg = GradientPolicyConfig(p)
        assert GradientPolicyConfig.from_dict(cfg.to_dict()) == cfg
    assert GradientPolicyConfig.from_dict({"policy": "pass"}).policy is T
    assert GradientPolicyConfig.from_dict({}).policy is C


@pytest.mark.parametrize(
    ("data", "exc", "match"),
    [
        ([("policy", "clamp")], TypeError, "mapping"),
        ("clamp", TypeError, "mapping"),
        ({"policy": 1}, TypeError, "must be a string"),
        ({"policy": None}, TypeError, "must be a string"),
        ({"policy": "passthrough"}, ValueError, "must be one of"),
        ({"policy": "CLAMP"}, ValueError, "must be one of"),
    ],
)
def test_config_from_dict_errors(data, exc, match):
    with pytest.raises(exc, match=match):
        GradientPolicyConfig.from_dict(data)


def test_config_validates_policy():
    with pytest.raises(TypeError):
        GradientPolicyConfig("clamp")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# apply_policy (array helper) on every backend


G = [3.0, -0.5, np.nan, -np.inf, 2.0, 0.25]
B = [False, False, False, False, True, True]


def _expected(policy: GradientPolicy) -> np.ndarray:
    g, b = np.array(G), np.array(B)
    if policy is T:
        return g
    if policy is R:
        return np.zeros_like(g)
    if policy is P:
        return np.where(b, 0.0, g)
    return np.where(b, 0.0, np.clip(g, -1.0, 1.0))  # np.clip keeps NaN


@pytest.mark.parametrize("policy", list(GradientPolicy))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_apply_policy_arrays(arr, policy, dtype):
    g = arr(G, dtype)
    b = arr(B, "bool")
    out = apply_policy(g, b, policy)
    assert out.dtype == g.dtype
    np.testing.assert_array_equal(arr.np(out), _expected(policy).astype(dtype))


def test_apply_policy_nan_stays_nan_under_clamp(arr):
    out = arr.np(apply_policy(arr([np.nan, 5.0]), arr([False, False], "bool"), C))
    assert np.isnan(out[0]) and out[1] == 1.0  # decision #9 (scalar reference gave 1.0)


def test_apply_policy_default_and_context(arr):
    g, b = arr([5.0, 5.0]), arr([False, True], "bool")
    np.testing.assert_array_equal(arr.np(apply_policy(g, b)), [1.0, 0.0])
    with gradient_policy(P):
        np.testing.assert_array_equal(arr.np(apply_policy(g, b)), [5.0, 0.0])


def test_apply_policy_complex_clamp_unchanged_off_bottom(arr):
    g = arr([3 + 4j, 0.5 - 2j], "complex128")
    out = arr.np(apply_policy(g, arr([False, True], "bool"), C))
    np.testing.assert_array_equal(out, [3 + 4j, 0])


def test_apply_policy_broadcast_and_int_mask(arr):
    g = arr([[2.0, -2.0], [0.5, 9.0]])
    out = arr.np(apply_policy(g, arr([1, 0], "int64"), C))
    np.testing.assert_array_equal(out, [[0.0, -1.0], [0.0, 1.0]])


def test_apply_policy_errors(arr):
    g = arr([1.0])
    with pytest.raises(TypeError, match="policy must be a GradientPolicy"):
        apply_policy(g, arr([True], "bool"), "clamp")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is_bottom"):
        apply_policy(g, arr([0.5]))
    with pytest.raises(ValueError, match="is_bottom"):
        apply_policy(arr([1.0, 2.0]), arr([True, False, True], "bool"))
