"""Cold start: the first call of every public array function in a fresh process happens
inside ``torch.compile(fullgraph=True)`` / ``jax.jit`` and works.

Class of failure: library state created lazily on the first call (caches, closures,
imports, entry-point scans, jit cache keys) is created *while a tracer records*, where
Dynamo cannot trace it (``Unsupported``, a graph break under ``fullgraph=True``) or
guards on it (every later call recompiles). Tests that call a function eagerly first hide
it, so each group of functions runs in its own subprocess (``_cold_worker.py``), with
``zpml_core`` imported before the frameworks. Each function is traced first in float64,
then float32, float16 and bfloat16, checked against eager bit for bit, called again
without recompiling, and differentiated under gradient-policy contexts (see the worker's
docstring).

Every function of ``public_api.PUBLIC`` is covered; groups mix modules so that each
process meets several cold caches. One extra process imports torch before zpml_core
(the adapter then prepares its gate class at import).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import requested_backends

from .public_api import PUBLIC

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_cold_worker.py")
N_GROUPS = 10
GROUPS = [[p.name for p in PUBLIC[k::N_GROUPS]] for k in range(N_GROUPS)]
TIMEOUT = 1200


def _frameworks() -> str:
    names, _ = requested_backends()
    fw = [n for n in ("torch", "jax") if n in names]
    if not fw:
        pytest.skip("neither torch nor jax requested (ZPML_TEST_BACKENDS)")
    return ",".join(fw)


def _run(args: list[str], env_extra: dict[str, str] | None = None) -> None:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no compile-worker pool per process
    env["JAX_ENABLE_X64"] = "1"
    if env_extra:
        env.update(env_extra)
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("FAIL", "DONE"))]
    assert proc.returncode == 0 and lines and lines[-1].startswith("DONE 0"), (
        "\n".join(lines) + "\n--- stderr (tail) ---\n" + proc.stderr[-3000:]
    )
    # a cold compile is also quiet: no warning reaches the user (e.g. Dynamo's about
    # tracing array-api-compat's lru_cache'd helpers, or inductor's own)
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]


def test_groups_cover_every_public_function() -> None:
    assert sorted(n for g in GROUPS for n in g) == sorted(p.name for p in PUBLIC)


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS, ids=[g[0] for g in GROUPS])
def test_cold_first_call_traced(group: list[str]) -> None:
    _run([WORKER, _frameworks(), *group])


@pytest.mark.slow
def test_cold_torch_imported_first() -> None:
    if "torch" not in _frameworks():
        pytest.skip("torch not requested")
    code = (
        "import sys, runpy; import torch; "
        f"sys.argv = [{WORKER!r}, 'torch', 'scm.mul', 'strict_inference', 'SCMTrainingLoss']; "
        f"runpy.run_path({WORKER!r}, run_name='__main__')"
    )
    _run(["-c", code])
