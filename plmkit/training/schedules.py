"""Learning-rate schedules as pure functions of the optimizer step.

Each factory returns a picklable callable ``step -> multiplier`` for
``torch.optim.lr_scheduler.LambdaLR``: the learning rate of every parameter group is its
base rate times the multiplier. ``step`` counts optimizer steps already taken, so the
first update uses ``f(0)`` (0 during a warmup that starts from zero, as in Hugging Face
transformers and bert4keras).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Mapping

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["warmup_linear", "warmup_cosine", "piecewise_linear", "constant", "lambda_scheduler"]

Schedule = Callable[[int], float]


def _check_steps(warmup_steps: int, total_steps: int) -> None:
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps: expected >= 0, found {warmup_steps}")
    if total_steps < warmup_steps:
        raise ValueError(
            f"total_steps: expected >= warmup_steps ({warmup_steps}), found {total_steps}"
        )


def _warmup_linear_at(step: int, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return step / warmup_steps
    if total_steps == warmup_steps:
        return 1.0 if step == warmup_steps else 0.0
    return max(0.0, (total_steps - step) / (total_steps - warmup_steps))


def _warmup_cosine_at(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    if step < warmup_steps:
        return step / warmup_steps
    if total_steps == warmup_steps:
        return 1.0 if step == warmup_steps else min_ratio
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _piecewise_linear_at(step: int, points: tuple[tuple[int, float], ...]) -> float:
    if step <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        if step <= t1:
            return v0 + (v1 - v0) * (step - t0) / (t1 - t0)
    return points[-1][1]


def _constant_at(step: int) -> float:
    return 1.0


def warmup_linear(warmup_steps: int, total_steps: int) -> Schedule:
    """0 → 1 linearly over ``warmup_steps``, then 1 → 0 linearly at ``total_steps``."""
    _check_steps(warmup_steps, total_steps)
    return partial(_warmup_linear_at, warmup_steps=warmup_steps, total_steps=total_steps)


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> Schedule:
    """0 → 1 linearly over ``warmup_steps``, then a half cosine down to ``min_ratio``."""
    _check_steps(warmup_steps, total_steps)
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio: expected a value in [0, 1], found {min_ratio}")
    return partial(
        _warmup_cosine_at, warmup_steps=warmup_steps, total_steps=total_steps, min_ratio=min_ratio
    )


def piecewise_linear(schedule: Mapping[int, float], from_zero: bool = True) -> Schedule:
    """bert4keras-style piecewise linear multiplier through ``{step: multiplier}`` points.

    Linear between consecutive points, constant after the last one and (when the first
    point is not at 0 and ``from_zero`` is False) constant before the first one. With
    ``from_zero`` (the default) a point ``(0, 0.0)`` is added when step 0 is not given,
    so ``{1000: 1.0, 2000: 0.1}`` warms up over 1000 steps and decays to 0.1 by 2000.
    """
    if not schedule:
        raise ValueError("piecewise_linear: the schedule needs at least one {step: multiplier}")
    points = sorted((int(t), float(v)) for t, v in schedule.items())
    if points[0][0] < 0:
        raise ValueError(f"piecewise_linear: steps must be >= 0, found {points[0][0]}")
    if from_zero and points[0][0] != 0:
        points.insert(0, (0, 0.0))
    return partial(_piecewise_linear_at, points=tuple(points))


def constant() -> Schedule:
    """A multiplier of 1 at every step."""
    return _constant_at


def lambda_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule) -> LambdaLR:
    """``LambdaLR(optimizer, schedule)``: steps once per optimizer step."""
    return LambdaLR(optimizer, schedule)
