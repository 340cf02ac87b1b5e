"""Subprocess worker of ``test_cold_start.py``: public functions called for the first
time in a fresh process *inside* ``torch.compile(fullgraph=True)`` and ``jax.jit``.

    python tests/hostile/_cold_worker.py <frameworks> <function> [<function> ...]

``frameworks`` is a comma-separated subset of ``torch,jax``; functions are names from
``public_api.PUBLIC``. ``zpml_core`` is imported before any framework (the order in
which nothing can be prepared ahead of time). For each function and framework, in this
order, every call being the first of its kind in the process:

1. float64 under the compiler (cold), then float32, float16, bfloat16 (each dtype's
   first call is traced); the same inputs are then run eagerly and compared;
2. the function again with identical inputs must not recompile (a cache filled during
   the first trace would invalidate Dynamo's guards);
3. for every gradient policy: the gradient of the float outputs' sum, traced inside a
   ``gradient_policy`` context, equals the eager gradient under the same context.

Results equal eager bit for bit (masks, signed zeros, NaN positions); only float64
values of libm-based functions under inductor may differ by 1 ulp (inductor generates
its own ``log``/``exp``/trig code; ``tests/test_tracing.py`` documents the same).
Prints one line per failure and exits 1 if there was any.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import zpml_core  # noqa: F401  (first: before any framework)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hostile.public_api import PUBLIC, Public
from zpml_core.autodiff import GradientPolicy, gradient_policy

DTYPES = ("float64", "float32", "float16", "bfloat16")
# functions whose values come from libm (may differ by 1 ulp under inductor, float64 only)
LIBM = ("scm.log", "scm.exp", "scm.sin", "scm.cos", "scm.tan", "scm.pow", "scm.sqrt",
        "scm.log[mask]", "renormalize", "sign_consistency_loss", "soft_coverage_loss",
        "SCMTrainingLoss", "implicit_loss", "margin_loss", "scm_separation_losses")
FAILURES: list[str] = []


def base_inputs(public: Public) -> dict[str, Any]:
    """numpy inputs: moderate values with 0.0, -0.0 and a value whose products overflow
    float16 (40000), bool masks, a 0-d fit loss."""
    import numpy as np

    out: dict[str, Any] = {}
    for i, name in enumerate(public.args):
        if name in public.bool_args:
            out[name] = np.array([k % 3 == 0 for k in range(8)])
        elif name == "fit_loss":
            out[name] = np.array(0.5)
        else:
            v = np.array([0.5 + 0.25 * ((k + i) % 7) for k in range(8)])
            v[5 - (i % 2)] = 0.0
            v[6] = -0.0 if i % 2 == 0 else 1.5
            v[7] = 40000.0 if i < 2 else 3.0
            out[name] = v
    return out


def flatten(out: Any) -> list[Any]:
    """Every array of a result (tuples, named tuples, dicts, InferenceResult attrs)."""
    if isinstance(out, dict):
        return [a for k in sorted(out) for a in flatten(out[k])]
    if isinstance(out, (tuple, list)):
        items = [a for o in out for a in flatten(o)]
        for attr in ("fault_mask", "semantic_bottom_mask"):
            if hasattr(out, attr):
                items.extend(flatten(getattr(out, attr)))
        return items
    return [out]


def same(tag: str, got: list[Any], want: list[Any], to_np: Callable[[Any], Any],
         ulps: int = 0) -> None:
    import numpy as np

    if len(got) != len(want):
        FAILURES.append(f"{tag}: {len(got)} outputs traced, {len(want)} eager")
        return
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g is None or w is None:
            if (g is None) != (w is None):
                FAILURES.append(f"{tag}[{i}]: None mismatch")
            continue
        if str(g.dtype) != str(w.dtype):
            FAILURES.append(f"{tag}[{i}]: dtype {g.dtype} traced, {w.dtype} eager")
            continue
        gn = np.asarray(to_np(g)).astype(np.float64) if "bfloat16" in str(g.dtype) else to_np(g)
        wn = np.asarray(to_np(w)).astype(np.float64) if "bfloat16" in str(w.dtype) else to_np(w)
        gn, wn = np.asarray(gn), np.asarray(wn)
        if gn.shape != wn.shape:
            FAILURES.append(f"{tag}[{i}]: shape {gn.shape} traced, {wn.shape} eager")
            continue
        if gn.dtype.kind not in "fc":
            if not np.array_equal(gn, wn):
                FAILURES.append(f"{tag}[{i}]: {gn.tolist()} traced, {wn.tolist()} eager")
            continue
        nan_g, nan_w = np.isnan(gn), np.isnan(wn)
        ok = ~nan_w
        if ulps:
            tol = ulps * np.spacing(np.abs(wn[ok]).astype(wn.dtype))
            close = np.abs(gn[ok] - wn[ok]) <= tol
        else:
            close = gn[ok] == wn[ok]
        signs = np.signbit(np.real(gn[ok])) == np.signbit(np.real(wn[ok]))
        if not (np.array_equal(nan_g, nan_w) and close.all() and signs.all()):
            FAILURES.append(f"{tag}[{i}]: {gn.tolist()} traced, {wn.tolist()} eager")


def policies_for(public: Public) -> list[GradientPolicy]:
    """Two of the four policies per function, rotating over the table (every policy is
    exercised by several functions; the first one in a process meets a cold gate)."""
    every = list(GradientPolicy)
    i = [p.name for p in PUBLIC].index(public.name)
    return [every[i % 4], every[(i + 2) % 4]]


def guarded(tag: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception as exc:  # report and go on with the next case
        msg = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
        head = msg[0][:300]
        frames = [ln.strip() for ln in msg if ln.strip().startswith("File ")][-3:]
        FAILURES.append(f"{tag}: {head} | " + " | ".join(frames))


# ---------------------------------------------------------------------------------------
# torch


class Counting:
    """A torch.compile backend that counts the graphs it is handed."""

    def __init__(self, name: str) -> None:
        import torch

        self.inner = torch._dynamo.lookup_backend(name)
        self.graphs = 0

    def __call__(self, gm: Any, example_inputs: Any) -> Any:
        self.graphs += 1
        return self.inner(gm, example_inputs)


def torch_case(public: Public, backend_name: str) -> None:
    import torch

    torch._dynamo.config.recompile_limit = 64
    torch._dynamo.config.fail_on_recompile_limit_hit = True  # never fall back silently
    base = base_inputs(public)

    def make(dtype: str, grad: bool = False) -> list[Any]:
        out = []
        for a in public.args:
            v = base[a]
            t = torch.from_numpy(v.copy())
            if v.dtype != bool:
                t = t.to(getattr(torch, dtype))
                if grad:
                    t.requires_grad_(True)
            out.append(t)
        return out

    def to_np(t: Any) -> Any:
        t = t.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()

    def call(*args: Any) -> Any:
        return public.call(*args)

    # the cold call (float64) goes through the default backend (inductor); the other
    # dtypes through aot_eager (same Dynamo capture and AOT tracing, no C++ compile)
    counter = Counting(backend_name)
    compiled = torch.compile(call, fullgraph=True, backend=counter)
    other = torch.compile(call, fullgraph=True, backend=Counting("aot_eager"))
    traced: dict[str, list[Any]] = {}
    for dt in DTYPES:
        def run(dt: str = dt) -> None:
            traced[dt] = flatten((compiled if dt == "float64" else other)(*make(dt)))
        guarded(f"torch {public.name} {dt} traced", run)

    def no_recompile() -> None:
        before = counter.graphs
        compiled(*make("float64"))
        if counter.graphs != before:
            FAILURES.append(f"torch {public.name}: an identical second call recompiled")
    guarded(f"torch {public.name} second call", no_recompile)

    for dt, got in traced.items():
        ulps = 1 if (backend_name == "inductor" and public.name in LIBM
                     and dt == "float64") else 0
        guarded(f"torch {public.name} {dt} eager",
                lambda dt=dt, got=got, ulps=ulps: same(
                    f"torch {public.name} {dt}", got, flatten(call(*make(dt))), to_np, ulps))

    # gradient policies: traced forward inside the context, backward inside it too
    def loss(*args: Any) -> Any:
        floats = [o for o in flatten(call(*args)) if o is not None and o.is_floating_point()]
        return sum((o.sum() for o in floats), torch.zeros((), dtype=torch.float64))

    if not any(a not in public.bool_args for a in public.args):
        return
    grad_compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    for policy in policies_for(public):
        def run_policy(policy: GradientPolicy = policy) -> None:
            with gradient_policy(policy):
                args_e = make("float64", grad=True)
                out_e = loss(*args_e)
                if not out_e.requires_grad:  # nothing differentiable (masks only)
                    return
                out_e.backward()
                args_t = make("float64", grad=True)
                grad_compiled(*args_t).backward()
            got = [a.grad for a in args_t if a.is_floating_point()]
            want = [a.grad for a in args_e if a.is_floating_point()]
            same(f"torch {public.name} grad {policy.name}", got, want, to_np)
        guarded(f"torch {public.name} grad {policy.name}", run_policy)


# ---------------------------------------------------------------------------------------
# jax


def jax_case(public: Public) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    base = base_inputs(public)

    def make(dtype: str) -> list[Any]:
        return [jnp.asarray(base[a]) if base[a].dtype == bool
                else jnp.asarray(base[a].astype(np.float64)).astype(getattr(jnp, dtype))
                for a in public.args]

    def to_np(a: Any) -> Any:
        return np.asarray(a.astype(jnp.float32) if a.dtype == jnp.bfloat16 else a)

    def call(*args: Any) -> Any:
        return public.call(*args)

    compiled = jax.jit(call)
    traced: dict[str, list[Any]] = {}
    for dt in DTYPES:
        def run(dt: str = dt) -> None:
            traced[dt] = flatten(compiled(*make(dt)))
        guarded(f"jax {public.name} {dt} traced", run)
    for dt, got in traced.items():
        guarded(f"jax {public.name} {dt} eager",
                lambda dt=dt, got=got: same(f"jax {public.name} {dt}", got,
                                            flatten(call(*make(dt))), to_np))

    float_idx = [i for i, a in enumerate(public.args) if a not in public.bool_args]
    if not float_idx:
        return

    def loss(*args: Any) -> Any:
        floats = [o for o in flatten(call(*args))
                  if o is not None and jnp.issubdtype(o.dtype, jnp.floating)]
        return sum((jnp.sum(o.astype(jnp.float64)) for o in floats), jnp.zeros(()))

    for policy in policies_for(public):
        def run_policy(policy: GradientPolicy = policy) -> None:
            with gradient_policy(policy):
                g = jax.grad(loss, argnums=tuple(float_idx))
                got = jax.jit(g)(*make("float64"))
                want = g(*make("float64"))
            # XLA simplifies a whole jitted gradient differently from the eager one (e.g.
            # 1/sqrt as rsqrt): values within 4 ulp, zeros, signs and NaNs exact
            same(f"jax {public.name} grad {policy.name}", list(got), list(want), to_np,
                 ulps=4)
        guarded(f"jax {public.name} grad {policy.name}", run_policy)


def main(argv: list[str]) -> int:
    frameworks = argv[1].split(",")
    names = argv[2:]
    table = {p.name: p for p in PUBLIC}
    backend_name = os.environ.get("ZPML_COLD_TORCH_BACKEND", "inductor")
    if "jax" in frameworks:
        os.environ.setdefault("JAX_ENABLE_X64", "1")
    for name in names:
        public = table[name]
        if "torch" in frameworks:
            guarded(f"torch {name}", lambda p=public: torch_case(p, backend_name))
        if "jax" in frameworks:
            guarded(f"jax {name}", lambda p=public: jax_case(p))
    for f in FAILURES:
        print("FAIL", f)
    print("DONE", len(FAILURES), "failures", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
