"""Public router: splits /predict between the stable and the canary app by ``canary_weight`` (user_config).

A weight change and a new canary (its app and version) arrive through ``reconfigure`` in the running replica,
so neither deploying a canary nor shifting traffic starts a router process (on a small machine a new one costs
tens of seconds of CPU that the replicas answering users need).
/feedback is verified and counted here for any environment, since the signed prediction_id says which
environment and model version made the prediction.

Two layouts (serving/config.py): by default the router holds no model and never imports torch; every
/predict is one more hop to an environment app. With ``stable_model`` (the inline layout) the router runs
production's model itself, so stable traffic costs no hop beyond the proxy; those requests are answered and
counted exactly as production's app would (environment ``production``, serving/endpoint.py), and only the
canary's share goes out through a handle.

A canary call that fails (raises, times out, or answers 5xx) is retried on stable so that the user does not
pay
for a broken canary. The failure itself still counts against the canary: an answered 5xx is counted by the
canary app that answered it; a call that raised or timed out is counted here as a 503 under
``environment=canary, model_version=<canary_version>`` (the contract in coord/OWNERS.md), so the gate's
error-rate query sees a crashing canary instead of "too little data".
No ``from __future__ import annotations`` (see serving/ingress.py).
"""

import asyncio
import time

from fastapi import FastAPI, Request
from ray import serve

from serving import metric_names as names
from serving.endpoint import ModelEndpoint
from serving.feedback import feedback
from serving.feedback_store import store_from_env
from serving.http import install_error_handlers, json_response, read_body
from serving.metrics import ServiceMetrics
from serving.schema import BadRequest, Limits
from serving.split import CANARY, STABLE, WeightedSplitter
from serving.tokens import TokenSigner, load_key

INGRESS_DEPLOYMENT = "EnvironmentIngress"

app = FastAPI(title="ChiOps public route", docs_url=None, redoc_url=None, openapi_url=None)
install_error_handlers(app)


@serve.deployment
@serve.ingress(app)
class PublicRouter:
    def __init__(
        self,
        stable_app: str = "production",
        max_body_bytes: int = Limits.max_body_bytes,
        max_batch: int = Limits.max_batch,
        token_max_age_s: float = 7 * 24 * 3600,
        canary_timeout_s: float = 10.0,
        stable_model: dict | None = None,
    ):
        self._apps: dict[str, str | None] = {STABLE: stable_app, CANARY: None}
        self._handles: dict = {}
        self._splitter = WeightedSplitter(0.0)
        self._canary_version = names.NO_MODEL_VERSION
        self._canary_timeout_s = canary_timeout_s
        self._limits = Limits(max_body_bytes=max_body_bytes, max_batch=max_batch)
        self._signer = TokenSigner(load_key(), max_age_s=token_max_age_s)
        self._metrics = ServiceMetrics(names.ROUTER_ENVIRONMENT)
        self._store = store_from_env()
        self._stable: ModelEndpoint | None = None
        if stable_model is not None:
            from serving.ingress import local_model

            predict, info = local_model(stable_model)
            self._stable = ModelEndpoint(
                stable_app,
                stable_model["version"],
                self._limits,
                self._signer,
                self._metrics,  # one set of Ray metrics per replica; the endpoint labels them production
                predict,
                info,
                self._store,
            )

    def reconfigure(self, config: dict) -> None:
        canary_app = config.get("canary_app")
        if canary_app != self._apps[CANARY]:
            self._handles.pop(CANARY, None)
            self._apps[CANARY] = canary_app
        # the router counts a failed canary call under the canary's version (module docstring)
        self._canary_version = config.get("canary_version") or names.NO_MODEL_VERSION
        self._splitter.set_weight(config.get("canary_weight", 0.0))

    def _handle(self, side: str):
        if side not in self._handles:
            self._handles[side] = serve.get_deployment_handle(INGRESS_DEPLOYMENT, app_name=self._apps[side])
        return self._handles[side]

    def _refuse(self, route: str, status: int, message: str):
        self._metrics.request(names.NO_MODEL_VERSION, route, status, 0.0)
        return json_response(status, {"error": message})

    async def _stable_predict(self, body: bytes) -> tuple[int, dict]:
        if self._stable is not None:
            return await self._stable.predict(body)
        return await self._handle(STABLE).handle_predict.remote(body)

    async def _canary_predict(self, body: bytes) -> tuple[int, dict] | None:
        """The canary's answer, or None when it failed (counted, see the module docstring)."""
        started = time.perf_counter()
        try:
            status, payload = await asyncio.wait_for(
                self._handle(CANARY).handle_predict.remote(body), self._canary_timeout_s
            )
        except Exception:  # whatever broke, the user gets stable's answer
            self._metrics.request(
                self._canary_version,
                "/predict",
                503,
                (time.perf_counter() - started) * 1000,
                environment=self._apps[CANARY],
            )
            return None
        return None if status >= 500 else (status, payload)

    @app.post("/predict")
    async def predict(self, request: Request):
        try:
            body = await read_body(request, self._limits)
        except BadRequest as exc:
            return self._refuse("/predict", exc.status, exc.message)
        if self._apps[CANARY] and self._splitter.choose() == CANARY:
            answer = await self._canary_predict(body)
            if answer is not None:
                return json_response(*answer)
        try:
            return json_response(*await self._stable_predict(body))
        except Exception as exc:
            return self._refuse("/predict", 503, f"stable model unavailable ({type(exc).__name__})")

    @app.post("/feedback")
    async def feedback(self, request: Request):
        started = time.perf_counter()
        try:
            body = await read_body(request, self._limits)
        except BadRequest as exc:
            return self._refuse("/feedback", exc.status, exc.message)
        status, payload = await feedback(body, self._limits, self._signer, self._metrics, self._store)
        version = payload.get("model_version", names.NO_MODEL_VERSION)
        self._metrics.request(version, "/feedback", status, (time.perf_counter() - started) * 1000)
        return json_response(status, payload)

    async def _info(self, side: str) -> dict:
        if side == STABLE and self._stable is not None:
            return await self._stable.info()
        return await self._handle(side).info.remote()

    @app.get("/healthz")
    async def healthz(self):
        try:
            info = await self._info(STABLE)
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
                out[side] = await self._info(side)
            except Exception as exc:
                out[side] = {"environment": app_name, "error": f"unavailable ({type(exc).__name__})"}
        return json_response(200, out)
