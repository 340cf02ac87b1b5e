"""Tiny SCMTrainer set-ups shared by the hostile trainer tests (torch and JAX).

``model(backend, wrap=None, seed=0, lr=...)`` builds the README's RationalHead (torch
``nn.Module`` + ``torch.optim.SGD``, or ``rational_head_apply/init`` + ``optax.sgd``);
``wrap(P, Q)`` post-processes its outputs (to build models with odd output shapes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Wrap = Callable[[Any, Any], Any]


def data(n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``x`` of shape (n, 1) and ``y = 1/(x - 0.5)`` of shape (n,) (float32)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    y = (1.0 / (x[:, 0] - 0.5)).astype(np.float32)
    return x, y


def model(backend: str, wrap: Wrap | None = None, *, seed: int = 0, lr: float = 1e-2,
          output_dim: int = 1) -> tuple[Any, Any]:
    if backend == "torch":
        import torch
        from zpml_backends.torch_training import RationalHead

        torch.manual_seed(seed)
        head = RationalHead(1, output_dim)
        if wrap is None:
            m: Any = head
        else:
            class Wrapped(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.head = head

                def forward(self, x: Any) -> Any:
                    return wrap(*self.head(x))

            m = Wrapped()
        return m, torch.optim.SGD(m.parameters(), lr=lr)
    import optax
    from zpml_backends.jax_training import rational_head_apply, rational_head_init

    params = rational_head_init(seed, 1, output_dim)
    if wrap is None:
        apply = rational_head_apply
    else:
        def apply(p: Any, x: Any) -> Any:
            return wrap(*rational_head_apply(p, x))
    return (apply, params), optax.sgd(lr)


def params_np(trainer: Any) -> list[np.ndarray]:
    if trainer.backend == "torch":
        return [p.detach().cpu().numpy().copy() for p in trainer.model.parameters()]
    import jax

    return [np.asarray(a).copy() for a in jax.tree_util.tree_leaves(trainer.params)]


def outputs_np(out: Any) -> Any:
    """Model outputs (a (P, Q) tuple or one array) as float64 numpy arrays."""
    def conv(a: Any) -> np.ndarray:
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        return np.asarray(a, dtype=np.float64)

    if isinstance(out, (tuple, list)):
        return tuple(conv(a) for a in out)
    return conv(out)


def implicit_np(P: np.ndarray, Q: np.ndarray, y: np.ndarray, gamma: float = 1e-9) -> np.ndarray:
    """Elementwise implicit loss from its formula (finite targets: Y_n = y, Y_d = 1)."""
    return (P - Q * y) ** 2 / (Q * Q + P * P * y * y + gamma)
