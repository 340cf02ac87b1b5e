"""zeroproofml's backend-suffixed names (``scm_inv_numpy``, ``lift_targets_jax``, ...):
thin deprecated aliases of the one API — same result bit for bit on their backend, one
``DeprecationWarning`` naming the replacement, zeroproofml's positional masks accepted,
arrays of another backend refused."""

from __future__ import annotations

import importlib
import re
from typing import Any

import numpy as np
import pytest
from conftest import assert_same_bits

import zpml_core
from zpml_core import scm
from zpml_core._compat_names import ALIASES
from zpml_core.inference import InferenceConfig
from zpml_core.losses import implicit_loss

BINARY = ("add", "sub", "mul", "div")
UNARY = ("inv", "neg", "log", "exp", "sqrt", "sin", "cos", "tan")
SUFFIXED = ("numpy", "torch", "jax")

# where zeroproofml 0.6.1 exposes each name (its public __all__ lists)
WHERE = {
    **{f"scm_{op}_{b}": "zpml_core.scm" for op in (*BINARY, *UNARY, "pow") for b in SUFFIXED},
    **{f"lift_targets_{b}": "zpml_core.training" for b in SUFFIXED},
    "strict_inference_numpy": "zpml_core.inference",
    "strict_inference_jax": "zpml_core.inference",
    "implicit_loss_jax": "zpml_core.losses",
}

X = [2.0, 0.0, -2.0, 1e-320, np.inf, np.nan, 3.5, -0.0, 0.25]
Y = [0.5, 2.0, 0.0, 1.0, 1.0, 2.0, -0.5, 4.0, 1e-300]
MX = [False, False, True, False, False, False, False, True, False]
MY = [False, True, False, False, False, False, True, False, False]


def test_every_reference_name_is_exposed_where_zeroproofml_has_it() -> None:
    assert set(ALIASES) == set(WHERE)
    for name, module in WHERE.items():
        assert callable(getattr(importlib.import_module(module), name)), (module, name)


def _call(alias: str, *args: Any, **kwargs: Any) -> Any:
    fn = getattr(importlib.import_module(WHERE[alias]), alias)
    with pytest.warns(DeprecationWarning, match=re.escape(ALIASES[alias])):
        return fn(*args, **kwargs)


def _same(arr: Any, got: Any, want: Any) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert type(g) is type(w)
        assert_same_bits(arr.np(g), arr.np(w))


def _suffix(backend_name: str) -> str:
    if backend_name not in SUFFIXED:
        pytest.skip(f"zeroproofml has no {backend_name}-suffixed names")
    return backend_name


def test_binary_aliases(backend_name: str, arr: Any) -> None:
    b = _suffix(backend_name)
    x, y = arr(X), arr(Y)
    mx, my = arr(MX, dtype="bool"), arr(MY, dtype="bool")
    for op in BINARY:
        alias, one = f"scm_{op}_{b}", getattr(scm, op)
        _same(arr, _call(alias, x, y), one(x, y))
        want = one(x, y, mask_x=mx, mask_y=my)
        _same(arr, _call(alias, x, y, mask_x=mx, mask_y=my), want)
        _same(arr, _call(alias, x, y, mx, my), want)  # zeroproofml's positional masks
        _same(arr, _call(alias, x, mx, y, my), want)  # its interleaved legacy form
        _same(arr, _call(alias, x, y, mx), one(x, y, mask_x=mx))
        _same(arr, _call(alias, x, 2.0), one(x, 2.0))  # Python scalar operand


def test_unary_and_pow_aliases(backend_name: str, arr: Any) -> None:
    b = _suffix(backend_name)
    x, m = arr(X), arr(MX, dtype="bool")
    for op in UNARY:
        alias, one = f"scm_{op}_{b}", getattr(scm, op)
        _same(arr, _call(alias, x), one(x))
        _same(arr, _call(alias, x, m), one(x, mask=m))  # scm_inv_numpy(x, mask)
        _same(arr, _call(alias, x, mask=m), one(x, mask=m))
    e = arr(Y)
    _same(arr, _call(f"scm_pow_{b}", x, 2.0), scm.pow(x, 2.0))
    _same(arr, _call(f"scm_pow_{b}", x, e, m), scm.pow(x, e, mask=m))


