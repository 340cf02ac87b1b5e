"""The MLX autodiff adapter of examples/zpml_backend_mlx (where ``mlx`` installs):
installed as its own package, found through the entry point, and passing a slice of
the suite that covers each of its parts — the namespace hook (no ``.device``, no
``mx.bool``, ``hypot``), the default integer int32, float64 exp/sin/cos built from
accurate MLX functions, the policy gates, gradients, and the shipped per-output
xfails (the whole suite runs in CI: ``python -m zpml_conformance --backend mlx``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlx.core")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "zpml_backend_mlx"
SLICE = ["scm.exp/*/edge-1d", "scm.sin/f64/*", "scm.cos/f64/edge-1d", "scm.div/f32/*",
         "projective.lift_semantic_targets/f32/*", "projective.renormalize/f64/rand-2d",
         "inference.strict_inference/f64/edge-1d", "losses.coverage/f32/*",
         "grad.scm.exp/f64/edge-1d", "grad.scm.cos/f64/smooth-1d", "grad.scm.div/f64/policy-*",
         "grad.scm.pow/f64/zero-base-1d", "grad.losses.SCMTrainingLoss/f64/config-1d"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    src = tmp_path_factory.mktemp("src") / EXAMPLE.name
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    base = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    r = subprocess.run([*base, "--no-build-isolation", "--no-index", str(src)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        r = subprocess.run([*base, str(src)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.fail(f"pip could not install the MLX example:\n{r.stdout}\n{r.stderr}")
    return target


def test_mlx_adapter_passes_a_slice_of_the_suite(installed: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(installed), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    args = [a for p in SLICE for a in ("--only", p)]
    r = subprocess.run([sys.executable, "-m", "zpml_conformance", "--backend", "mlx", *args],
                       capture_output=True, text=True, env=env, cwd=installed, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    m = re.search(r"^(\d+) passed, 0 failed$", r.stdout, re.M)
    assert m and int(m.group(1)) >= 30, r.stdout[-2000:]
    # the shipped xfails file is found without --xfails; the entry names one output
    assert re.search(r"^XFAIL \[mlx\] grad\.scm\.pow/f64/zero-base-1d: gradient d/dx .*"
                     r"\(xfail: x: MLX's d/dx x\*\*e at x = 0 is nan, not inf\)$",
                     r.stdout, re.M), r.stdout[-2000:]
