"""Staging checks of a candidate served in the staging app: smoke tests, offline evaluation on the model
card's test split through the real endpoint, champion/challenger against production on that same split, and a
short load test against the latency SLO.

Every threshold comes from the caller (the inventory / strategy). Nothing here reads a threshold from the
candidate's card or config: the card gives only the accuracy it claims (checked, never trusted), so a lenient
registration gate in a training config (training/configs/digits_noisy.yaml) cannot loosen these checks.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from model_registry import Registry

BATCH = 64
LOAD_BATCH = 8


def _check(name: str, passed: bool, measured: dict, threshold: dict, reason: str) -> dict[str, Any]:
    return {"name": name, "passed": passed, "measured": measured, "threshold": threshold, "reason": reason}


def smoke(client: httpx.Client, url: str, model_version: str, image: list, label: int) -> dict[str, Any]:
    problems = []
    health = client.get(f"{url}/healthz")
    if health.status_code != 200 or health.json().get("model_version") != model_version:
        problems.append(f"/healthz answered {health.status_code} {health.text[:120]}")
    version = client.get(f"{url}/version")
    if version.status_code != 200 or version.json().get("model_version") != model_version:
        problems.append(f"/version answered {version.status_code} {version.text[:120]}")
    predicted = client.post(f"{url}/predict", json={"images": [image]})
    prediction_id = None
    if predicted.status_code != 200:
        problems.append(f"/predict answered {predicted.status_code} {predicted.text[:120]}")
    else:
        prediction_id = predicted.json()["predictions"][0]["prediction_id"]
    bad = client.post(f"{url}/predict", json={"images": "not images"})
    if not 400 <= bad.status_code < 500:
        problems.append(f"/predict with a malformed body answered {bad.status_code}, expected a 4xx")
    if prediction_id is not None:
        # with the image, as a service that keeps feedback requires (a staging record never becomes data)
        feedback = client.post(
            f"{url}/feedback", json={"prediction_id": prediction_id, "label": label, "image": image}
        )
        if feedback.status_code != 200:
            problems.append(f"/feedback answered {feedback.status_code} {feedback.text[:120]}")
    return _check(
        "smoke",
        not problems,
        {"problems": len(problems)},
        {"problems": 0},
        "; ".join(problems)
        if problems
        else "healthz, version, predict, malformed body (4xx) and feedback behave",
    )


class ScoringError(RuntimeError):
    pass


def served_accuracy(client: httpx.Client, url: str, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of whatever `url` serves on (images, labels), through its /predict."""
    correct = 0
    for start in range(0, len(images), BATCH):
        batch = images[start : start + BATCH]
        response = client.post(f"{url}/predict", json={"images": batch.tolist()})
        if response.status_code != 200:
            raise ScoringError(f"{url}/predict failed: {response.status_code} {response.text[:120]}")
        predicted = [p["class"] for p in response.json()["predictions"]]
        correct += int(np.sum(np.asarray(predicted) == labels[start : start + BATCH]))
    return correct / len(labels)


def offline_eval(
    client: httpx.Client,
    url: str,
    images: np.ndarray,
    labels: np.ndarray,
    card_accuracy: float,
    min_accuracy: float,
    tolerance: float,
) -> dict[str, Any]:
    try:
        accuracy = served_accuracy(client, url, images, labels)
    except ScoringError as exc:
        return _check("offline_eval", False, {}, {"status": 200}, f"during evaluation: {exc}")
    measured = {
        "accuracy": round(accuracy, 4),
        "card_accuracy": round(card_accuracy, 4),
        "samples": len(labels),
    }
    threshold = {"min_accuracy": min_accuracy, "max_gap_to_card": tolerance}
    if abs(accuracy - card_accuracy) > tolerance:
        return _check(
            "offline_eval",
            False,
            measured,
            threshold,
            f"served accuracy {accuracy:.4f} differs from the card's {card_accuracy:.4f} by more than "
            f"{tolerance}: the deployment does not serve the registered model faithfully",
        )
    if accuracy < min_accuracy:
        return _check(
            "offline_eval",
            False,
            measured,
            threshold,
            f"accuracy {accuracy:.4f} on the card's test split is below {min_accuracy}",
        )
    return _check(
        "offline_eval",
        True,
        measured,
        threshold,
        f"accuracy {accuracy:.4f} on {len(labels)} test images matches the card and is >= {min_accuracy}",
    )


def champion_verdict(
    candidate: str,
    candidate_accuracy: float,
    champion: str,
    champion_accuracy: float,
    samples: int,
    tolerance: float,
) -> dict[str, Any]:
    """Champion/challenger on one test split: the candidate may be at most `tolerance` (accuracy) below
    production. The split is fixed, not sampled, so this is a plain comparison of two measured numbers."""
    drop = champion_accuracy - candidate_accuracy
    measured = {
        "candidate_accuracy": round(candidate_accuracy, 4),
        "champion": champion,
        "champion_accuracy": round(champion_accuracy, 4),
        "samples": samples,
    }
    threshold = {"max_drop_to_champion": tolerance}
    if drop > tolerance + 1e-12:
        return _check(
            "champion",
            False,
            measured,
            threshold,
            f"{candidate} scores {candidate_accuracy:.4f} on its test split ({samples} images), "
            f"{drop:.4f} below production {champion}'s {champion_accuracy:.4f} (allowed {tolerance})",
        )
    return _check(
        "champion",
        True,
        measured,
        threshold,
        f"{candidate} {candidate_accuracy:.4f} vs production {champion} {champion_accuracy:.4f} on the same "
        f"{samples} images: within {tolerance}",
    )


