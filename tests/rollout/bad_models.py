"""Candidates that are genuinely bad in one way each, built from a good registered model (TorchScript):
one that fails a share of its batches, one that is slow, one that predicts the wrong class."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn


class Erroring(nn.Module):
    def __init__(self, inner: torch.jit.ScriptModule, share: float):
        super().__init__()
        self.inner = inner
        self.share = share

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(torch.rand(1) < self.share):
            raise RuntimeError("injected fault: this candidate fails a share of its batches")
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


def add_variant(root: Path, base: str, version: str, wrap) -> None:
    """Register `wrap(base model)` as `version`, with the base's card, test split and an honest config name."""
    src, dst = root / "versions" / base, root / "versions" / version
    shutil.copytree(src, dst)
    inner = torch.jit.load(str(src / "model.ts"))
    torch.jit.script(wrap(inner)).save(str(dst / "model.ts"))
    card = json.loads((src / "card.json").read_text())
    card["version"] = version
    card["config"] = {
        "name": f"{base}-{wrap.__name__ if hasattr(wrap, '__name__') else 'variant'}",
        "values": {},
    }
    (dst / "card.json").write_text(json.dumps(card))
    index = json.loads((root / "index.json").read_text())
    index["versions"][version] = dict(index["versions"][base])
    (root / "index.json").write_text(json.dumps(index))
