"""Class: a damaged, foreign or mismatched checkpoint must be refused without side effects.

Rule: ``load_checkpoint`` / ``load_model_state`` / ``read_checkpoint_metadata`` raise
``CheckpointError`` (a ``ValueError``) naming the file for every file that is not an
intact checkpoint of this trainer — flipped bits anywhere, truncation at any length, an
empty or random file, the other backend's checkpoint, a newer schema, another backend
in the metadata, a different model or optimizer — and leave model, optimizer, loader
and trainer counters bit-identical. ``save_checkpoint`` is atomic: a process killed
(SIGKILL) mid-save leaves the previous checkpoint byte-identical and no temporary file
(or only the deterministic ``.zpml-partial`` name, which the next save/load removes).

All randomness is seeded; the expected outcome of every case follows from the rule.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zpml_core.losses import implicit_loss
from zpml_core.training import (
    ArrayLoader,
    CheckpointError,
    SCMTrainer,
    TrainingConfig,
    read_checkpoint_metadata,
)
from zpml_core.training import checkpoint as ck

pytestmark = pytest.mark.autodiff


def _loss(outputs: Any, lifted: Any) -> Any:
    P, Q = outputs
    return implicit_loss(P, Q, *lifted)


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (32, 1)).astype(np.float32)
    return x, (1.0 / (x[:, 0] - 0.5)).astype(np.float32)


def _model(backend: str, seed: int, *, output_dim: int = 1, opt: str = "adam",
           dtype: str = "float32") -> tuple[Any, Any]:
    if backend == "torch":
        import torch
        from zpml_backends.torch_training import RationalHead

        torch.manual_seed(seed)
        m = RationalHead(1, output_dim).to(getattr(torch, dtype))
        cls = torch.optim.Adam if opt == "adam" else torch.optim.SGD
        return m, cls(m.parameters(), lr=1e-2)
    import jax.numpy as jnp
    import optax
    from zpml_backends.jax_training import rational_head_apply, rational_head_init

    params = rational_head_init(seed, 1, output_dim, dtype=getattr(jnp, dtype))
    return (rational_head_apply, params), (optax.adam(1e-2) if opt == "adam" else optax.sgd(1e-2))


def _trainer(backend: str, seed: int = 0, model_seed: int | None = None, **kw: Any) -> SCMTrainer:
    """``seed`` is the config's (part of the config hash), ``model_seed`` the weights'."""
    x, y = _data()
    model, opt = _model(backend, seed if model_seed is None else model_seed, **kw)
    return SCMTrainer(model=model, optimizer=opt, loss_fn=_loss,
                      train_loader=ArrayLoader(x, y, batch_size=8, shuffle=True),
                      config=TrainingConfig(max_epochs=5, seed=seed, tau_train_min=5e-5,
                                            tau_train_max=2e-4))


def _snapshot(tr: SCMTrainer) -> Any:
    """Everything a load may touch, as plain numpy/Python values (deep copies)."""
    if tr.backend == "torch":
        model = {k: v.detach().numpy().copy() for k, v in tr.model.state_dict().items()}
        opt = copy.deepcopy(tr.engine.optimizer.state_dict())  # type: ignore[attr-defined]
        opt = _np_tree(opt)
    else:
        import jax

        model = [np.asarray(a).copy() for a in jax.tree_util.tree_leaves(tr.params)]
        opt = [np.asarray(a).copy() for a in jax.tree_util.tree_leaves(tr.engine.opt_state)]  # type: ignore[attr-defined]
    trainer = (tr.current_epoch, tr.global_step, tr._best_metric, tr._bad_epochs, tr._seeded,
               tr.tau_infer, copy.deepcopy(tr._tau_rng.bit_generator.state),
               copy.deepcopy(tr.train_loader.state_dict()))  # type: ignore[attr-defined]
    return model, opt, trainer


def _np_tree(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _np_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_np_tree(v) for v in obj]
    if hasattr(obj, "detach"):
        return obj.detach().numpy().copy()
    return obj


def _assert_same(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)  # NaN == NaN bit for bit here
        assert a.tobytes() == b.tobytes()
    else:
        assert a == b or (a != a and b != b), (a, b)


@pytest.fixture(scope="module")
def saved(backend_name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[SCMTrainer, Path, bytes]:
    """A trained source trainer, its checkpoint file and the file's bytes (shared, read
    only: tests write their variants into their own ``tmp_path``)."""
    src = _trainer(backend_name, 0)
    src.fit(epochs=2)
    path = tmp_path_factory.mktemp(f"saved_{backend_name}") / "good.ckpt"
    src.save_checkpoint(path)
    return src, path, path.read_bytes()


def _victim(backend_name: str) -> SCMTrainer:
    """Another trainer (other weights) with live optimizer state, loader and RNG state."""
    v = _trainer(backend_name, 0, model_seed=7)
    v.fit(epochs=1)
    return v


@pytest.fixture(scope="module")
def victim(backend_name: str) -> SCMTrainer:
    """Shared: every use asserts it is left unchanged (order-independent as long as
    that holds; a test that must load successfully builds its own)."""
    return _victim(backend_name)


def _refused(victim: SCMTrainer, path: Path, *, match: str | None = None, loaders: tuple[str, ...] = ("full", "model")) -> None:
    before = _snapshot(victim)
    for how in loaders:
        with pytest.raises(CheckpointError, match=match) as err:
            if how == "full":
                victim.load_checkpoint(path)
            elif how == "model":
                victim.load_model_state(path)
            else:
                read_checkpoint_metadata(path)
        assert isinstance(err.value, ValueError)
        assert err.value.path == os.fspath(path) and repr(os.fspath(path)) in str(err.value)
        _assert_same(before, _snapshot(victim))


# ---------------------------------------------------------------------------------------
# damaged files


def test_every_flipped_bit_is_detected(saved: Any, victim: SCMTrainer, tmp_path: Path) -> None:
    _, _, blob = saved
    rng = np.random.default_rng(20240610)
    n = len(blob)
    offsets = set(rng.choice(n, size=48, replace=False).tolist())
    # the structurally interesting places: first bytes, the zip end record, the seal
    offsets |= {0, 1, 30, n - 1, n - ck.SEAL_LENGTH, n - ck.SEAL_LENGTH - 1,
                n - ck.SEAL_LENGTH - 2, n - ck.SEAL_LENGTH - 22, n - 64, n - 65}
    bad = tmp_path / "flipped.ckpt"
    for off in sorted(offsets):
        data = bytearray(blob)
        data[off] ^= 1 << int(rng.integers(8))
        bad.write_bytes(bytes(data))
        _refused(victim, bad, loaders=("full", "model", "meta") if off % 7 == 0 else ("full",))


def test_every_truncation_is_detected(saved: Any, victim: SCMTrainer, tmp_path: Path) -> None:
    _, _, blob = saved
    rng = np.random.default_rng(7)
    n = len(blob)
    lengths = {0, 1, 4, 21, 22, 100, n // 2, n - 1, n - 2, n - 22, n - ck.SEAL_LENGTH,
               n - ck.SEAL_LENGTH + 1, n - ck.SEAL_LENGTH - 1}
    lengths |= set(rng.integers(0, n, size=24).tolist())
    bad = tmp_path / "short.ckpt"
    for length in sorted(lengths):
        bad.write_bytes(blob[:length])
        _refused(victim, bad, loaders=("full",))
    bad.write_bytes(b"")
    _refused(victim, bad, match="empty", loaders=("full", "model", "meta"))


def test_random_and_foreign_files_are_refused(saved: Any, victim: SCMTrainer, tmp_path: Path) -> None:
    _, _, blob = saved
    rng = np.random.default_rng(3)
    bad = tmp_path / "foreign.ckpt"
    for size in (1, 50, 200, 4096, len(blob)):
        bad.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        _refused(victim, bad, loaders=("full", "model", "meta"))
    # a plain zip, an unsealed npz, and a SEALED zip that is no checkpoint
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("hello.txt", "not a checkpoint")
    _refused(victim, bad, match="seal", loaders=("full", "model", "meta"))
    with open(bad, "wb") as fh:
        np.savez(fh, x=np.arange(3))
    _refused(victim, bad, match="seal", loaders=("full", "model", "meta"))
    ck.write_checkpoint(str(bad), lambda s: np.savez(s, x=np.arange(3)))
    _refused(victim, bad, loaders=("full", "model", "meta"))
    # missing file, a directory
    _refused(victim, tmp_path / "missing.ckpt", match="cannot be opened",
             loaders=("full", "model", "meta"))
    _refused(victim, tmp_path, match="cannot be", loaders=("full", "model", "meta"))


def test_other_backends_checkpoint_is_refused(backend_name: str, victim: SCMTrainer,
                                              tmp_path: Path) -> None:
    other = "jax" if backend_name == "torch" else "torch"
    pytest.importorskip(other)
    src = _trainer(other, 0)  # (untrained: the file format is the point)
    path = tmp_path / f"{other}.ckpt"
    src.save_checkpoint(path)
    assert read_checkpoint_metadata(path)["backend"] == other  # intact, just foreign
    _refused(victim, path, match=f"is a {other} checkpoint; this trainer runs on the '{backend_name}'")


def _resealed(tr: SCMTrainer, path: Path, **changes: Any) -> Path:
    meta = {**tr.checkpoint_metadata(), **changes}
    ck.write_checkpoint(str(path), lambda s: tr.engine.save(s, meta))
    return path


def test_wrong_schema_backend_and_metadata_are_refused(victim: SCMTrainer, saved: Any,
                                                       tmp_path: Path) -> None:
    src = saved[0]
    cases = [
        ({"schema_version": ck.CHECKPOINT_SCHEMA_VERSION + 1}, "schema_version"),
        ({"schema_version": "3"}, "schema_version"),
        ({"backend": "mlx"}, "'mlx' backend"),
        ({"format": "something.else"}, "format"),
    ]
    for i, (changes, match) in enumerate(cases):
        _refused(victim, _resealed(src, tmp_path / f"m{i}.ckpt", **changes), match=match)
    # resume fields only matter to load_checkpoint
    for i, (changes, match) in enumerate([
        ({"epoch": -1}, "epoch"),
        ({"global_step": 2.5}, "global_step"),
        ({"tau_rng_state": {"bit_generator": "MT19937", "state": {}}}, "tau_rng_state"),
        ({"loader_state": {"seed": 1, "rng": {"bit_generator": "nope"}}}, "loader_state"),
    ]):
        _refused(victim, _resealed(src, tmp_path / f"r{i}.ckpt", **changes), match=match,
                 loaders=("full",))


def test_config_hash_warning_as_error_modifies_nothing(backend_name: str, saved: Any) -> None:
    """With RuntimeWarning turned into an error, the config-hash warning aborts the load
    before anything (loader included) is modified."""
    import warnings

    _, path, _ = saved
    other = _trainer(backend_name, 1, model_seed=7)  # another config seed: another hash
    other.fit(epochs=1)
    before = _snapshot(other)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(RuntimeWarning, match="config_hash"):
            other.load_checkpoint(path)
    _assert_same(before, _snapshot(other))


@pytest.mark.parametrize("mismatch", ["architecture", "dtype", "optimizer"])
def test_mismatched_model_or_optimizer_is_refused(backend_name: str, saved: Any, mismatch: str,
                                                  tmp_path: Path) -> None:
    _, path, _ = saved
    kw: dict[str, Any] = {"architecture": {"output_dim": 2}, "dtype": {"dtype": "float64"},
                          "optimizer": {"opt": "sgd"}}[mismatch]
    other = _trainer(backend_name, 0, model_seed=5, **kw)
    if mismatch == "optimizer":  # live optimizer state (the others cannot train on this data)
        other.fit(epochs=1)
    loaders = ("full",) if mismatch == "optimizer" else ("full", "model")
    _refused(other, path, loaders=loaders)
    if mismatch == "optimizer":  # the parameters themselves fit
        other.load_model_state(path)


def test_fresh_optimizer_state_is_checked_too(backend_name: str, saved: Any) -> None:
    """A trainer whose optimizer has no state yet (never stepped) still refuses another
    optimizer's state, and accepts its own."""
    _, path, _ = saved
    fresh_sgd = _trainer(backend_name, 0, model_seed=5, opt="sgd")
    _refused(fresh_sgd, path, loaders=("full",))
    fresh = _trainer(backend_name, 0, model_seed=5)
    fresh.load_checkpoint(path)


