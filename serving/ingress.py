"""Environment ingress: the HTTP face of one environment's model (validation, tokens, metrics; no torch).

No ``from __future__ import annotations`` here: with it, FastAPI reads the ``Request`` parameter of a
class-based Serve ingress as a query parameter and every call fails with 422.
"""

import time

import numpy as np
from fastapi import FastAPI, Request
from ray import serve
from ray.serve.handle import DeploymentHandle

from serving.feedback import handle_feedback
from serving.http import json_response, read_body
from serving.metrics import ServiceMetrics
from serving.schema import BadRequest, Limits, parse_json, validate_predict
from serving.tokens import TokenSigner, load_key

app = FastAPI(title="ChiOps model service", docs_url=None, redoc_url=None, openapi_url=None)


@serve.deployment
@serve.ingress(app)
class EnvironmentIngress:
    def __init__(
        self,
        classifier: DeploymentHandle | None,
        environment: str,
        model_version: str,
        max_body_bytes: int = Limits.max_body_bytes,
        max_batch: int = Limits.max_batch,
        token_max_age_s: float = 7 * 24 * 3600,
        fused_model: dict | None = None,
    ):
        # Fused: the model runs in this replica (one hop less per request, but torch in the ingress).
        if fused_model is not None:
            from serving.model import BatchedModel

            self._local = BatchedModel(**fused_model)
        elif classifier is None:
            raise ValueError("EnvironmentIngress needs a Classifier handle or fused_model settings")
        else:
            self._local = None
        self._classifier = classifier
        self._environment = environment
        self._version = model_version
        self._limits = Limits(max_body_bytes=max_body_bytes, max_batch=max_batch)
        self._signer = TokenSigner(load_key(), max_age_s=token_max_age_s)
        self._metrics = ServiceMetrics(environment)

    async def _predict(self, images: np.ndarray) -> dict:
        if self._local is not None:
            return await self._local.predict(images)
        return await self._classifier.predict.remote(images)

    async def _model_info(self) -> dict:
        if self._local is not None:
            return await self._local.info()
        return await self._classifier.info.remote()

    async def handle_predict(self, body: bytes) -> tuple[int, dict]:
        """Validate, predict, sign. Also called by the public router through a handle."""
        started = time.perf_counter()
        version = self._version
        try:
            images = validate_predict(parse_json(body, self._limits), self._limits)
        except BadRequest as exc:
            status, payload = exc.status, {"error": exc.message}
        else:
            try:
                result = await self._predict(np.asarray(images, dtype=np.float32))
            except Exception as exc:  # the model replica is gone or restarting: the client may retry
                status, payload = 503, {"error": f"model unavailable ({type(exc).__name__}); retry later"}
            else:
                version = result["model_version"]
                classes, confidences = result["classes"], result["confidences"]
                self._metrics.predicted(version, classes, confidences)
                status, payload = (
                    200,
                    {
                        "environment": self._environment,
                        "model_version": version,
                        "predictions": [
                            {
                                "class": c,
                                "probability": round(p, 6),
                                "prediction_id": self._signer.sign(self._environment, version, c),
                            }
                            for c, p in zip(classes, confidences, strict=True)
                        ],
                    },
                )
        self._metrics.request(version, "/predict", status, (time.perf_counter() - started) * 1000)
        return status, payload

    async def handle_feedback(self, body: bytes) -> tuple[int, dict]:
        started = time.perf_counter()
        status, payload = handle_feedback(body, self._limits, self._signer, self._metrics)
        self._metrics.request(self._version, "/feedback", status, (time.perf_counter() - started) * 1000)
        return status, payload

    async def info(self) -> dict:
        info = await self._model_info()
        return {"environment": self._environment, **info}

    @app.post("/predict")
    async def predict(self, request: Request):
        try:
            body = await read_body(request, self._limits)
        except BadRequest as exc:
            self._metrics.request(self._version, "/predict", exc.status, 0.0)
            return json_response(exc.status, {"error": exc.message})
        return json_response(*await self.handle_predict(body))

    @app.post("/feedback")
    async def feedback(self, request: Request):
        try:
            body = await read_body(request, self._limits)
        except BadRequest as exc:
            self._metrics.request(self._version, "/feedback", exc.status, 0.0)
            return json_response(exc.status, {"error": exc.message})
        return json_response(*await self.handle_feedback(body))

    @app.get("/healthz")
    async def healthz(self):
        try:
            info = await self._model_info()
        except Exception as exc:
            return json_response(503, {"status": "model unavailable", "error": type(exc).__name__})
        return json_response(200, {"status": "ok", "model_version": info["model_version"]})

    @app.get("/version")
    async def version(self):
        try:
            return json_response(200, await self.info())
        except Exception as exc:
            return json_response(503, {"error": f"model unavailable ({type(exc).__name__})"})
