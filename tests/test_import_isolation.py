"""design rule 2: ``import zpml_core`` imports no array framework, and using it with
array-api-strict inputs imports neither torch nor jax (checked in fresh interpreters)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import requested_backends

FRAMEWORKS = ("numpy", "torch", "jax", "jaxlib", "array_api_strict")


def _run(code: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_zpml_core_imports_no_framework():
    out = _run(
        f"""
        import json, sys
        before = sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)
        import zpml_core
        import zpml_core.scm, zpml_core.projective, zpml_core.inference
        loaded = sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)
        print(json.dumps({{"before": before, "loaded": loaded}}))
        """
    )
    assert out["before"] == []
    assert out["loaded"] == [], f"import zpml_core imported {out['loaded']}"


def test_registry_discovery_imports_no_framework():
    # listing the adapters (entry points) must stay lazy as well
    out = _run(
        f"""
        import json, sys
        import zpml_core
        names = sorted(zpml_core.registered_backends())
        loaded = sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)
        print(json.dumps({{"names": names, "loaded": loaded}}))
        """
    )
    assert out["loaded"] == []
    assert {"numpy", "torch", "jax", "strict"} <= set(out["names"])


def test_array_api_strict_usage_imports_neither_torch_nor_jax():
    out = _run(
        """
        import json, math, sys
        import array_api_strict as xp
        import zpml_core
        from zpml_core import scm

        x = xp.asarray([0.0, 1.0, -2.0, 4.0, math.inf])
        y = xp.asarray([2.0, 0.0, 1e-200, 3.0, 1.0])
        m = xp.asarray([False, True, False, False, False])
        for op in ("add", "sub", "mul", "div"):
            getattr(scm, op)(x, y, mask_x=m)
        for op in ("inv", "neg", "log", "exp", "sqrt", "sin", "cos", "tan"):
            getattr(scm, op)(x, mask=m)
        scm.pow(x, y); scm.pow(x, 0.5)
        zpml_core.lift_targets(x)
        zpml_core.lift_semantic_targets(x, ["finite", "bottom", "fault", "missing", "censored_above"])
        zpml_core.encode(x, m); zpml_core.decode(x, y)
        zpml_core.renormalize(x, y); zpml_core.projectively_equal(x, y, y, x)
        r = zpml_core.strict_inference(x, y, config=zpml_core.InferenceConfig(tau_train=1e-4))
        r.bottom_provenance
        # integer inputs go through the default-float promotion path
        zpml_core.strict_inference(xp.asarray([1, 2]), xp.asarray([0, 2]))
        loaded = sorted(m for m in ("torch", "jax", "jaxlib") if m in sys.modules)
        print(json.dumps({"loaded": loaded, "bottom": [bool(b) for b in r[1]]}))
        """
    )
    assert out["loaded"] == [], f"strict usage imported {out['loaded']}"
    assert out["bottom"] == [False, True, True, False, True]  # it really ran


# numpy is a core dependency (always there); torch/jax only when requested
_FRAMEWORKS = sorted({"numpy"} | ({"torch", "jax"} & set(requested_backends()[0])))


@pytest.mark.parametrize("framework", _FRAMEWORKS)
def test_using_one_framework_does_not_import_the_others(framework):
    others = {"numpy": ("torch", "jax"), "torch": ("jax",), "jax": ("torch",)}[framework]
    build = {
        "numpy": "import numpy as np; a = np.asarray([1.0, 0.0]); b = np.asarray([0.0, 2.0])",
        "torch": "import torch; a = torch.tensor([1.0, 0.0]); b = torch.tensor([0.0, 2.0])",
        "jax": "import jax.numpy as jnp; a = jnp.asarray([1.0, 0.0]); b = jnp.asarray([0.0, 2.0])",
    }[framework]
    out = _run(
        f"""
        import json, sys
        {build}
        import zpml_core
        from zpml_core import scm
        r = scm.div(a, b)
        zpml_core.strict_inference(a, b)
        zpml_core.decode(a, b)
        loaded = sorted(m for m in {others!r} if m in sys.modules)
        print(json.dumps({{"loaded": loaded, "bottom": [bool(v) for v in r.bottom]}}))
        """
    )
    assert out["loaded"] == [], f"using zpml_core with {framework} imported {out['loaded']}"
    assert out["bottom"] == [True, False]
