"""/feedback: verify a signed prediction_id and count whether the prediction was right (torch-free)."""

from serving.metrics import ServiceMetrics
from serving.schema import BadRequest, Limits, parse_json, validate_feedback
from serving.tokens import TokenError, TokenSigner


def handle_feedback(
    body: bytes, limits: Limits, signer: TokenSigner, metrics: ServiceMetrics
) -> tuple[int, dict]:
    """Return (status, payload). A valid token is counted under the environment and version it names."""
    try:
        token, label = validate_feedback(parse_json(body, limits))
        prediction = signer.verify(token)
    except BadRequest as exc:
        return exc.status, {"error": exc.message}
    except TokenError as exc:
        return 403, {"error": str(exc)}
    correct = prediction.predicted_class == label
    metrics.feedback_received(prediction.environment, prediction.model_version, correct)
    return 200, {
        "environment": prediction.environment,
        "model_version": prediction.model_version,
        "predicted_class": prediction.predicted_class,
        "label": label,
        "correct": correct,
    }
