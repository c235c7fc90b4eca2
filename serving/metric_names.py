"""Exact Prometheus names of ChiOps' metrics as exported; PromQL is built from these, never typed by hand.

Replicas create the metrics with ``ray.serve.metrics`` under the BASE names; Ray's exporter prefixes them with
``ray_`` and gives counters a ``_total`` suffix, and histograms the ``_bucket``/``_sum``/``_count`` series.
tests/serving/test_integration.py checks these names against what a live Ray exports.
"""

# Base names given to ray.serve.metrics (what the replicas create).
BASE_REQUESTS = "chiops_requests"
BASE_REQUEST_LATENCY_MS = "chiops_request_latency_ms"
BASE_PREDICTIONS = "chiops_predictions"
BASE_CONFIDENCE = "chiops_confidence"
BASE_FEEDBACK = "chiops_feedback"
BASE_FEEDBACK_CORRECT = "chiops_feedback_correct"
BASE_INPUT_INK = "chiops_input_ink"
BASE_INPUT_REFERENCE = "chiops_input_reference_share"

# Exported names (what Prometheus stores).
REQUESTS_TOTAL = "ray_chiops_requests_total"
REQUEST_LATENCY_MS = "ray_chiops_request_latency_ms"  # histogram: add _bucket/_sum/_count
REQUEST_LATENCY_MS_BUCKET = REQUEST_LATENCY_MS + "_bucket"
REQUEST_LATENCY_MS_COUNT = REQUEST_LATENCY_MS + "_count"
REQUEST_LATENCY_MS_SUM = REQUEST_LATENCY_MS + "_sum"
# Its bucket upper bounds (ms): a quarter-octave grid through 500 ms (the SLO the alert rules read as
# le="500.0", the form Ray exports), fine enough that the canary latency gate compares candidate and stable
# within ~19 % (rollout/gates.py).
LATENCY_BOUNDARIES_MS = [
    int(b) if b == int(b) else b for b in (float(f"{500 * 2 ** (j / 4):.4g}") for j in range(-40, 18))
]
PREDICTIONS_TOTAL = "ray_chiops_predictions_total"
CONFIDENCE = "ray_chiops_confidence"  # histogram
CONFIDENCE_BUCKET = CONFIDENCE + "_bucket"
CONFIDENCE_COUNT = CONFIDENCE + "_count"
CONFIDENCE_SUM = CONFIDENCE + "_sum"
FEEDBACK_TOTAL = "ray_chiops_feedback_total"
FEEDBACK_CORRECT_TOTAL = "ray_chiops_feedback_correct_total"
# Input drift (serving/drift.py): live images per ink bin; the model's reference share of each bin (gauge).
INPUT_INK_TOTAL = "ray_chiops_input_ink_total"
INPUT_REFERENCE_SHARE = "ray_chiops_input_reference_share"

# Labels.
ENVIRONMENT = "environment"
MODEL_VERSION = "model_version"
ROUTE = "route"
STATUS = "status"
PREDICTED_CLASS = "predicted_class"
BIN = "bin"
COMMON_LABELS = (ENVIRONMENT, MODEL_VERSION)
# The router's own requests (bad /feedback bodies, an unreachable backend) carry these labels.
ROUTER_ENVIRONMENT = "public"
NO_MODEL_VERSION = "none"

# Client side (serving/loadgen.py, prometheus_client).
CLIENT_REQUESTS_TOTAL = "chiops_client_requests_total"  # labels: model_version, outcome
CLIENT_LATENCY_SECONDS = "chiops_client_latency_seconds"  # histogram, label: model_version
CLIENT_FEEDBACK_TOTAL = "chiops_client_feedback_total"  # label: outcome (failed /feedback counts)
OUTCOME = "outcome"

# Ray Serve's own metrics that the canary analysis can use alongside ours.
RAY_HTTP_REQUESTS_TOTAL = "ray_serve_num_http_requests_total"
RAY_HTTP_ERROR_REQUESTS_TOTAL = "ray_serve_num_http_error_requests_total"

EXPORTED = {
    BASE_REQUESTS: REQUESTS_TOTAL,
    BASE_REQUEST_LATENCY_MS: REQUEST_LATENCY_MS_BUCKET,
    BASE_PREDICTIONS: PREDICTIONS_TOTAL,
    BASE_CONFIDENCE: CONFIDENCE_BUCKET,
    BASE_FEEDBACK: FEEDBACK_TOTAL,
    BASE_FEEDBACK_CORRECT: FEEDBACK_CORRECT_TOTAL,
    BASE_INPUT_INK: INPUT_INK_TOTAL,
    BASE_INPUT_REFERENCE: INPUT_REFERENCE_SHARE,
}
