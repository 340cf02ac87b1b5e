"""Write small checkpoints with zeroproofml 0.6.1's own ``SCMTrainer.save_checkpoint``.

Run with an interpreter that has ``zeroproofml==0.6.1`` and torch installed (not the
project's environment: the project never imports zeroproofml)::

    /path/to/zeroproofml-venv/bin/python tests/data/make_zeroproofml_checkpoints.py

Outputs (committed next to this script, read by ``tests/test_checkpoint_import.py``):

* ``zeroproofml-0.6.1-adam.pt`` — :func:`tiny_model` after 1 epoch of 3 batches with
  ``torch.optim.Adam`` and a ``StepLR`` scheduler: model, optimizer, scheduler, scaler,
  ``rng_state`` and zeroproofml's resume fields (schema 2);
* ``zeroproofml-0.6.1-model-only.pt`` — the pre-schema layout (``model`` / ``optimizer``
  / ``scaler`` only) that zeroproofml still loads;
* ``zeroproofml-0.6.1-pickled.pt`` — the schema-2 file with a ``numpy.float64``
  ``best_metric``: ``torch.load(weights_only=True)`` refuses it (only
  ``load_trusted_checkpoint`` reads it);
* ``zeroproofml-0.6.1-expected.json`` — the parameters, epoch and step written, read
  back in the same interpreter (the independent expectation of the tests).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import torch
from torch import nn
from zeroproofml.losses import implicit_loss
from zeroproofml.training import SCMTrainer, TrainingConfig

HERE = pathlib.Path(__file__).resolve().parent


class TinyRational(nn.Module):
    """``x (3) -> 4 -> (P, Q)``; the test builds the same module."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, q = self.head(torch.tanh(self.hidden(x))).unbind(-1)
        return p, q


def tiny_model() -> TinyRational:
    torch.manual_seed(0)
    return TinyRational()


def loss_fn(outputs: tuple[torch.Tensor, torch.Tensor],
            lifted: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return implicit_loss(outputs[0], outputs[1], lifted[0], lifted[1])


def main() -> None:
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 3, generator=g)
    y = torch.randn(12, generator=g)
    batches = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]
    trainer = SCMTrainer(model, opt, loss_fn, batches, scheduler=sched,
                         config=TrainingConfig(max_epochs=1, scheduler_cadence="per_epoch"))
    trainer.fit()
    trainer.save_checkpoint(str(HERE / "zeroproofml-0.6.1-adam.pt"))
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "scaler": trainer.scaler.state_dict()}, HERE / "zeroproofml-0.6.1-model-only.pt")
    trainer._best_metric = np.float64(0.75)  # what a numpy-computed metric leaves there
    trainer.save_checkpoint(str(HERE / "zeroproofml-0.6.1-pickled.pt"))
    expected = {
        "params": {k: v.tolist() for k, v in model.state_dict().items()},
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "lr": opt.param_groups[0]["lr"],
        "adam_step": float(opt.state_dict()["state"][0]["step"]),
        "zeroproofml": __import__("zeroproofml").__version__,
    }
    (HERE / "zeroproofml-0.6.1-expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
