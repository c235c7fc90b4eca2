"""Service metrics created with ray.serve.metrics inside replicas, all labelled environment + model_version.

prometheus_client objects would not be exported from a replica (the deployment class is pickled by value, so a
module-level collector is a detached copy); Ray's metrics are. set_default_tags keeps the dict it is given, so
every metric gets a dict of its own.
"""

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

    def request(self, model_version: str, route: str, status: int, latency_ms: float) -> None:
        self.requests.inc(1, tags=self._tags(model_version, route=route, status=str(status)))
        self.latency.observe(latency_ms, tags=self._tags(model_version, route=route))

    def predicted(self, model_version: str, classes: list[int], confidences: list[float]) -> None:
        counts: dict[int, int] = {}
        for c in classes:
            counts[c] = counts.get(c, 0) + 1
        for c, n in counts.items():
            self.predictions.inc(n, tags=self._tags(model_version, predicted_class=str(c)))
        for p in confidences:
            self.confidence.observe(p, tags=self._tags(model_version))

    def feedback_received(self, environment: str, model_version: str, correct: bool) -> None:
        self.feedback.inc(1, tags=self._tags(model_version, environment))
        if correct:  # Ray counters refuse inc(0)
            self.feedback_correct.inc(1, tags=self._tags(model_version, environment))
