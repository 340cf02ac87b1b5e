"""Per-epoch loss-weight schedules (semantics §8)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass

from zpml_core import _xp

__all__ = ["LinearRamp", "LossWeightsCurriculum"]


def _check_epoch(name: str, value: object) -> int:
    if _xp.is_bool_scalar(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if int(value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class LinearRamp:
    """``start_value`` up to ``start_epoch``, ``end_value`` from ``end_epoch`` on, linear
    in between. ``end_epoch < start_epoch`` → ``ValueError``.

    ``value(e)`` tests ``e <= start_epoch`` first, so with ``start_epoch == end_epoch == 3``
    the values at epochs 2, 3, 4 are ``start, start, end`` (reference behaviour).
    """

    start_value: float
    end_value: float
    start_epoch: int = 0
    end_epoch: int = 1

    def __post_init__(self) -> None:
        for name in ("start_value", "end_value"):
            if _xp.is_bool_scalar(getattr(self, name)):
                raise TypeError(f"{name} must be a real number, got bool")
            v = _xp.check_real(name, getattr(self, name))
            object.__setattr__(self, name, v)
        s = _check_epoch("start_epoch", self.start_epoch)
        e = _check_epoch("end_epoch", self.end_epoch)
        if e < s:
            raise ValueError(f"end_epoch ({e}) must be >= start_epoch ({s})")
        object.__setattr__(self, "start_epoch", s)
        object.__setattr__(self, "end_epoch", e)

    def value(self, epoch: int) -> float:
        if epoch <= self.start_epoch:
            return self.start_value
        if epoch >= self.end_epoch:
            return self.end_value
        frac = (epoch - self.start_epoch) / (self.end_epoch - self.start_epoch)
        return self.start_value + frac * (self.end_value - self.start_value)

    __call__ = value


class LossWeightsCurriculum:
    """Named :class:`LinearRamp` schedules for loss weights.

    ``weights(epoch, base)`` returns a copy of ``base`` (values as ``float``) with each
    ramp's value written over its key. The trainer passes the result as the
    ``loss_weights=`` keyword of the loss (``TrainingConfig.loss_weights`` is the base).
    """

    def __init__(self, ramps: Mapping[str, LinearRamp]) -> None:
        if not isinstance(ramps, Mapping):
            raise TypeError(f"ramps must be a mapping of name → LinearRamp, got {type(ramps).__name__}")
        for k, r in ramps.items():
            if not isinstance(k, str) or not k:
                raise ValueError(f"ramp names must be non-empty strings, got {k!r}")
            if not isinstance(r, LinearRamp):
                raise TypeError(f"ramps[{k!r}] must be a LinearRamp, got {type(r).__name__}")
        self.ramps: dict[str, LinearRamp] = dict(ramps)

    def weights(self, epoch: int, base: Mapping[str, float] | None = None) -> dict[str, float]:
        out = {str(k): float(v) for k, v in (base or {}).items()}
        for name, ramp in self.ramps.items():
            out[name] = ramp.value(epoch)
        return out

    def identity(self) -> dict[str, dict[str, float | int]]:
        """JSON-safe description (used in the config hash)."""
        return {
            name: {
                "start_value": r.start_value,
                "end_value": r.end_value,
                "start_epoch": r.start_epoch,
                "end_epoch": r.end_epoch,
            }
            for name, r in sorted(self.ramps.items())
        }

    def __repr__(self) -> str:
        return f"LossWeightsCurriculum({self.ramps!r})"
