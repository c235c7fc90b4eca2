"""The facts `pipeline decide` judges, read from where they live instead of typed in: the model card of the
version production serves (registry), the feedback store, and Prometheus' drift rule.

Each reader returns a plain value; pipeline/policy.py stays a pure function of them.
"""

from __future__ import annotations

import math
from typing import Any

from monitoring.generate import DRIFT, DRIFT_ALERT_MIN_IMAGES, IMAGES_30M


class SignalError(RuntimeError):
    """A source could not be read; the message names it."""


def production_card(registry: str, alias: str = "production") -> dict[str, Any]:
    from model_registry import Registry

    reg = Registry(registry)
    version = reg.resolve(alias)
    if version is None:
        raise SignalError(f"the registry {registry} has no {alias!r} alias yet: nothing to retrain against")
    return reg.card(version)


def feedback_cutoff(card: dict[str, Any]) -> float:
    """The receive time up to which the card's model already saw feedback (0: it saw none)."""
    versions = card.get("data", {}).get("versions", [])
    return max((float(v["received_to"]) for v in versions if v.get("kind") == "feedback"), default=0.0)


def new_labels(store_url: str, card: dict[str, Any]) -> int:
    """Labelled feedback the store received after the newest feedback the card's model was trained on."""
    from serving.feedback_store import StoreUnavailable, live_records, open_store

    cutoff = feedback_cutoff(card)
    try:
        return sum(1 for r in live_records(open_store(store_url)) if r.received_at > cutoff)
    except (StoreUnavailable, ValueError) as exc:
        raise SignalError(f"cannot read the feedback store: {exc}") from None


def live_drift(
    prometheus_url: str, environment: str = "production", version: str | None = None
) -> float | None:
    """The drift rule's value for what `environment` serves; None when it has too few images to mean anything
    (the alert's own floor) or no value at all."""
    from rollout.prometheus import Prometheus, PrometheusError

    selector = f'environment="{environment}"' + (f',model_version="{version}"' if version else "")
    try:
        with Prometheus(prometheus_url) as prom:
            drift = prom.query(f"{DRIFT}{{{selector}}}")
            images = prom.query(f"{IMAGES_30M}{{{selector}}}")
    except PrometheusError as exc:
        raise SignalError(str(exc)) from None
    seen = {labels.get("model_version"): value for labels, value in images}
    values = [
        v
        for labels, v in drift
        if not math.isnan(v) and seen.get(labels.get("model_version"), 0.0) >= DRIFT_ALERT_MIN_IMAGES
    ]
    return max(values) if values else None
