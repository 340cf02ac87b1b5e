"""``zpml demo``: trains on every installed autodiff backend, writes JSONL + PNG, prints tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zpml_core.cli import main as cli_main
from zpml_core.training import read_checkpoint_metadata
from zpml_core.utils.logging import read_jsonl
from zpml_tasks.demo import make_tasks

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_demo_data_has_real_poles() -> None:
    import numpy as np

    pole, ik = make_tasks(0)
    assert (pole.name, ik.name) == ("pole", "ik_pole")
    for task in (pole, ik):
        for split in (task.train, task.val, task.test):
            assert split.x.dtype == np.float32 and split.x.shape[1] == task.input_dim
            finite = np.isfinite(split.y) if split.y.ndim == 1 else np.isfinite(split.y).all(1)
            assert (~finite).sum() > 0  # exact-singularity rows with bottom targets
            assert np.all(split.dist[~finite] == 0.0) and np.array_equal(~finite, split.exact)
            assert (split.dist[finite] < 1e-3).sum() > 0  # samples close to the pole
    # ik targets are J(θ)⁻¹ e_x: check J · dθ = e_x on finite rows
    x, y = ik.test.x.astype(np.float64), ik.test.y.astype(np.float64)
    ok = np.isfinite(y).all(1) & (ik.test.dist > 0.05)
    t1, t2 = x[ok, 0], x[ok, 1]
    j = np.array([[-np.sin(t1) - np.sin(t1 + t2), -np.sin(t1 + t2)],
                  [np.cos(t1) + np.cos(t1 + t2), np.cos(t1 + t2)]])
    hand = np.einsum("ijn,nj->ni", j, y[ok])
    np.testing.assert_allclose(hand, np.tile([1.0, 0.0], (ok.sum(), 1)), atol=1e-4)


@pytest.mark.slow
def test_demo_all_backends(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("optax")
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    out = tmp_path / "demo"
    assert cli_main(["demo", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    for backend in ("torch", "jax"):
        assert re.search(rf"^backend {backend} \(", text, re.M), text
        for task in ("pole", "ik"):
            recs = read_jsonl(out / f"{backend}_{task}.jsonl", validate=True)
            phases = [r["phase"] for r in recs]
            assert phases.count("eval") == 2 and phases.count("train") > 10
            for key in ("loss", "coverage", "bottom_frac", "tau_train", "denom_abs_min",
                        "denom_abs_mean"):
                assert key in recs[0]["metrics"]
            meta = read_checkpoint_metadata(out / f"{backend}_{task}.ckpt")
            # tau_infer is calibrated over the observed |Q| (issue 12 §5): no longer capped
            # at tau_train_max
            assert meta["backend"] == backend and meta["tau_infer"] > 0
            assert meta["user"] == {"demo_task": task}
        assert (out / f"demo_{backend}.png").read_bytes()[:8] == PNG_MAGIC
    # per backend and task a model row and a predict-0 row:
    # task | model | epochs | tau_inf | coverage | ...
    rows = re.findall(r"^(pole|ik) \| fit=(\w+) \| 2 \| (\S+) \| ([0-9.]+) \|", text, re.M)
    assert len(rows) == 4 and len(re.findall(r"^(pole|ik) \| predict-0 \|", text, re.M)) == 4
    for _, fit, tau_inf, coverage in rows:
        assert fit == "angle_l1" and 0.0 <= float(coverage) <= 1.0 and float(tau_inf) > 0


def test_demo_subset_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "d"
    assert cli_main(["demo", "--backend", "torch", "--tasks", "pole", "--epochs", "1",
                     "--out", str(out), "--quiet", "--no-plot"]) == 0
    assert (out / "torch_pole.jsonl").exists() and not (out / "demo_torch.png").exists()
    assert not (out / "torch_ik.jsonl").exists()
    assert "backend torch" in capsys.readouterr().out
    assert cli_main(["demo", "--epochs", "0"]) == 2
    assert cli_main(["demo", "--tasks", "nope"]) == 2
