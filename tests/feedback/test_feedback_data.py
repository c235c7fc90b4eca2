"""Feedback as training data: a snapshot of a real store is reproducible, checked like the reference data, and
a poisoned batch is refused naming the check; a model trained on reference + feedback records both
versions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from serving.feedback_store import Feedback, image_bytes, open_store
from training.config import load_config
from training.errors import DataError
from training.feedback_data import main as snapshot_main
from training.feedback_data import snapshot, write_snapshot
from training.pipeline import validated_splits

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "training" / "configs" / "digits.yaml"


def shifted_digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Real digits moved one pixel right: the kind of new forms feedback brings, none of them a reference
    image."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    rows = rng.choice(len(digits.target), size=n, replace=False)
    return np.roll(digits.images[rows], 1, axis=2), digits.target[rows]


def record(i: int, image: np.ndarray, label: int) -> Feedback:
    return Feedback(
        f"id-{i:05d}", image_bytes(image), label, label, "production", "v1", 1000.0 + i, 2000.0 + i
    )


def fill(url: str, images, labels, start: int = 0) -> None:
    store = open_store(url)
    for i, (im, lb) in enumerate(zip(images, labels, strict=True)):
        assert store.add(record(start + i, im, int(lb)))


@pytest.fixture
def store_url(tmp_path):
    url = f"sqlite:///{tmp_path}/feedback.db"
    fill(url, *shifted_digits(120))
    return url


def config_with(tmp_path: Path, snapshot_path: Path, *params: str) -> dict:
    return load_config(REFERENCE, [f"data.feedback={snapshot_path}", *params])


def test_snapshot_is_a_reproducible_data_version(store_url, tmp_path):
    first, second = snapshot(store_url), snapshot(store_url)
    assert first.dataset.sha256 == second.dataset.sha256
    assert first.provenance["records"] == 120 and first.provenance["model_versions"] == {"v1": 120}
    path = write_snapshot(first, tmp_path / "snap")
    assert write_snapshot(second, tmp_path / "snap") == path
    assert snapshot_main(["--store", store_url, "--out", str(tmp_path / "snap")]) == 0
    assert {p.name for p in (tmp_path / "snap").iterdir()} == {path.name, path.with_suffix(".json").name}
    # one more feedback is another version
    more_images, more_labels = shifted_digits(121)
    fill(store_url, more_images[120:], more_labels[120:], start=500)
    assert snapshot(store_url).dataset.sha256 != first.dataset.sha256

    _, splits, report = validated_splits(config_with(tmp_path, path))
    assert report.ok and splits.feedback["sha256"] == first.dataset.sha256
    assert {c.name for c in report.checks} >= {
        "feedback.leakage",
        "feedback.label_set",
        "train+feedback.class_balance",
    }
    reference = validated_splits(load_config(REFERENCE))[1]
    assert splits.sizes()["train"] == reference.sizes()["train"] + 120
    np.testing.assert_array_equal(splits.test.images, reference.test.images)


def test_an_empty_or_unreachable_store_is_refused(tmp_path):
    with pytest.raises(DataError, match="no live feedback"):
        snapshot(f"sqlite:///{tmp_path}/empty.db")
    # staging's records are the rollout's own checks on test images, never data
    staging = f"sqlite:///{tmp_path}/staging.db"
    images, labels = shifted_digits(3)
    for i, (im, lb) in enumerate(zip(images, labels, strict=True)):
        assert open_store(staging).add(dataclasses.replace(record(i, im, int(lb)), environment="staging"))
    with pytest.raises(DataError, match="no live feedback"):
        snapshot(staging)
    with pytest.raises(DataError, match="cannot read"):
        snapshot(f"sqlite:///{tmp_path}/missing-dir/x.db")
    assert snapshot_main(["--store", f"sqlite:///{tmp_path}/empty.db", "--out", str(tmp_path)]) == 1


def _poisoned(tmp_path: Path, name: str, images, labels) -> Path:
    url = f"sqlite:///{tmp_path}/{name}.db"
    clean_images, clean_labels = shifted_digits(60)
    fill(url, clean_images, clean_labels)
    fill(url, images, labels, start=1000)
    return write_snapshot(snapshot(url), tmp_path / name)


@pytest.mark.parametrize(
    "name, check, message",
    [
        ("labels", "feedback.label_set", "outside the label set"),
        ("pixels", "feedback.value_range", "pixel values must lie in 0..16"),
        ("duplicates", "feedback.duplicates", "exact-duplicate images with different labels"),
        ("leak", "feedback.leakage", "in both test/feedback"),
    ],
)
def test_a_poisoned_batch_is_rejected_naming_the_check(tmp_path, name, check, message):
    images, labels = shifted_digits(65)
    images, labels = images[60:].copy(), labels[60:].copy()
    if name == "labels":
        labels[:] = 12
    elif name == "pixels":
        images[:, 0, 0] = 40.0
    elif name == "duplicates":
        images[1], labels[1] = images[0], (labels[0] + 1) % 10
    else:
        reference = validated_splits(load_config(REFERENCE))[1]
        images[:] = reference.test.images[:5]
        labels[:] = reference.test.labels[:5]
    path = _poisoned(tmp_path, name, images, labels)
    with pytest.raises(DataError) as info:
        validated_splits(config_with(tmp_path, path))
    failed = [line for line in str(info.value).splitlines() if line.startswith("[FAIL]")]
    assert len(failed) == 1 and failed[0].startswith(f"[FAIL] {check}:") and message in failed[0], failed


@pytest.mark.slow
def test_training_on_reference_plus_feedback_records_both_data_versions(store_url, tmp_path):
    from training.pipeline import run

    snap = write_snapshot(snapshot(store_url), tmp_path / "snap")
    result = run(config_with(tmp_path, snap, "train.epochs=1"), tmp_path / "run")
    versions = result.card["data"]["versions"]
    assert [v["kind"] for v in versions] == ["reference", "feedback"]
    assert versions[1]["sha256"] == snapshot(store_url).dataset.sha256 and versions[1]["records"] == 120
    assert result.card["data"]["split_sizes"]["train"] > 120
    card_md = (tmp_path / "run" / "card.md").read_text()
    assert versions[1]["sha256"] in card_md and "120 feedback records" in card_md
    # pipeline decide counts only what arrived after the newest feedback this model saw
    from pipeline.signals import feedback_cutoff, new_labels

    assert feedback_cutoff(result.card) == 2000.0 + 119
    assert new_labels(store_url, result.card) == 0
    images, labels = shifted_digits(150)
    fill(store_url, images[120:], labels[120:], start=120)
    assert new_labels(store_url, result.card) == 30
