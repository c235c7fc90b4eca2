"""Public router: splits /predict between the stable and the canary app by ``canary_weight`` (user_config).

Torch-free on purpose (it holds no model). A weight change arrives through ``reconfigure`` in the running
replica, so shifting traffic restarts nothing. /feedback is verified and counted here for any environment,
since the signed prediction_id says which environment and model version made the prediction.
No ``from __future__ import annotations`` (see serving/ingress.py).
"""

import time

from fastapi import FastAPI, Request
from ray import serve

from serving import metric_names as names
from serving.feedback import handle_feedback
from serving.http import json_response, read_body
from serving.metrics import ServiceMetrics
from serving.schema import BadRequest, Limits
from serving.split import CANARY, STABLE, WeightedSplitter
from serving.tokens import TokenSigner, load_key

INGRESS_DEPLOYMENT = "EnvironmentIngress"

app = FastAPI(title="ChiOps public route", docs_url=None, redoc_url=None, openapi_url=None)


@serve.deployment
@serve.ingress(app)
class PublicRouter:
    def __init__(
        self,
        stable_app: str = "production",
        canary_app: str | None = "canary",
        max_body_bytes: int = Limits.max_body_bytes,
        max_batch: int = Limits.max_batch,
        token_max_age_s: float = 7 * 24 * 3600,
    ):
        self._apps = {STABLE: stable_app, CANARY: canary_app}
        self._handles: dict = {}
        self._splitter = WeightedSplitter(0.0)
        self._limits = Limits(max_body_bytes=max_body_bytes, max_batch=max_batch)
        self._signer = TokenSigner(load_key(), max_age_s=token_max_age_s)
        self._metrics = ServiceMetrics(names.ROUTER_ENVIRONMENT)

    def reconfigure(self, config: dict) -> None:
        self._splitter.set_weight(config.get("canary_weight", 0.0))

    def _handle(self, side: str):
        if side not in self._handles:
            self._handles[side] = serve.get_deployment_handle(INGRESS_DEPLOYMENT, app_name=self._apps[side])
        return self._handles[side]

    def _refuse(self, route: str, status: int, message: str):
        self._metrics.request(names.NO_MODEL_VERSION, route, status, 0.0)
        return json_response(status, {"error": message})

    @app.post("/predict")
    async def predict(self, request: Request):
        try:
            body = await read_body(request, self._limits)
        except BadRequest as exc:
            return self._refuse("/predict", exc.status, exc.message)
        side = self._splitter.choose()
        if side == CANARY and not self._apps[CANARY]:
            side = STABLE
        try:
            status, payload = await self._handle(side).handle_predict.remote(body)
        except Exception as exc:
            if side == STABLE:
                return self._refuse("/predict", 503, f"stable model unavailable ({type(exc).__name__})")
            # A canary that is missing or failing must not cost the user the request.
            try:
                status, payload = await self._handle(STABLE).handle_predict.remote(body)
            except Exception as exc2:
                return self._refuse("/predict", 503, f"no model available ({type(exc2).__name__})")
        return json_response(status, payload)

    @app.post("/feedback")
    async def feedback(self, request: Request):
        started = time.perf_counter()
        try:
            body = await read_body(request, self._limits)
        except BadRequest as exc:
            return self._refuse("/feedback", exc.status, exc.message)
        status, payload = handle_feedback(body, self._limits, self._signer, self._metrics)
        version = payload.get("model_version", names.NO_MODEL_VERSION)
        self._metrics.request(version, "/feedback", status, (time.perf_counter() - started) * 1000)
        return json_response(status, payload)

    @app.get("/healthz")
    async def healthz(self):
        try:
            info = await self._handle(STABLE).info.remote()
        except Exception as exc:
            return json_response(503, {"status": "stable model unavailable", "error": type(exc).__name__})
        return json_response(200, {"status": "ok", "model_version": info["model_version"]})

    @app.get("/version")
    async def version(self):
        out: dict = {"canary_weight": self._splitter.weight}
        for side, app_name in self._apps.items():
            if not app_name:
                out[side] = None
                continue
            try:
                out[side] = await self._handle(side).info.remote()
            except Exception as exc:
                out[side] = {"environment": app_name, "error": f"unavailable ({type(exc).__name__})"}
        return json_response(200, out)
