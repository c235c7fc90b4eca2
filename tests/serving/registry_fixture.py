"""A small real registry in the layout of docs/contracts.md, written by the tests themselves.

Until training's registry writer lands, serving is tested against models trained here: a tiny CNN on
scikit-learn's 8x8 digits, a few seconds on CPU, exported as TorchScript with its normalisation inside.
"""

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = x / 16.0  # the registry contract: raw pixels 0..16 in, normalisation inside the model
        return self.head(self.conv(x).flatten(1))


def _train(x_train, y_train, seed: int, epochs: int) -> nn.Module:
    torch.manual_seed(seed)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.from_numpy(x_train).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(y_train)
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
    return model.eval()


def write_registry(root: Path, versions=(("v1", 0, 3), ("v2", 1, 6)), aliases=None) -> Path:
    """Train one model per (version, seed, epochs) and register them; returns root."""
    digits = load_digits()
    images = digits.images.astype(np.float32)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(images, labels, test_size=0.2, random_state=0)
    index = {
        "versions": {},
        "aliases": {"staging": None, "canary": None, "production": None, "previous": None},
    }
    for version, seed, epochs in versions:
        model = _train(x_train, y_train, seed, epochs)
        with torch.no_grad():
            pred = model(torch.from_numpy(x_test).reshape(-1, 1, 8, 8)).argmax(1).numpy()
        accuracy = float((pred == y_test).mean())
        vdir = root / "versions" / version
        vdir.mkdir(parents=True)
        torch.jit.script(model).save(str(vdir / "model.ts"))
        torch.save(model.state_dict(), vdir / "state_dict.pt")
        np.savez(vdir / "test_split.npz", images=x_test, labels=y_test)
        card = {
            "version": version,
            "created": dt.datetime.now(dt.UTC).isoformat(),
            "config": {"name": "tiny-cnn-test", "values": {"seed": seed, "epochs": epochs}},
            "data": {
                "sha256": hashlib.sha256(images.tobytes()).hexdigest(),
                "train": len(y_train),
                "test": len(y_test),
            },
            "metrics": {"accuracy": accuracy, "macro_f1": None, "ece": None},
            "device": "cpu",
            "torch_version": torch.__version__,
            "git_commit": None,
        }
        (vdir / "card.json").write_text(json.dumps(card))
        (vdir / "card.md").write_text(f"# {version}\n\naccuracy {accuracy:.3f}\n")
        index["versions"][version] = {"accuracy": accuracy, "created": card["created"]}
    index["aliases"].update(aliases or {"production": "v1", "canary": "v2", "staging": "v2"})
    (root / "index.json").write_text(json.dumps(index))
    return root
