"""Service metrics created with ray.serve.metrics inside replicas, all labelled environment + model_version.

prometheus_client objects would not be exported from a replica (the deployment class is pickled by value, so a
module-level collector is a detached copy); Ray's metrics are. set_default_tags keeps the dict it is given, so
every metric gets a dict of its own.
"""

import time

from ray.serve import metrics

from serving import metric_names as names

CONFIDENCE_BOUNDARIES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]


class ServiceMetrics:
    def __init__(self, environment: str):
        self.environment = environment
        common = names.COMMON_LABELS
        self.requests = metrics.Counter(
            names.BASE_REQUESTS,
            description="HTTP requests by route and status code.",
            tag_keys=(*common, names.ROUTE, names.STATUS),
        )
        self.latency = metrics.Histogram(
            names.BASE_REQUEST_LATENCY_MS,
            description="Time to answer a request inside the service, in milliseconds.",
            boundaries=names.LATENCY_BOUNDARIES_MS,
            tag_keys=(*common, names.ROUTE),
        )
        self.predictions = metrics.Counter(
            names.BASE_PREDICTIONS,
            description="Predicted images by predicted class.",
            tag_keys=(*common, names.PREDICTED_CLASS),
        )
        self.confidence = metrics.Histogram(
            names.BASE_CONFIDENCE,
            description="Probability of the predicted class.",
            boundaries=CONFIDENCE_BOUNDARIES,
            tag_keys=common,
        )
        self.feedback = metrics.Counter(
            names.BASE_FEEDBACK, description="Ground-truth labels received.", tag_keys=common
        )
        self.feedback_correct = metrics.Counter(
            names.BASE_FEEDBACK_CORRECT,
            description="Ground-truth labels that matched the prediction.",
            tag_keys=common,
        )

    def _tags(self, model_version: str, environment: str | None = None, **extra: str) -> dict:
        return {
            names.ENVIRONMENT: environment or self.environment,
            names.MODEL_VERSION: model_version,
            **extra,
        }

    def request(
        self, model_version: str, route: str, status: int, latency_ms: float, environment: str | None = None
    ) -> None:
        """``environment`` overrides this replica's own, e.g. the router counting a canary call that
        failed."""
        self.requests.inc(1, tags=self._tags(model_version, environment, route=route, status=str(status)))
        self.latency.observe(latency_ms, tags=self._tags(model_version, environment, route=route))

    def predicted(
        self, model_version: str, classes: list[int], confidences: list[float], environment: str | None = None
    ) -> None:
        counts: dict[int, int] = {}
        for c in classes:
            counts[c] = counts.get(c, 0) + 1
        for c, n in counts.items():
            self.predictions.inc(n, tags=self._tags(model_version, environment, predicted_class=str(c)))
        for p in confidences:
            self.confidence.observe(p, tags=self._tags(model_version, environment))

    def feedback_received(self, environment: str, model_version: str, correct: bool) -> None:
        self.feedback.inc(1, tags=self._tags(model_version, environment))
        if correct:  # Ray counters refuse inc(0)
            self.feedback_correct.inc(1, tags=self._tags(model_version, environment))


class DriftMetrics:
    """The input-drift pair of one served version (serving/drift.py), created where the model runs."""

    # Ray stops exporting a gauge that is not set again (Ray 2.60: set once at replica start, it was gone from
    # Prometheus within two minutes), so the reference is set again while images arrive.
    REFRESH_S = 5.0

    def __init__(self, environment: str, model_version: str, profile):
        self._tags = {names.ENVIRONMENT: environment, names.MODEL_VERSION: model_version}
        self.profile = profile
        self.images = metrics.Counter(
            names.BASE_INPUT_INK,
            description="Live images by ink bin (deciles of the model's test split).",
            tag_keys=(*names.COMMON_LABELS, names.BIN),
        )
        self.reference = metrics.Gauge(
            names.BASE_INPUT_REFERENCE,
            description="Share of the model's test split in each ink bin.",
            tag_keys=(*names.COMMON_LABELS, names.BIN),
        )
        self._reference_set = None
        self._set_reference()

    def _set_reference(self) -> None:
        for b, share in enumerate(self.profile.shares):
            self.reference.set(share, tags={**self._tags, names.BIN: str(b)})
        self._reference_set = time.monotonic()

    def observed(self, images) -> None:
        for b, n in self.profile.counts(images).items():
            self.images.inc(n, tags={**self._tags, names.BIN: str(b)})
        if time.monotonic() - self._reference_set >= self.REFRESH_S:
            self._set_reference()
