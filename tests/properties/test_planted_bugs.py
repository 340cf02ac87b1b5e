"""The property suite finds planted one-element bugs within the ``ci`` profile.

Each planted op is a copy of a real op with a single wrong rule. The same law functions
that pass for the real ops (tests/properties/test_props_scm.py) are run against the copy
with the ``ci`` settings (derandomized, 200 examples) and must fail, printing a
reproduction that can be pasted.
"""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, settings

from zpml_core import namespace, scm
from zpml_core.scm import SCMArray
from zpml_core.testing import register_profiles

from . import laws

register_profiles()


def _tiny(xp: Any, x: Any) -> float:
    return float(xp.finfo(x.dtype).smallest_normal)


def sqrt_sign_lost(x: Any, *, mask: Any = None) -> SCMArray:
    """Planted: ``sqrt(-0.0)`` returns ``+0.0`` (the sign of a zero result is dropped)."""
    r = scm.sqrt(x, mask=mask)
    xp = namespace(r.value)
    return SCMArray(xp.where(r.value == 0, xp.zeros_like(r.value), r.value), r.bottom)


def sqrt_subnormal_bottom(x: Any, *, mask: Any = None) -> SCMArray:
    """Planted: a negative *subnormal* input is ⊥ (IEEE ``x < 0``) instead of being a
    signed zero (DAZ, decision #1): the reference's numpy behaviour."""
    r = scm.sqrt(x, mask=mask)
    xp = namespace(r.value)
    wrong = (x < 0) & (x > -_tiny(xp, x))
    return SCMArray(xp.where(wrong, xp.zeros_like(r.value), r.value), r.bottom | wrong)


def div_without_tiny_y_rule(x: Any, y: Any, *, mask_x: Any = None,
                            mask_y: Any = None) -> SCMArray:
    """Planted: ``div`` is ⊥ only for ``|y| < tiny``; the tiny-y rule (``y·y`` below the
    smallest normal, semantics §1.2 note) is forgotten, so ``div(1, 2**-600)`` is defined."""
    r = scm.div(x, y, mask_x=mask_x, mask_y=mask_y)
    xp = namespace(r.value)
    ay = xp.abs(y)
    band = (ay >= _tiny(xp, y)) & (ay < _tiny(xp, y) ** 0.5) & xp.isfinite(x)
    for m in (mask_x, mask_y):
        if m is not None:
            band = band & ~m
    q = x / xp.where(band, y, xp.ones_like(y))
    band = band & xp.isfinite(q)
    return SCMArray(xp.where(band, q, r.value), xp.where(band, False, r.bottom))


# The ci settings without the shrink and explain phases: what is tested is that the bug is
# found within the ci budget and reported with a reproduction that runs; shrinking the
# failure (hypothesis' own engine) cost ~40 s per backend and is not under test here.
CI = settings(settings.get_profile("ci"), report_multiple_bugs=False,
              phases=(Phase.explicit, Phase.reuse, Phase.generate))

# (planted op, op name, laws that must find it, backends on which it is a bug)
PLANTED = [
    (sqrt_sign_lost, "sqrt", (laws.signed_zero_rules, laws.spec_oracle), None),
    # JAX flushes subnormal operands in hardware (x < 0 is False for x = -1e-320), so the
    # planted rule coincides with the correct one there: not a bug on JAX.
    (sqrt_subnormal_bottom, "sqrt", (laws.daz_invariance, laws.spec_oracle),
     ("numpy", "torch", "strict")),
    (div_without_tiny_y_rule, "div", (laws.spec_oracle,), None),
]
CASES = [
    pytest.param(fn, name, law, only, id=f"{fn.__name__}-{law.__name__}")
    for fn, name, found_by, only in PLANTED
    for law in found_by
]


class Counting:
    """Wraps a law; records how many examples ran before the first failure."""

    def __init__(self, law: Any) -> None:
        self.law, self.calls, self.first_failure = law, 0, None
        self.__name__ = law.__name__

    def __call__(self, *args: Any) -> None:
        self.calls += 1
        try:
            self.law(*args)
        except AssertionError:
            if self.first_failure is None:
                self.first_failure = self.calls
            raise


@pytest.mark.parametrize(("planted", "name", "law", "only"), CASES)
def test_planted_bug_is_found(planted, name, law, only, backend, xp):
    if only is not None and backend.name not in only:
        pytest.skip(f"{planted.__name__} is not a bug on {backend.name}")
    counting = Counting(law)
    with pytest.raises(AssertionError) as info:
        laws.run(counting, xp, name, planted, label=f"{name}_planted", settings=CI)
    assert counting.first_failure is not None
    assert counting.first_failure <= 200, counting.first_failure
    report = "\n".join(getattr(info.value, "__notes__", []))
    # the failure prints a reproduction that can be pasted: run it
    snippets = re.findall(r"(import .*?print\(result\))", report, flags=re.S)
    assert snippets, report
    planted_calls = [s for s in snippets if planted.__name__ in s]
    assert planted_calls, report
    out = io.StringIO()
    with contextlib.redirect_stdout(out), np.errstate(all="ignore"):
        exec(compile(planted_calls[-1], "<reproduction>", "exec"), {})
    assert "SCMArray" in out.getvalue()
    print(f"{planted.__name__} on {backend.name}: {law.__name__} failed at example "
          f"{counting.first_failure}")


def test_planted_ops_are_correct_elsewhere(xp):
    """Sanity: the planted copies agree with the real ops away from the planted rule."""
    x = xp.asarray([4.0, -1.0, 0.0, 2.25], dtype=xp.float64)
    for planted in (sqrt_sign_lost, sqrt_subnormal_bottom):
        r, p = scm.sqrt(x), planted(x)
        assert np.array_equal(np.asarray(laws.to_numpy(r.value)),
                              np.asarray(laws.to_numpy(p.value)))
    y = xp.asarray([2.0, 0.0, 1e-100, 3.0], dtype=xp.float64)
    r, p = scm.div(x, y), div_without_tiny_y_rule(x, y)
    assert np.array_equal(laws.to_numpy(r.bottom), laws.to_numpy(p.bottom))
