"""The registration quality gate: measured, not read from the card. Both models are scored from their
TorchScript files on the candidate's test split, so the comparison with production is like for like."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Gate:
    min_accuracy: float | None = None
    max_drop: float | None = None  # how much worse than production (absolute accuracy) is still accepted

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Gate:
        return cls(config["gate"]["min_accuracy"], config["gate"]["max_drop"])

    def __call__(
        self,
        candidate_model: bytes,
        candidate_split: bytes,
        candidate_card: dict[str, Any],
        production: tuple[str, bytes, dict[str, Any]] | None,
    ) -> GateDecision:
        """The registry's gate hook (model_registry.registry.Gate): the registry stays torch-free."""
        return decide(self, candidate_model, candidate_split, candidate_card, production)


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_split(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return npz["images"], npz["labels"]


def scripted_accuracy(model_bytes: bytes, images: np.ndarray, labels: np.ndarray) -> float:
    from training.export import load_torchscript, predict_classes

    return float((predict_classes(load_torchscript(model_bytes), images) == labels).mean())


def decide(
    gate: Gate,
    candidate_model: bytes,
    candidate_split: bytes,
    candidate_card: dict[str, Any],
    production: tuple[str, bytes, dict[str, Any]] | None,
) -> GateDecision:
    images, labels = load_split(candidate_split)
    accuracy = scripted_accuracy(candidate_model, images, labels)
    decision = GateDecision(
        True,
        measured={
            "candidate_accuracy": accuracy,
            "test_images": len(labels),
            "card_accuracy": candidate_card["metrics"]["accuracy"],
        },
        thresholds={"min_accuracy": gate.min_accuracy, "max_drop": gate.max_drop},
    )
    # The card was measured on the training device; a CPU re-score may differ by a borderline image or two.
    if abs(accuracy - candidate_card["metrics"]["accuracy"]) > 0.01:
        decision.reasons.append(
            f"card claims accuracy {candidate_card['metrics']['accuracy']:.4f} "
            f"but model.ts scores {accuracy:.4f} on its own test split: the artifacts do not belong together"
        )
    if gate.min_accuracy is not None and accuracy < gate.min_accuracy:
        decision.reasons.append(f"accuracy {accuracy:.4f} is below the minimum {gate.min_accuracy:.4f}")
    if production is not None:
        version, prod_model, prod_card = production
        prod_accuracy = scripted_accuracy(prod_model, images, labels)
        same_split = prod_card.get("data", {}).get("test_split_sha256") == candidate_card["data"].get(
            "test_split_sha256"
        )
        decision.measured.update(
            {
                "production_version": version,
                "production_accuracy": prod_accuracy,
                "same_split_as_production": same_split,
            }
        )
        if gate.max_drop is not None and prod_accuracy - accuracy > gate.max_drop:
            decision.reasons.append(
                f"accuracy {accuracy:.4f} is {prod_accuracy - accuracy:.4f} below production {version}'s "
                f"{prod_accuracy:.4f} on the same test split ({len(labels)} images); "
                f"allowed drop {gate.max_drop:.4f}"
                + (
                    ""
                    if same_split
                    else " (production was split differently and may have trained on some of these images)"
                )
            )
    decision.passed = not decision.reasons
    return decision