def champion_check(
    client: httpx.Client,
    champion_url: str | None,
    champion: str,
    candidate: str,
    candidate_accuracy: float,
    images: np.ndarray,
    labels: np.ndarray,
    tolerance: float,
) -> dict[str, Any]:
    """Score production, as served, on the candidate's test split and compare (champion_verdict)."""
    threshold = {"max_drop_to_champion": tolerance}
    if not champion_url:
        return _check(
            "champion",
            False,
            {"champion": champion},
            threshold,
            f"production serves {champion} but no production URL was given to score it on {candidate}'s "
            "test split",
        )
    version = client.get(f"{champion_url}/version")
    served = version.json().get("model_version") if version.status_code == 200 else None
    if served != champion:
        return _check(
            "champion",
            False,
            {"champion": champion, "served": served},
            threshold,
            f"{champion_url}/version answered {version.status_code} {version.text[:120]}, not production's "
            f"{champion}: refusing to compare with the wrong model",
        )
    try:
        accuracy = served_accuracy(client, champion_url, images, labels)
    except ScoringError as exc:
        return _check("champion", False, {"champion": champion}, threshold, f"scoring production: {exc}")
    return champion_verdict(candidate, candidate_accuracy, champion, accuracy, len(labels), tolerance)


def load_test(
    url: str, images: np.ndarray, seconds: float, concurrency: int, slo_p99_ms: float
) -> dict[str, Any]:
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline:
                batch = images[rng.integers(0, len(images), LOAD_BATCH)].tolist()
                started = time.perf_counter()
                try:
                    status = client.post(f"{url}/predict", json={"images": batch}).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    if status == 200:
                        latencies.append(elapsed)
                    else:
                        failures.append(str(status))

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    total = len(latencies) + len(failures)
    p99 = float(np.percentile(latencies, 99)) if latencies else math.inf
    measured = {
        "requests": total,
        "failed": len(failures),
        "p99_ms": round(p99, 1),
        "rps": round(total / seconds, 1),
    }
    threshold = {"max_p99_ms": slo_p99_ms, "failed": 0}
    passed = total > 0 and not failures and p99 <= slo_p99_ms
    if passed:
        reason = (
            f"{total} requests at concurrency {concurrency}: p99 {p99:.1f} ms <= {slo_p99_ms} ms, 0 failed"
        )
    elif failures:
        reason = f"{len(failures)} of {total} requests failed (e.g. {failures[0]})"
    else:
        reason = f"p99 {p99:.1f} ms over {total} requests exceeds the SLO of {slo_p99_ms} ms"
    return _check("load_test", passed, measured, threshold, reason)


def run(
    url: str,
    registry: Path,
    model_version: str,
    slo_p99_ms: float,
    min_accuracy: float,
    card_tolerance: float,
    load_seconds: float,
    concurrency: int,
    champion_url: str | None = None,
    champion_tolerance: float = 0.01,
) -> tuple[bool, dict[str, Any]]:
    """All staging checks; champion_url is production's base URL (e.g. http://127.0.0.1:8010/production).

    The champion is the registry's production alias: when there is one (other than the candidate itself) the
    check runs, and without champion_url it fails rather than being skipped.
    """
    reg = Registry(str(registry))
    images, labels = reg.test_split(model_version)
    card_accuracy = float(reg.card(model_version)["metrics"]["accuracy"])
    champion = reg.alias_target("production")
    url = url.rstrip("/")
    with httpx.Client(timeout=30) as client:
        checks = [smoke(client, url, model_version, images[0].tolist(), int(labels[0]))]
        if checks[0]["passed"]:
            checks.append(
                offline_eval(client, url, images, labels, card_accuracy, min_accuracy, card_tolerance)
            )
        if all(c["passed"] for c in checks) and champion and champion != model_version:
            checks.append(
                champion_check(
                    client,
                    champion_url.rstrip("/") if champion_url else None,
                    champion,
                    model_version,
                    checks[1]["measured"]["accuracy"],
                    images,
                    labels,
                    champion_tolerance,
                )
            )
        if all(c["passed"] for c in checks):
            checks.append(load_test(url, images, load_seconds, concurrency, slo_p99_ms))
    passed = all(c["passed"] for c in checks)
    record = {
        "stage": "staging",
        "model_version": model_version,
        "champion": champion if champion != model_version else None,
        "passed": passed,
        "reasons": [f"{c['name']}: {c['reason']}" for c in checks if not c["passed"]],
        "checks": checks,
    }
    return passed, record