def test_intact_checkpoint_still_loads_exactly(backend_name: str, saved: Any, tmp_path: Path) -> None:
    """The refusals above are not a broken loader: the intact file restores the source
    trainer's state exactly (after a refused attempt), and a stale partial is removed."""
    src, _, blob = saved
    victim = _victim(backend_name)
    path = tmp_path / "good.ckpt"
    path.write_bytes(blob)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(blob[:-1])
    _refused(victim, bad, loaders=("full",))
    stale = Path(ck.partial_path(str(path)))
    stale.write_bytes(b"leftover of a killed save")
    victim.load_checkpoint(path)
    assert not stale.exists()
    _assert_same(_snapshot(src)[:2], _snapshot(victim)[:2])
    assert (victim.current_epoch, victim.global_step) == (src.current_epoch, src.global_step)


# ---------------------------------------------------------------------------------------
# atomic saves


def test_save_leaves_only_the_target(saved: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = saved[0]
    path = tmp_path / "good.ckpt"
    path.write_bytes(b"an older file")
    stale = Path(ck.partial_path(str(path)))
    stale.write_bytes(b"junk")
    src.save_checkpoint(path)  # replaces an existing file
    assert read_checkpoint_metadata(path)["global_step"] == src.global_step
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.ckpt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # like a plain open(..., "wb")
    # the portable path (no O_TMPFILE): named partial + rename, nothing left either
    monkeypatch.setattr(ck, "_write_unnamed", lambda *a: False)
    src.save_checkpoint(tmp_path / "other.ckpt")
    src.save_checkpoint(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.ckpt", "other.ckpt"]
    assert read_checkpoint_metadata(path)["global_step"] == src.global_step


@pytest.mark.parametrize("unnamed", [True, False])
def test_save_survives_a_concurrent_load_removing_its_partial(tmp_path: Path, unnamed: bool,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A load of the target removes a stale ``.zpml-partial``; if that happens to a save
    in progress (between link/write and rename), the save redoes it, not fails."""
    if unnamed and not hasattr(os, "O_TMPFILE"):
        pytest.skip("O_TMPFILE is Linux-only")
    if not unnamed:
        monkeypatch.setattr(ck, "_write_unnamed", lambda *a: None)
    path = tmp_path / "c.bin"
    ck.write_checkpoint(str(path), lambda s: np.savez(s, x=np.zeros(3)))
    real = os.replace
    calls = []

    def racing_replace(src: Any, dst: Any, **kw: Any) -> None:
        calls.append(src)
        if len(calls) == 1:  # a concurrent load_checkpoint(path) runs right now
            with ck.open_checkpoint(path):
                pass
        real(src, dst, **kw)

    monkeypatch.setattr(os, "replace", racing_replace)
    ck.write_checkpoint(str(path), lambda s: np.savez(s, x=np.ones(3)))
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.bin"]
    with ck.open_checkpoint(path) as (fh, _), np.load(fh) as data:
        np.testing.assert_array_equal(data["x"], np.ones(3))


_KILL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from zpml_core.training import checkpoint as ck

    path, mode, pause_at, backend = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    if backend == "none":
        def save(step):
            ck.write_checkpoint(path, lambda s: np.savez(s, x=np.full(50_000, step, np.int64)))
    else:
        sys.path.insert(0, os.environ["ZPML_TEST_DIR"])
        from test_checkpoint_integrity import _trainer
        tr = _trainer(backend, 0)
        def save(step):
            tr.fit(epochs=1)
            tr.save_checkpoint(path)

    save(1)
    print("SAVED", flush=True)
    if mode == "fallback":
        ck._write_unnamed = lambda *a: False

    def pause():
        print("PAUSED", flush=True)
        time.sleep(600)

    if mode in ("unnamed", "fallback"):  # pause inside the write, after pause_at bytes
        write = ck._SealingWriter.write
        def slow(self, data):
            n = write(self, data)
            if self._n >= pause_at:
                pause()
            return n
        ck._SealingWriter.write = slow
    elif mode == "rename":  # pause between linking the partial name and the rename
        replace = os.replace
        def slow_replace(src, dst, **kw):
            pause()
            return replace(src, dst, **kw)
        os.replace = slow_replace
    save(2)
    print("FINISHED", flush=True)
""")


def _kill_during_save(tmp_path: Path, mode: str, pause_at: int, backend: str) -> tuple[Path, bytes]:
    path = tmp_path / "ck.bin"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ZPML_TEST_DIR": str(Path(__file__).parent),
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(path), mode, str(pause_at), backend],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "SAVED", proc.stderr.read() if proc.stderr else ""
        previous = path.read_bytes()
        line = proc.stdout.readline().strip()
        assert line == "PAUSED", (line, proc.stderr.read() if proc.stderr else "")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return path, previous


@pytest.mark.parametrize("mode", ["unnamed", "fallback"])
def test_kill_inside_the_write_keeps_the_previous_checkpoint(tmp_path: Path, mode: str) -> None:
    """SIGKILL at seeded random points inside the write: the target is byte-identical to
    the previous checkpoint; with O_TMPFILE nothing else exists, without it only the
    deterministic partial name, which the next load removes."""
    if mode == "unnamed" and not hasattr(os, "O_TMPFILE"):
        pytest.skip("O_TMPFILE is Linux-only")
    rng = np.random.default_rng(11)
    for pause_at in rng.integers(1, 400_000, size=3).tolist():
        sub = tmp_path / f"{mode}_{pause_at}"
        sub.mkdir()
        path, previous = _kill_during_save(sub, mode, pause_at, "none")
        assert path.read_bytes() == previous
        names = sorted(p.name for p in sub.iterdir())
        if mode == "unnamed":
            assert names == ["ck.bin"]
        else:
            assert names == [".ck.bin.zpml-partial", "ck.bin"]
        with np.load(path) as data:  # a sealed file is still a plain npz
            assert int(data["x"][0]) == 1
        with ck.open_checkpoint(path) as (_, kind):
            assert kind is None
        assert sorted(p.name for p in sub.iterdir()) == ["ck.bin"]


def test_kill_between_link_and_rename_is_cleaned_up(tmp_path: Path) -> None:
    path, previous = _kill_during_save(tmp_path, "rename", 0, "none")
    assert path.read_bytes() == previous
    partial = Path(ck.partial_path(str(path)))
    assert partial.exists()  # complete and sealed, but never renamed
    ck.write_checkpoint(str(path), lambda s: np.savez(s, x=np.arange(3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.bin"]


def test_trainer_killed_mid_save_keeps_its_previous_checkpoint(backend_name: str, tmp_path: Path) -> None:
    path, previous = _kill_during_save(tmp_path, "unnamed" if hasattr(os, "O_TMPFILE") else "fallback",
                                       2000, backend_name)
    assert path.read_bytes() == previous
    fresh = _trainer(backend_name, 0, model_seed=3)
    meta = fresh.load_checkpoint(path)
    assert meta["epoch"] == 1 and fresh.current_epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.bin"]
