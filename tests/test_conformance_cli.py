"""The conformance suite's machinery: case table, CLI, xfails files, JSON, pytest plugin."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zpml_conformance import runner
from zpml_conformance.__main__ import main
from zpml_conformance.cases import DTYPES, GROUPS, all_cases

BUILTIN = ("numpy", "strict", "torch", "jax", "dask")


def test_case_table_is_data() -> None:
    cases = all_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    assert {c.group for c in cases} <= set(GROUPS)
    assert {c.dtype for c in cases} == set(DTYPES)
    for c in cases:
        assert re.fullmatch(r"(grad\.)?[a-z]+\.[A-Za-z_]+/f(32|64)/\S+", c.id), c.id
        assert (c.group == "grad") == (c.grad is not None), c.id
    # inputs are deterministic (fixed seeds) and of the case's dtype
    c = next(c for c in cases if c.id == "scm.div/f32/rand-1d")
    a, b = c.inputs(), c.inputs()
    assert a["x"].dtype == np.float32
    np.testing.assert_array_equal(a["x"], b["x"])
    # every public array function of the issue has rows
    for fn in ("scm.add", "scm.sub", "scm.mul", "scm.div", "scm.inv", "scm.neg", "scm.log",
               "scm.exp", "scm.sqrt", "scm.sin", "scm.cos", "scm.tan", "scm.pow",
               "projective.lift_targets", "projective.lift_semantic_targets",
               "projective.decode", "projective.renormalize", "projective.encode",
               "projective.projectively_equal", "inference.strict_inference"):
        assert any(i.startswith(fn + "/") for i in ids), fn
        assert any(i.startswith(f"grad.{fn}/") for i in ids) or not fn.startswith("scm"), fn


def test_loss_rows_exist_when_losses_exist() -> None:
    pytest.importorskip("zpml_core.losses")
    ids = [c.id for c in all_cases()]
    for fn in ("implicit_loss", "margin_loss", "sign_consistency_loss", "coverage",
               "rejection_loss", "soft_coverage_loss", "scm_separation_losses",
               "SCMTrainingLoss"):
        assert any(i.startswith(f"losses.{fn}/") for i in ids), fn
        assert any(i.startswith(f"grad.losses.{fn}/") for i in ids), fn
    for pol in ("clamp", "project", "reject", "passthrough"):
        assert any(i.endswith(f"policy-{pol}") and i.startswith("grad.scm.") for i in ids)
        assert any(i.endswith(f"policy={pol}") and i.startswith("grad.losses.") for i in ids)


@pytest.mark.parametrize("name", BUILTIN)
def test_our_backends_need_no_xfail(name: str) -> None:
    path = runner.default_xfails_path(name)
    assert path is not None and path.is_file()
    assert runner.load_xfails(path) == []


def _final(out: str) -> tuple[int, int]:
    m = re.search(r"^(\d+) passed, (\d+) failed$", out.strip().splitlines()[-1])
    assert m, out
    return int(m.group(1)), int(m.group(2))


def test_cli_one_backend(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    code = main(["--backend", "numpy", "--only", "scm.div/*", "--only", "*decode/f32*",
                 "--dtype", "float64", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0
    assert _final(out) == (4, 0)  # scm.div f64 rows; the decode glob is f32 only
    assert re.search(r"^numpy\s+4/0/0\s", out, re.M), out
    data = json.loads(out_json.read_text())
    assert data["passed"] == 4 and data["failed"] == 0
    assert {r["case"] for r in data["backends"][0]["results"]} == {
        c.id for c in all_cases() if c.id.startswith("scm.div/f64/")}


def test_cli_list_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list", "--backend", "numpy", "--only", "strict_inference"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out and all(line.startswith("inference.strict_inference/") for line in out)
    assert not any(line.startswith("grad.") for line in out)
    assert main(["--backend", "no-such-backend"]) == 2
    assert "unknown backend" in capsys.readouterr().err


def test_zpml_conformance_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    from zpml_core.cli import main as zpml

    assert zpml(["conformance", "--backend", "strict", "--only", "scm.neg/f32/*"]) == 0
    assert _final(capsys.readouterr().out) == (4, 0)


def test_xfails_file_and_unknown_ids(capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
    from zpml_backends.numpy_adapter import NumpyBackend

    class OffByOne(NumpyBackend):
        """Breaks every float output (conversion only: no registration needed)."""

        name = "numpy-offbyone"

        def to_numpy(self, x: Any) -> Any:
            a = np.array(x, copy=True)
            return a + 1 if a.dtype.kind == "f" else a

    from zpml_core import register_backend
    from zpml_core._registry import unregister_backend

    register_backend(OffByOne())
    try:
        xf = tmp_path / "xfails.txt"
        xf.write_text(textwrap.dedent("""\
            # comment
            scm.neg/f64/rand-2d   known: everything is off by one
            scm.neg/f64/edge-*    glob entries work too
            scm.nosuch/f64/x      this id matches no case
        """))
        with pytest.warns(UserWarning, match="matches no case"):
            code = main(["--backend", "numpy-offbyone", "--only", "scm.neg/f64/*",
                         "--xfails", str(xf)])
        out = capsys.readouterr().out
        assert "warning: numpy-offbyone: xfails entry 'scm.nosuch/f64/x'" in out
        # rand-2d and edge-1d xfail; masked-2d and masked-bcast fail
        assert re.search(r"^numpy-offbyone\s+0/2/2\s", out, re.M), out
        assert _final(out) == (0, 2)
        assert code == 1
    finally:
        unregister_backend("numpy-offbyone")


# ---- pytest integration ------------------------------------------------------------------


def _pytest(args: list[str], env_extra: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )


def test_pytest11_entry_point_is_declared() -> None:
    """The installed distribution registers the plugin, so no ``-p`` is needed."""
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert eps.get("zpml_conformance") == "zpml_conformance.pytest_plugin"


def test_pytest_pyargs_exact_command(tmp_path: Path) -> None:
    """``pytest --pyargs zpml_conformance --zpml-backend NAME``, exactly as documented."""
    r = _pytest(["--pyargs", "zpml_conformance", "--zpml-backend", "strict",
                 "-k", "scm.div or scm.pow"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"\b(\d+) passed", r.stdout)
    assert m, r.stdout
    expected = sum(1 for c in runner.select_cases(None) if c.grad is None
                   and (c.id.startswith("scm.div/") or c.id.startswith("scm.pow/")))
    assert int(m.group(1)) == expected


def test_pytest_reports_a_failing_case(tmp_path: Path) -> None:
    conftest = tmp_path / "conftest_broken.py"
    conftest.write_text(textwrap.dedent("""\
        import numpy as np
        from zpml_core import register_backend
        from zpml_backends.numpy_adapter import NumpyBackend

        class Broken(NumpyBackend):
            name = "numpy-broken"
            def to_numpy(self, x):
                a = np.array(x, copy=True)
                if a.dtype == bool and a.size > 1:
                    a.flat[1] = not a.flat[1]
                return a

        def pytest_configure(config):
            register_backend(Broken())
    """))
    r = _pytest(["-p", "conftest_broken",
                 "--pyargs", "zpml_conformance", "--zpml-backend", "numpy-broken",
                 "-k", "scm.log/f64/edge"], {"PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[numpy-broken] scm.log/f64/edge-1d: output 'bottom': 1 of 54 element(s) " \
           "differ; first differing element at index (1,)" in r.stdout
    xf = tmp_path / "xf.txt"
    xf.write_text("scm.log/f64/edge-1d  known broken mask\n")
    r = _pytest(["-p", "conftest_broken",
                 "--pyargs", "zpml_conformance", "--zpml-backend", "numpy-broken",
                 "--zpml-xfails", str(xf), "-k", "scm.log/f64/edge"],
                {"PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 xfailed" in r.stdout


def test_zpml_version_and_conformance_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``zpml --version`` prints the installed distribution's version; ``zpml conformance
    --help`` names the command as the user typed it."""
    from importlib.metadata import version

    import zpml_core
    from zpml_core.cli import main as zpml

    assert zpml(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"zpml-core {version('zpml-core')}"
    assert zpml_core.__version__ == version("zpml-core")
    with pytest.raises(SystemExit) as exc:
        zpml(["conformance", "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: zpml conformance ")
