"""One environment's request handling, shared by the environment ingress and the router's inline stable model.

Validate, predict, sign, count: the same code whichever replica runs it, so a prediction served by the public
router's own copy of the production model is answered and counted exactly as ``/production/predict`` would be
(environment ``production``, the version that answered). Torch-free: the model arrives as two coroutines.
"""

import time
from collections.abc import Awaitable, Callable

import numpy as np

from serving.feedback import feedback
from serving.feedback_store import image_digest
from serving.metrics import ServiceMetrics
from serving.schema import BadRequest, Limits, parse_predict
from serving.tokens import TokenSigner

Predict = Callable[[np.ndarray], Awaitable[dict]]
Info = Callable[[], Awaitable[dict]]


class ModelEndpoint:
    def __init__(
        self,
        environment: str,
        model_version: str,
        limits: Limits,
        signer: TokenSigner,
        metrics: ServiceMetrics,  # counted under ``environment`` whichever replica's metrics these are
        predict: Predict,
        info: Info,
        store=None,  # serving.feedback_store, or None: feedback is counted, not kept
    ):
        self.environment = environment
        self.version = model_version
        self.limits = limits
        self._signer = signer
        self._metrics = metrics
        self._predict = predict
        self._info = info
        self._store = store

    def _payload(self, version: str, classes: list[int], confidences: list[float], images) -> dict:
        def sign(c, image):
            return self._signer.sign(self.environment, version, c, image_digest=image_digest(image))

        return {
            "environment": self.environment,
            "model_version": version,
            "predictions": [
                {"class": c, "probability": round(p, 6), "prediction_id": sign(c, image)}
                for c, p, image in zip(classes, confidences, images, strict=True)
            ],
        }

    async def predict(self, body: bytes) -> tuple[int, dict]:
        """Validate, predict, sign; every outcome is counted under this environment."""
        started = time.perf_counter()
        version = self.version
        try:
            images = parse_predict(body, self.limits)
        except BadRequest as exc:
            status, payload = exc.status, {"error": exc.message}
        else:
            try:
                result = await self._predict(images)
            except Exception as exc:  # the model replica is gone or restarting: the client may retry
                status, payload = 503, {"error": f"model unavailable ({type(exc).__name__}); retry later"}
            else:
                version = result["model_version"]
                self._metrics.predicted(version, result["classes"], result["confidences"], self.environment)
                status, payload = (
                    200,
                    self._payload(version, result["classes"], result["confidences"], images),
                )
        self._metrics.request(
            version, "/predict", status, (time.perf_counter() - started) * 1000, self.environment
        )
        return status, payload

    async def feedback(self, body: bytes) -> tuple[int, dict]:
        started = time.perf_counter()
        status, payload = await feedback(body, self.limits, self._signer, self._metrics, self._store)
        latency_ms = (time.perf_counter() - started) * 1000
        self._metrics.request(self.version, "/feedback", status, latency_ms, self.environment)
        return status, payload

    def refused(self, route: str, status: int) -> None:
        """Count a request refused before it reached predict/feedback (e.g. a body over the limit)."""
        self._metrics.request(self.version, route, status, 0.0, self.environment)

    async def info(self) -> dict:
        return {"environment": self.environment, **await self._info()}

    async def health(self) -> tuple[int, dict]:
        try:
            info = await self._info()
        except Exception as exc:
            return 503, {"status": "model unavailable", "error": type(exc).__name__}
        return 200, {"status": "ok", "model_version": info["model_version"]}

    async def version_info(self) -> tuple[int, dict]:
        try:
            return 200, await self.info()
        except Exception as exc:
            return 503, {"error": f"model unavailable ({type(exc).__name__})"}
