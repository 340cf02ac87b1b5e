"""nox sessions: one test session per backend, conformance per backend, lint, typecheck,
benchmarks and an optional parity check against zeroproofml 0.6.1 (never a runtime
dependency). Every install goes through constraints.txt (torch pinned to the CPU wheel).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

BACKENDS = ["numpy", "torch", "jax", "strict"]
# torch and jax sessions install both, so torch-vs-JAX gradient parity runs in each
EXTRAS = {
    "numpy": "test",
    "torch": "test,torch,jax",
    "jax": "test,torch,jax",
    "strict": "test,strict",
}
CONSTRAINTS = ["-c", "constraints.txt"]


def _install(session: nox.Session, extras: str) -> None:
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


@nox.session(python="3.11")
@nox.parametrize("backend", BACKENDS)
def tests(session: nox.Session, backend: str) -> None:
    """Run the test suite against one backend (ZPML_TEST_BACKENDS=<backend>)."""
    _install(session, EXTRAS[backend])
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", *session.posargs,
        env={"ZPML_TEST_BACKENDS": backend},
    )


@nox.session(python="3.11")
@nox.parametrize("backend", [*BACKENDS, "dask"])
def conformance(session: nox.Session, backend: str) -> None:
    """Run the conformance suite against one backend."""
    extras = {"dask": "test,dask"}.get(backend, EXTRAS[backend])
    _install(session, extras)
    session.run("python", "-m", "zpml_conformance", "--backend", backend, *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    _install(session, "test,lint")
    session.run("mypy", "zpml_core", "backends", "conformance")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks (ratios measured side by side in one run)."""
    _install(session, "all")
    session.install(*CONSTRAINTS, "zeroproofml==0.6.1")  # speed reference only, this venv
    for script in ("bench_ops.py", "bench_losses.py", "bench_train.py"):
        session.run("python", f"benchmarks/{script}", *session.posargs)


@nox.session(python="3.11")
def parity(session: nox.Session) -> None:
    """Compare behaviour with zeroproofml 0.6.1 in this session's own venv (optional)."""
    _install(session, "all")
    session.install(*CONSTRAINTS, "zeroproofml==0.6.1")
    session.run("python", "benchmarks/parity_zeroproofml.py", *session.posargs)


@nox.session(python="3.11")
def dask_cluster(session: nox.Session) -> None:
    """Strict inference and decode on a 2-worker dask.distributed LocalCluster over inputs
    4x one worker's memory limit: bit identity with numpy, and wall-clock against one
    process (README "Scaling out")."""
    _install(session, "dask,test")
    session.run("python", "benchmarks/bench_dask_cluster.py", *session.posargs)


@nox.session(python="3.11")
def scaling(session: nox.Session) -> None:
    """Data-parallel training: torch DDP with 2 gloo ranks and JAX on a 2-device host
    mesh against one process (equality tests, then wall-clock; README "Scaling out")."""
    _install(session, "test,torch,jax")
    session.run("pytest", "-q", "-p", "no:cacheprovider", "tests/test_ddp.py",
                "tests/test_jax_sharding.py")
    session.run("python", "benchmarks/bench_scaling.py", *session.posargs)
