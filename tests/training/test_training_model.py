"""Training is good enough, reproducible, and what is exported is what was trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.card import REQUIRED_FIELDS, REQUIRED_METRICS
from training.config import load_config
from training.evaluate import auto_key_threshold, expected_calibration_error
from training.export import load_torchscript
from training.noise import apply_label_noise
from training.pipeline import run
from training.train import random_shift

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


pytestmark = pytest.mark.slow


def test_reference_config_reaches_097_on_cpu(reference_run):
    card = reference_run.card
    assert card["device"]["type"] == "cpu"
    assert card["metrics"]["accuracy"] >= 0.97, card["metrics"]
    assert card["data"]["split_sizes"] == {"train": 1167, "val": 270, "test": 360}


def test_two_runs_give_identical_metrics_and_weights(reference_run, tmp_path):
    again = run(load_config(CONFIGS / "digits.yaml"), tmp_path)

    def quality(card):  # wall-clock latency is a measurement of the machine, not of the model
        return {k: v for k, v in card["metrics"].items() if k != "latency_ms_per_batch"}

    assert quality(again.card) == quality(reference_run.card)
    assert again.card["training"]["best_epoch"] == reference_run.card["training"]["best_epoch"]
    first, second = reference_run.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_torchscript_predicts_exactly_like_the_in_memory_model(reference_run):
    scripted = load_torchscript(reference_run.artifact_dir / "model.ts")
    with np.load(reference_run.artifact_dir / "test_split.npz") as npz:
        images, labels = npz["images"], npz["labels"]
    # the contract: raw 0..16 float32 pixels in, logits (N, 10) out
    assert images.dtype == np.float32 and images.shape == (360, 8, 8) and images.max() <= 16
    assert labels.dtype == np.int64
    x = torch.from_numpy(images).unsqueeze(1)
    with torch.no_grad():
        eager, script = reference_run.model(x), scripted(x)
    assert script.shape == (360, 10)
    assert torch.equal(eager.argmax(1), script.argmax(1))
    assert torch.allclose(eager, script, atol=1e-5)
    assert float((script.argmax(1).numpy() == labels).mean()) == reference_run.card["metrics"]["accuracy"]


def test_state_dict_rebuilds_the_model(reference_run):
    from training.model import build_model

    model = build_model(reference_run.card["config"]["values"]["model"])
    model.load_state_dict(torch.load(reference_run.artifact_dir / "state_dict.pt"))
    model.eval()
    x = torch.rand(5, 1, 8, 8) * 16
    with torch.no_grad():
        assert torch.equal(model(x), reference_run.model(x))


def test_card_has_the_contract_fields(reference_run):
    card = json.loads((reference_run.artifact_dir / "card.json").read_text())
    assert set(REQUIRED_FIELDS) <= set(card)
    assert set(REQUIRED_METRICS) <= set(card["metrics"])
    assert card["config"]["name"] == "digits" and card["config"]["values"]["seed"] == 0
    assert len(card["data"]["sha256"]) == 64
    assert len(card["metrics"]["per_class_recall"]) == 10
    assert card["torch_version"] == torch.__version__
    assert card["git_commit"] != ""
    md = (reference_run.artifact_dir / "card.md").read_text()
    assert f"{card['metrics']['accuracy']:.4f}" in md and card["data"]["sha256"] in md
    # the business metric: its threshold was chosen on val, and it kept its promise on test
    assert 0 < card["metrics"]["auto_key_share"] <= 1
    assert card["metrics"]["auto_key_test_precision"] >= 0.98


def test_early_stopping_stops_before_the_epoch_limit(reference_run):
    training = reference_run.card["training"]
    patience = reference_run.card["config"]["values"]["train"]["patience"]
    assert training["epochs_run"] < 60
    assert training["epochs_run"] - training["best_epoch"] == patience


def test_ece_of_known_predictions():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bin 0.9: acc 0.5 vs conf 0.9 → 0.4; bin 0.6: acc 1.0 vs conf 0.6 → 0.4; each half the samples
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.4)


def test_auto_key_threshold_is_the_lowest_meeting_the_precision():
    conf = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, True, True, False, True, False])
    assert auto_key_threshold(conf, correct, 1.0) == 0.9
    assert auto_key_threshold(conf, correct, 0.8) == 0.7
    assert auto_key_threshold(np.array([0.9]), np.array([False]), 0.99) > 1


def test_pair_noise_flips_only_listed_digits_at_about_the_rate():
    labels = np.repeat(np.arange(10), 1000)
    noisy, flipped = apply_label_noise(labels, {"kind": "pairs", "rate": 0.4, "pairs": {"3": 8}}, seed=1)
    changed = noisy != labels
    assert set(labels[changed]) == {3} and set(noisy[changed]) == {8}
    assert flipped == changed.sum() and 350 < flipped < 450


def test_random_shift_moves_pixels_without_wrapping():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 0, 0] = 5
    seen = set()
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        y = random_shift(x, 1, generator)
        assert y.sum() in (0, 5)  # a corner pixel either stays inside or falls off, never wraps around
        seen.add(tuple(torch.nonzero(y[0, 0]).flatten().tolist()))
    assert seen >= {(0, 0), (1, 1), ()}
