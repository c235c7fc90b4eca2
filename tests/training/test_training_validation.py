"""Validation rejects each kind of bad input before training, with a message naming the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from training.cli import main
from training.config import load_config, validate_config
from training.data import content_hash, ingest
from training.errors import ConfigError, DataError
from training.pipeline import validated_splits
from training.validate import check_leakage


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    return bunch.images.copy(), bunch.target.copy()


def config_for(path) -> dict:
    return validate_config({"name": "t", "data": {"source": str(path)}})


def write_npz(tmp_path, images, labels, name="data.npz"):
    path = tmp_path / name
    np.savez(path, images=images, labels=labels)
    return path


def rejected(tmp_path, images, labels, **data_options) -> str:
    config = config_for(write_npz(tmp_path, images, labels))
    config["data"].update(data_options)
    with pytest.raises(DataError) as err:
        validated_splits(config)
    return str(err.value)


def test_clean_bundled_data_passes(digits):
    _, splits, report = validated_splits(validate_config({"name": "t"}))
    assert report.ok, report.to_text()
    assert [c.name for c in report.checks] == [
        "shape",
        "finite",
        "value_range",
        "label_set",
        "class_balance",
        "duplicates",
        "leakage",
    ]
    assert sum(splits.sizes().values()) == len(digits[1])


def test_wrong_image_shape(tmp_path, digits):
    images, labels = digits
    msg = rejected(tmp_path, images[:, :7, :7], labels)
    assert "[FAIL] shape" in msg and "(N, 8, 8)" in msg and "(1797, 7, 7)" in msg


def test_labels_and_images_disagree_in_length(tmp_path, digits):
    images, labels = digits
    msg = rejected(tmp_path, images, labels[:-5])
    assert "1797 images but 1792 labels" in msg


def test_nan_and_inf(tmp_path, digits):
    images, labels = digits[0].copy(), digits[1]
    images[3, 2, 2] = np.nan
    images[7, 0, 0] = np.inf
    msg = rejected(tmp_path, images, labels)
    assert "[FAIL] finite" in msg and "2 images" in msg and "NaN" in msg


def test_value_out_of_range(tmp_path, digits):
    images, labels = digits[0].copy(), digits[1]
    images[0, 4, 4] = 17
    images[1, 4, 4] = -1
    msg = rejected(tmp_path, images, labels)
    assert "[FAIL] value_range" in msg and "0..16" in msg and "2 outside" in msg


def test_pixels_scaled_to_0_255_are_caught(tmp_path, digits):
    images, labels = digits
    msg = rejected(tmp_path, images * 16, labels)
    assert "[FAIL] value_range" in msg and "max 256" in msg


def test_label_outside_the_label_set(tmp_path, digits):
    images, labels = digits[0], digits[1].copy()
    labels[10] = 11
    msg = rejected(tmp_path, images, labels)
    assert "[FAIL] label_set" in msg and "outside the label set" in msg and "11" in msg


def test_non_integer_label(tmp_path, digits):
    images, labels = digits[0], digits[1].astype(float)
    labels[5] = 2.5
    msg = rejected(tmp_path, images, labels)
    assert "[FAIL] label_set" in msg and "1 labels are not integers" in msg


def test_missing_digit(tmp_path, digits):
    images, labels = digits
    keep = labels != 4
    msg = rejected(tmp_path, images[keep], labels[keep])
    assert "[FAIL] label_set" in msg and "digits with no sample: [4]" in msg


def test_class_imbalance(tmp_path, digits):
    images, labels = digits
    threes = np.flatnonzero(labels == 3)
    keep = np.ones(len(labels), bool)
    keep[threes[30:]] = False  # 30 threes against ~180 of every other digit
    msg = rejected(tmp_path, images[keep], labels[keep])
    assert "[FAIL] class_balance" in msg and "6.1x the smallest" in msg and "allowed 3x" in msg


def test_exact_duplicates_fail_by_default_and_can_be_dropped(tmp_path, digits):
    images, labels = digits
    images2 = np.concatenate([images, images[:4]])
    labels2 = np.concatenate([labels, labels[:4]])
    msg = rejected(tmp_path, images2, labels2)
    assert "[FAIL] duplicates" in msg and "4 extra copies" in msg
    config = config_for(write_npz(tmp_path, images2, labels2, "dups.npz"))
    config["data"]["duplicates"] = "drop"
    clean, splits, report = validated_splits(config)
    assert report.ok and len(clean) == len(labels) and sum(splits.sizes().values()) == len(labels)


def test_duplicates_with_conflicting_labels_fail_even_when_dropping(tmp_path, digits):
    images, labels = digits
    images2 = np.concatenate([images, images[:1]])
    labels2 = np.concatenate([labels, [(labels[0] + 1) % 10]])
    msg = rejected(tmp_path, images2, labels2, duplicates="drop")
    assert "different labels" in msg


def test_leakage_between_splits(digits):
    images = digits[0].astype(np.float32)
    check = check_leakage(
        {"train": images[:100], "val": images[100:150], "test": np.concatenate([images[150:200], images[:3]])}
    )
    assert not check.ok and "leakage" in check.message and "3 images in both train/test" in check.message
    assert check_leakage({"train": images[:100], "test": images[100:200]}).ok


def test_csv_ingest_matches_npz_and_hash_tracks_content(tmp_path, digits):
    images, labels = digits
    rows = np.column_stack([images.reshape(len(images), -1), labels])
    csv = tmp_path / "digits.csv"
    csv.write_text(
        ",".join(f"p{i}" for i in range(64))
        + ",label\n"
        + "\n".join(",".join(f"{v:g}" for v in r) for r in rows)
    )
    from_csv = ingest(str(csv))
    from_npz = ingest(str(write_npz(tmp_path, images, labels)))
    assert from_csv.images.shape == (1797, 8, 8)
    assert from_csv.sha256 == from_npz.sha256 == ingest("sklearn-digits").sha256
    changed = images.copy()
    changed[0, 0, 0] += 1
    assert content_hash(changed, labels) != from_npz.sha256


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ingest(str(tmp_path / "nope.npz"))
    bad = tmp_path / "x.npz"
    np.savez(bad, pixels=np.zeros((2, 8, 8)))
    with pytest.raises(DataError, match="missing \\['images', 'labels'\\]"):
        ingest(str(bad))


def test_cli_validate_exits_2_and_names_the_problem(tmp_path, digits, capsys):
    images, labels = digits[0].copy(), digits[1]
    images[0, 0, 0] = np.nan
    data = write_npz(tmp_path, images, labels)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: bad\ndata:\n  source: {data}\n")
    assert main(["validate", "--config", str(cfg)]) == 2
    assert "NaN" in capsys.readouterr().err


def test_bad_config_is_rejected_naming_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\ntrain:\n  epochz: 3\n  lr: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "epochz" in str(err.value) and "train.lr" in str(err.value)
    assert main(["validate", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_cli_ingest_and_split(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    assert main(["ingest", "--config", str(cfg)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] == 1797 and out["sha256"] == ingest("sklearn-digits").sha256
    assert main(["split", "--config", str(cfg), "--output", str(tmp_path / "s")]) == 0
    sizes = {}
    for name in ("train", "val", "test"):
        with np.load(tmp_path / "s" / f"{name}.npz") as npz:
            sizes[name] = len(npz["labels"])
            assert npz["images"].dtype == np.float32 and npz["labels"].dtype == np.int64
    assert sizes == json.loads(capsys.readouterr().out)["sizes"] == {"train": 1167, "val": 270, "test": 360}
