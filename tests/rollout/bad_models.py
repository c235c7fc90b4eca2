"""Candidates that are genuinely bad in one way each, built from a good registered model (TorchScript):
one that fails a share of its batches, one that is slow, one that predicts the wrong class, one that crashes
on every real image."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from model_registry import Registry


class Erroring(nn.Module):
    def __init__(self, inner: torch.jit.ScriptModule, share: float):
        super().__init__()
        self.inner = inner
        self.share = share

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The start check's all-zero image always passes: failing it a share of the time failed the replica's
        # start, and three in a row (1.6 % per deploy) failed the canary's deployment before any traffic.
        if bool((x > 0).any()) and bool(torch.rand(1) < self.share):
            raise RuntimeError("injected fault: this candidate fails a share of its batches")
        return self.inner(x)


class Crashing(nn.Module):
    def __init__(self, inner: torch.jit.ScriptModule):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The start check's all-zero image passes; any real digit raises: it loads, then fails on live
        # traffic.
        if bool((x > 0).any()):
            raise RuntimeError("injected fault: this candidate crashes on every real image")
        return self.inner(x)


class Slow(nn.Module):
    def __init__(self, inner: torch.jit.ScriptModule, rounds: int):
        super().__init__()
        self.inner = inner
        self.rounds = rounds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.ones(256, 256)
        for _ in range(self.rounds):
            a = torch.tanh(a @ a / 256.0)
        return self.inner(x) + 0.0 * a.sum()


class Inaccurate(nn.Module):
    def __init__(self, inner: torch.jit.ScriptModule):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Confidently predicts the next class: same class distribution, accuracy ~0.
        return torch.roll(self.inner(x), 1, 1)


def add_variant(root: Path, base: str, wrap) -> str:
    """Register `wrap(base model)` through the real writer, with the base's card, test split and an honest
    config name; returns the version the registry gave it."""
    registry = Registry(root)
    with tempfile.TemporaryDirectory(prefix="chiops-variant-") as tmp:
        art = Path(tmp)
        for name in ("state_dict.pt", "test_split.npz"):
            (art / name).write_bytes(registry.read_file(base, name))
        inner = torch.jit.load(io.BytesIO(registry.model_bytes(base)))
        torch.jit.script(wrap(inner)).save(str(art / "model.ts"))
        card = registry.card(base)
        # The base's training values stay (the variant is that model, wrapped); only the name says what it is.
        card["config"] = {
            **card["config"],
            "name": f"{base}-{wrap.__name__ if hasattr(wrap, '__name__') else 'variant'}",
        }
        (art / "card.json").write_text(json.dumps(card))
        return registry.register(art, None)[0]
