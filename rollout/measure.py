"""Fetch one environment's window from Prometheus into a gates.Side; fetch chart series for the report."""

from __future__ import annotations

import math

from rollout import queries
from rollout.gates import Side
from rollout.prometheus import Prometheus


def measure(prom: Prometheus, environment: str, model_version: str, window: str, at: float) -> Side:
    def count(expr: str) -> float:
        return prom.scalar(expr, at, default=0.0) or 0.0

    p99 = prom.scalar(queries.p99_latency_ms(environment, model_version, window), at, default=None)
    buckets = {
        float(labels["le"]): value  # float() reads Prometheus' "+Inf" as math.inf
        for labels, value in prom.query(queries.latency_buckets(environment, model_version, window), at)
        if "le" in labels and not math.isnan(value)
    }
    predictions = {
        labels.get("predicted_class", "?"): value
        for labels, value in prom.query(queries.predictions_by_class(environment, model_version, window), at)
        if not math.isnan(value)
    }
    return Side(
        environment=environment,
        model_version=model_version,
        requests=count(queries.requests(environment, model_version, window)),
        errors=count(queries.errors(environment, model_version, window)),
        p99_latency_ms=p99,
        feedback=count(queries.feedback(environment, model_version, window)),
        feedback_correct=count(queries.feedback_correct(environment, model_version, window)),
        predictions=predictions,
        latency_buckets=buckets,
    )


def series(
    prom: Prometheus,
    environment: str,
    model_version: str,
    start: float,
    end: float,
    step: float = 5.0,
    smoothing: str = "30s",
) -> dict[str, list[tuple[float, float]]]:
    """Error rate, p99 latency (ms) and online accuracy over [start, end] for the report's chart."""
    out: dict[str, list[tuple[float, float]]] = {}
    for name, expr in (
        ("error_rate", queries.error_rate_series(environment, model_version, smoothing)),
        ("p99_latency_ms", queries.p99_series(environment, model_version, smoothing)),
        ("accuracy", queries.accuracy_series(environment, model_version, smoothing)),
    ):
        result = prom.query_range(expr, start, end, step)
        out[name] = [(t, v) for t, v in result[0][1] if not math.isnan(v)] if result else []
    return out
