"""/feedback: verify a signed prediction_id, keep the feedback when a store is configured, count it
(torch-free).

With a feedback store (serving/feedback_store.py) the body must also carry the image that was sent to
/predict; its digest must match the one signed into the prediction_id, so the store holds exactly what was
predicted. A prediction id the store already holds is answered 200 ``"duplicate": true`` and not counted
again; a store that is down or slow is a 503 (nothing stored, nothing counted: the client can retry).
"""

import asyncio

from serving.feedback_store import StoreUnavailable, image_digest, new_feedback
from serving.metrics import ServiceMetrics
from serving.schema import BadRequest, Limits, parse_json, validate_feedback_image
from serving.tokens import TokenError, TokenSigner


def handle_feedback(
    body: bytes, limits: Limits, signer: TokenSigner, metrics: ServiceMetrics, store=None
) -> tuple[int, dict]:
    """Return (status, payload). A valid token is counted under the environment and version it names."""
    try:
        token, label, image = validate_feedback_image(parse_json(body, limits))
        prediction = signer.verify(token)
    except BadRequest as exc:
        return exc.status, {"error": exc.message}
    except TokenError as exc:
        return 403, {"error": str(exc)}
    new = True
    if store is not None:
        if image is None:
            return 422, {"error": "/feedback body lacks 'image': send the 8x8 image given to /predict"}
        if prediction.image_digest != image_digest(image):
            return 422, {"error": "image is not the image this prediction_id was issued for"}
        try:
            new = store.add(new_feedback(prediction, token, label, image))
        except StoreUnavailable as exc:
            return 503, {"error": f"feedback not stored, retry later: {exc}"}
    correct = prediction.predicted_class == label
    if new:
        metrics.feedback_received(prediction.environment, prediction.model_version, correct)
    return 200, {
        "environment": prediction.environment,
        "model_version": prediction.model_version,
        "predicted_class": prediction.predicted_class,
        "label": label,
        "correct": correct,
        "duplicate": not new,
    }


async def feedback(body: bytes, limits: Limits, signer: TokenSigner, metrics: ServiceMetrics, store=None):
    """handle_feedback for an async handler: a store call runs off the event loop, so a slow store cannot
    hold up the /predict requests that share the replica."""
    if store is None:
        return handle_feedback(body, limits, signer, metrics)
    return await asyncio.to_thread(handle_feedback, body, limits, signer, metrics, store)