def test_inv_alias_follows_the_rule(backend_name: str, arr: Any) -> None:
    """Independent of the one API: 1/x, bottom (value +0) where masked or x == 0."""
    b = _suffix(backend_name)
    value, bottom = _call(f"scm_inv_{b}", arr([2.0, 0.0, 4.0, -0.5]),
                          arr([False, False, True, False], dtype="bool"))
    assert_same_bits(arr.np(value), np.array([0.5, 0.0, 0.0, -2.0]))
    assert arr.np(bottom).tolist() == [False, True, True, False]


def test_lift_strict_and_implicit_aliases(backend_name: str, arr: Any) -> None:
    b = _suffix(backend_name)
    t = arr([1.5, np.inf, -np.inf, np.nan, -0.0])
    _same(arr, _call(f"lift_targets_{b}", t), zpml_core.lift_targets(t))
    P, Q = arr([1.0, 2.0, 3.0, np.inf]), arr([1.0, 1e-4, 1e-9, 1.0])
    cfg = InferenceConfig(tau_infer=1e-6, tau_train=1e-3)
    if b != "torch":  # zeroproofml has no strict_inference_torch
        got = _call(f"strict_inference_{b}", P, Q, config=cfg)
        want = zpml_core.strict_inference(P, Q, config=cfg)
        _same(arr, got, want)
        _same(arr, (got.fault_mask, got.semantic_bottom_mask),
              (want.fault_mask, want.semantic_bottom_mask))
    if b == "jax":
        Yn, Yd = arr([1.0, 1.0, 2.0, 1.0]), arr([1.0, 0.0, 1.0, 1.0])
        P2 = arr([1.0, 2.0, 3.0, 4.0])
        got = _call("implicit_loss_jax", P2, Q, Yn, Yd, 1e-6, detach_scale=True)
        assert_same_bits(arr.np(got), arr.np(implicit_loss(P2, Q, Yn, Yd, 1e-6, detach_scale=True)))


def test_aliases_refuse_arrays_of_another_backend(backend_name: str, arr: Any) -> None:
    x = arr([1.0, 2.0])
    for b in SUFFIXED:
        if b == backend_name:
            continue
        for alias in (f"scm_inv_{b}", f"scm_add_{b}", f"lift_targets_{b}"):
            with pytest.raises(TypeError, match=rf"{alias}: (x|targets) is a .* takes {b} arrays"):
                _call(alias, *((x, x) if "add" in alias else (x,)))
    if backend_name != "jax":
        with pytest.raises(TypeError, match=r"implicit_loss_jax: P is a .* takes jax arrays"):
            _call("implicit_loss_jax", x, x, x, x)


def test_mask_call_errors(arr: Any, backend_name: str) -> None:
    b = _suffix(backend_name)
    x, m = arr(X), arr(MX, dtype="bool")
    alias = f"scm_add_{b}"
    with pytest.raises(TypeError, match="both positionally and by keyword"):
        _call(alias, x, x, m, mask_x=m)
    with pytest.raises(TypeError, match="at most 4 positional"):
        _call(alias, x, x, m, m, m)
    with pytest.raises(TypeError):  # too many positional arguments for a unary op
        getattr(scm, f"scm_inv_{b}")(x, m, m)


def test_every_zeroproofml_name_is_shipped_or_listed_in_deviations() -> None:
    """zeroproofml's public names (as its own interpreter listed them): each one exists
    under ``zpml_core.<module>`` or is named (in backticks) in DEVIATIONS.md."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    ref = json.loads((root / "tests/data/zeroproofml-0.6.1-public-names.json").read_text())
    deviations = (root / "DEVIATIONS.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`(?:[\w.]+\.)?(\w+)`", deviations))
    unlisted = []
    for module in ("scm", "autodiff", "layers", "losses", "training", "inference", "metrics",
                   "utils"):
        ours = importlib.import_module(f"zpml_core.{module}")
        unlisted += [f"{module}.{n}" for n in ref[module] if not hasattr(ours, n) and n not in listed]
    unlisted += [m for m in ref["modules"] if m not in listed]
    assert not unlisted, f"neither shipped nor named in DEVIATIONS.md: {unlisted}"


def test_aliases_under_jit() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x, m, y = jnp.array([0.0, 2.0, 4.0]), jnp.array([False, True, False]), jnp.array([1.0, 1.0, 0.5])
    with pytest.warns(DeprecationWarning):
        got = jax.jit(lambda a, b, c: scm.scm_add_jax(a, b, c))(x, m, y)  # interleaved form
    want = scm.add(x, y, mask_x=m)
    assert np.array_equal(np.asarray(got.value), np.asarray(want.value))
    assert np.asarray(got.bottom).tolist() == [False, True, False]
