"""Seeding, device choice and the NaN/inf guard shared by every reproduction."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class NonFiniteError(RuntimeError):
    """Raised when a loss or gradient becomes NaN or infinite: training cannot recover from it."""


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch (every device), ask torch for deterministic algorithms, and return the NumPy
    generator that should drive task sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA and MPS too
    deterministic()
    return np.random.default_rng(seed)


def deterministic() -> None:
    """Deterministic kernels where torch has them (cuDNN convolutions, cuBLAS with a fixed workspace), a warning
    where it has none, so that a run and its resumed twin compute the same numbers on one GPU as on the CPU."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts: before any CUDA work
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def device_rng_states() -> dict:
    """The random states of the accelerators torch sees (for checkpoints): CUDA's per device, MPS's."""
    states = {}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        states["mps"] = torch.mps.get_rng_state()
    return states


def set_device_rng_states(states: dict) -> None:
    """Restore what :func:`device_rng_states` saved, for the devices this machine has."""
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if states.get("mps") is not None and "mps" in available_devices():
        torch.mps.set_rng_state(states["mps"])


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` prefers CUDA, then MPS, then the CPU; asking for an absent device is a clear error."""
    if name not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    if name == "mps" and not mps:
        raise ValueError("--device mps was asked for, but torch sees no Apple MPS device")
    return torch.device(name)


def available_devices() -> list[str]:
    """Every device this machine can run on, the CPU first."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def check_finite(value: float, what: str, iteration: int) -> None:
    if not math.isfinite(value):
        raise NonFiniteError(
            f"{what} became {value} at meta-iteration {iteration}; lower the learning rates or check the data"
        )
