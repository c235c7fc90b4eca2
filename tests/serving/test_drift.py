"""The input-drift statistic (serving/drift.py) on a registered model's real test split."""

from __future__ import annotations

import numpy as np
import pytest

from model_registry import Registry
from pipeline.policy import Policy
from serving.drift import BINS, InkProfile, tvd


@pytest.fixture(scope="module")
def reference(registry_root) -> np.ndarray:
    return Registry(str(registry_root)).test_split("v1")[0]


def test_the_reference_is_cut_into_tenths_and_matches_itself(reference):
    profile = InkProfile.of(reference)
    assert len(profile.edges) == BINS - 1 and list(profile.edges) == sorted(profile.edges)
    assert sum(profile.shares) == pytest.approx(1.0)
    assert all(0.05 < share < 0.15 for share in profile.shares), profile.shares
    assert tvd(profile, profile.counts(reference)) == pytest.approx(0.0)


def test_traffic_drawn_like_the_reference_stays_below_the_retrain_threshold(reference):
    profile = InkProfile.of(reference)
    draws = reference[np.random.default_rng(0).integers(0, len(reference), 2000)]
    assert tvd(profile, profile.counts(draws)) < 0.1 < Policy().drift_threshold


@pytest.mark.parametrize(
    "shift",
    [
        lambda x: np.clip(x * 1.6, 0, 16),  # thicker, darker strokes
        lambda x: x * 0.6,  # faint scans
        lambda x: 16 - x,  # inverted
    ],
    ids=["thicker", "fainter", "inverted"],
)
def test_shifted_inputs_cross_the_retrain_threshold(reference, shift):
    profile = InkProfile.of(reference)
    assert tvd(profile, profile.counts(shift(reference))) > 2 * Policy().drift_threshold


def test_a_digit_moved_on_its_canvas_keeps_its_ink(reference):
    # The documented blind spot: ink is a sum over pixels, so a translation does not move it.
    profile = InkProfile.of(reference)
    assert tvd(profile, profile.counts(np.roll(reference, 1, axis=2))) == pytest.approx(0.0)


def test_the_distance_is_half_the_sum_of_share_differences():
    profile = InkProfile(edges=tuple(float(e) for e in range(1, BINS)), shares=(0.1,) * BINS)
    # everything in bin 0: |1 - 0.1| + 9 x 0.1 = 1.8, halved
    assert tvd(profile, {0: 40}) == pytest.approx(0.9)
    assert tvd(profile, dict.fromkeys(range(BINS), 3)) == pytest.approx(0.0)


def test_too_little_data_is_refused(reference):
    with pytest.raises(ValueError, match="at least 10 reference images"):
        InkProfile.of(reference[:5])
    with pytest.raises(ValueError, match="no live images"):
        tvd(InkProfile.of(reference), {})
