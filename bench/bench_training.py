"""Training throughput and batch inference latency of the reference digits CNN on this machine.

Absolute numbers depend on the machine and its load; the ratios (TorchScript vs eager, batch sizes) are
measured within this one run, interleaved, so they are comparable.
Run: `make bench` or `PYTHONPATH=. python bench/bench_training.py`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import load_config
from training.export import export_model, load_torchscript
from training.model import build_model
from training.pipeline import validated_splits
from training.train import fit, set_determinism

CONFIG = Path(__file__).resolve().parents[1] / "training" / "configs" / "digits.yaml"
EPOCHS = 8
BATCHES = (1, 64, 512)
ROUNDS = 5
CALLS = 40


def median_ms(model: torch.nn.Module, x: torch.Tensor) -> float:
    times = []
    with torch.no_grad():
        for _ in range(CALLS):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def main() -> None:
    config = load_config(CONFIG, [f"train.epochs={EPOCHS}", f"train.patience={EPOCHS + 1}"])
    _, splits, _ = validated_splits(config)
    set_determinism(config["seed"], config["train"]["threads"])
    device = torch.device("cpu")
    model = build_model(config["model"])
    model.set_normalisation(splits.train.images.mean(), splits.train.images.std())
    result = fit(model, splits.train, splits.val, config["train"], device, config["seed"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device cpu")
    print(
        f"training: {result.samples_seen} samples in {result.seconds:.2f} s over {result.epochs_run} epochs "
        f"= {result.samples_per_second:,.0f} samples/s (batch {config['train']['batch_size']}, "
        "includes val passes)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        export_model(model, Path(tmp))
        scripted = load_torchscript(Path(tmp) / "model.ts")
    model.eval()
    print(f"{'batch':>6} {'eager ms':>9} {'script ms':>10} {'script/eager':>13} {'images/s (script)':>18}")
    for batch in BATCHES:
        x = torch.rand(batch, 1, 8, 8) * 16
        eager, script = [], []
        for _ in range(ROUNDS):  # interleaved rounds, so load changes hit both alike
            eager.append(median_ms(model, x))
            script.append(median_ms(scripted, x))
        e, s = float(np.median(eager)), float(np.median(script))
        print(f"{batch:>6} {e:>9.3f} {s:>10.3f} {s / e:>13.2f} {batch / s * 1000:>18,.0f}")


if __name__ == "__main__":
    main()
