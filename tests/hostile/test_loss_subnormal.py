"""Class "subnormal operands in the losses": they count as (signed) zeros on every backend.

Rule (``zpml_core.losses._safe.daz``): an operand of ``implicit_loss`` /
``sign_consistency_loss`` / ``SCMTrainingLoss`` whose magnitude (real or imaginary part)
is below the smallest normal of the computation dtype counts as a signed zero — JAX on
CPU flushes such values in hardware, numpy and torch must give the same value. So on
every backend the loss of operands with subnormal elements equals, bit for bit, the loss
of the same operands with those elements replaced by zeros (the replacement is done here,
in numpy, from the rule). The operands mix subnormals with zeros, tiny normal values,
moderate and huge ones in every position of the tuples — the regimes where a subnormal
survives the power-of-two scaling (a tuple of a subnormal and a zero, ``gamma = 0``)
included — and ``gamma`` covers 0, the default and a gamma whose square root is close
to the smallest normal. ``sign_consistency_loss`` flushes only when ``sqrt(gamma)`` is
below ``tiny·2^(3p)``; above that, the flushed and unflushed values are proven equal,
which this file checks too.
"""

from __future__ import annotations

import numpy as np
import pytest

from zpml_core.losses import SCMTrainingLoss, implicit_loss, sign_consistency_loss

N = 256
NAMES = ("float32", "float64", "complex64", "complex128")
_REAL = {"float32": np.float32, "float64": np.float64, "complex64": np.float32,
         "complex128": np.float64}


def _part(rng: np.random.Generator, real: type, n: int) -> np.ndarray:
    """Values of one real part: subnormal, zero, tiny normal, moderate or huge (by kind),
    random signs; float64 values exactly representable in ``real``."""
    fi = np.finfo(real)
    tiny, sub, big = float(fi.smallest_normal), float(fi.smallest_subnormal), float(fi.max)
    kind = rng.integers(0, 5, n)
    lo = np.choose(kind, [np.log(sub), 0.0, np.log(tiny), np.log(1e-3), np.log(big) / 2])
    hi = np.choose(kind, [np.log(tiny), 0.0, np.log(tiny) / 2, np.log(1e3), np.log(big)])
    mag = np.where(kind == 1, 0.0, np.exp(rng.uniform(lo, hi)))
    x = (mag * rng.choice([-1.0, 1.0], n)).astype(real)
    return x.astype(np.float64)


def _operand(rng: np.random.Generator, name: str) -> np.ndarray:
    real = _REAL[name]
    if name.startswith("complex"):
        return _part(rng, real, N) + 1j * _part(rng, real, N)
    return _part(rng, real, N)


def _flush(x: np.ndarray, name: str) -> np.ndarray:
    """The rule, applied here: parts below the smallest normal become zeros."""
    tiny = float(np.finfo(_REAL[name]).smallest_normal)

    def part(v: np.ndarray) -> np.ndarray:
        return np.where(np.abs(v) < tiny, 0.0 * v, v)

    if np.iscomplexobj(x):
        return part(x.real) + 1j * part(x.imag)
    return part(x)


def _to(backend, xp, x: np.ndarray, name: str):
    dt = getattr(xp, name, None)
    if dt is None:
        pytest.skip(f"the library has no {name}")
    return xp.astype(backend.asarray(x), dt)


def _bits(backend, out) -> np.ndarray:
    return np.asarray(backend.to_numpy(out)).reshape(-1)


def _pairs(backend, xp, name: str, seed: int):
    rng = np.random.default_rng([seed, 23])
    ops = [_operand(rng, name) for _ in range(4)]
    # some lifted targets (Y_d ∈ {0, 1}) and some subnormal/zero Y_d (singular mask)
    ops[3] = np.where(rng.random(N) < 0.2, (rng.random(N) < 0.5).astype(float), ops[3])
    raw = [_to(backend, xp, v, name) for v in ops]
    flushed = [_to(backend, xp, _flush(v, name), name) for v in ops]
    return raw, flushed, [_flush(v, name) for v in ops]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("gamma", [1e-9, 0.0, 1e-300])
def test_implicit_loss_of_subnormals_is_that_of_zeros(backend, xp, name, gamma):
    for seed in range(3):
        raw, flushed, _ = _pairs(backend, xp, name, seed)
        got = _bits(backend, implicit_loss(*raw, gamma=gamma))
        want = _bits(backend, implicit_loss(*flushed, gamma=gamma))
        assert np.isfinite(got).all(), (name, gamma, seed, got)
        np.testing.assert_array_equal(got, want, err_msg=f"{name} gamma={gamma} seed={seed}")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("gamma", [1e-9, 0.0, 1e-300, 1e-60])
def test_sign_consistency_loss_of_subnormals_is_that_of_zeros(backend, xp, name, gamma):
    for seed in range(3):
        raw, flushed, _ = _pairs(backend, xp, name, seed)
        got = _bits(backend, sign_consistency_loss(*raw, gamma=gamma, epsilon_sing=1e-3))
        want = _bits(backend, sign_consistency_loss(*flushed, gamma=gamma, epsilon_sing=1e-3))
        assert np.isfinite(got).all(), (name, gamma, seed, got)
        np.testing.assert_array_equal(got, want, err_msg=f"{name} gamma={gamma} seed={seed}")


@pytest.mark.parametrize("name", NAMES)
def test_training_loss_of_subnormals_is_that_of_zeros(backend, xp, name):
    loss = SCMTrainingLoss()
    for seed in range(2):
        raw, flushed, host = _pairs(backend, xp, name, seed)
        # masks are inputs, not operands: both calls get those of the flushed operands
        is_bottom = backend.asarray(np.abs(host[1]) < 1e-4)
        mask_finite = backend.asarray(host[3] != 0)
        fit = implicit_loss(*flushed)
        outs = [loss(fit, *ops, is_bottom=is_bottom, mask_finite=mask_finite)
                for ops in (raw, flushed)]
        for key in ("total", "margin", "sign"):
            got, want = (_bits(backend, o[1][key]) for o in outs)
            assert np.isfinite(got).all(), (name, key, seed, got)
            np.testing.assert_array_equal(got, want, err_msg=f"{key} {name} seed={seed}")
