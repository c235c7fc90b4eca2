"""Evaluation on the test split: quality, calibration, the auto-keying business metric, latency."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score, recall_score

from training.split import Part


@torch.no_grad()
def predict_proba(
    model: torch.nn.Module, images: np.ndarray, device: torch.device, batch: int = 512
) -> np.ndarray:
    x = torch.from_numpy(np.asarray(images, dtype=np.float32)).unsqueeze(1)
    out = [torch.softmax(model(x[i : i + batch].to(device)), dim=1).cpu() for i in range(0, len(x), batch)]
    return torch.cat(out).numpy().astype(np.float64)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins of the top class."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def auto_key_threshold(conf: np.ndarray, correct: np.ndarray, target_precision: float) -> float:
    """Lowest confidence threshold whose accepted set (conf >= t) has precision >= target on these samples.
    Returns a value above 1 (accept nothing) when no threshold reaches the target."""
    order = np.argsort(-conf, kind="stable")
    conf_sorted, correct_sorted = conf[order], correct[order]
    precision = np.cumsum(correct_sorted) / np.arange(1, len(conf) + 1)
    best = None
    for k in range(len(conf)):
        # only cut between distinct confidences: a threshold accepts every sample at or above it
        if k + 1 < len(conf) and conf_sorted[k + 1] == conf_sorted[k]:
            continue
        if precision[k] >= target_precision:
            best = conf_sorted[k]
    return float(best) if best is not None else 1.000001


def quality_metrics(probs: np.ndarray, labels: np.ndarray, ece_bins: int) -> dict[str, Any]:
    pred = probs.argmax(1)
    return {
        "accuracy": float((pred == labels).mean()),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=list(range(10)), zero_division=0)),
        "per_class_recall": [
            float(r)
            for r in recall_score(labels, pred, average=None, labels=list(range(10)), zero_division=0)
        ],
        "ece": expected_calibration_error(probs, labels, ece_bins),
    }


def batch_latency_ms(model: torch.nn.Module, device: torch.device, batch: int, repeats: int) -> float:
    """Median wall time of one forward pass over `batch` images (after warm-up)."""
    x = torch.rand(batch, 1, 8, 8, device=device) * 16
    times = []
    with torch.no_grad():
        for _ in range(3):
            model(x)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def evaluate(
    model: torch.nn.Module, val: Part, test: Part, device: torch.device, eval_config: dict[str, Any]
) -> dict[str, Any]:
    """Test metrics, plus the auto-keying share: the threshold is chosen on val (never on test) as the lowest
    confidence giving >= target precision, then applied to test."""
    model.eval()
    test_probs = predict_proba(model, test.images, device)
    val_probs = predict_proba(model, val.images, device)
    metrics = quality_metrics(test_probs, test.labels, eval_config["ece_bins"])
    threshold = auto_key_threshold(
        val_probs.max(1), val_probs.argmax(1) == val.labels, eval_config["target_precision"]
    )
    accepted = test_probs.max(1) >= threshold
    metrics["auto_key_threshold"] = threshold
    metrics["auto_key_target_precision"] = eval_config["target_precision"]
    metrics["auto_key_share"] = float(accepted.mean())
    metrics["auto_key_test_precision"] = (
        float((test_probs.argmax(1) == test.labels)[accepted].mean()) if accepted.any() else None
    )
    metrics["latency_batch"] = eval_config["latency_batch"]
    metrics["latency_ms_per_batch"] = batch_latency_ms(
        model, device, eval_config["latency_batch"], eval_config["latency_repeats"]
    )
    return metrics
