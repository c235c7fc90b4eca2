"""Environment ingress: the HTTP face of one environment's model (validation, tokens, metrics).

Torch-free in the split layout (the model is the Classifier deployment behind a handle); in the fused layout
the model runs in this replica, one hop less per request. No ``from __future__ import annotations`` here: with
it, FastAPI reads the ``Request`` parameter of a class-based Serve ingress as a query parameter and every call
fails with 422.
"""

from fastapi import FastAPI, Request
from ray import serve
from ray.serve.handle import DeploymentHandle

from serving.endpoint import ModelEndpoint
from serving.feedback_store import store_from_env
from serving.http import install_error_handlers, json_response, read_body
from serving.metrics import ServiceMetrics
from serving.schema import BadRequest, Limits
from serving.tokens import TokenSigner, load_key

app = FastAPI(title="ChiOps model service", docs_url=None, redoc_url=None, openapi_url=None)
install_error_handlers(app)


def local_model(settings: dict):
    """(predict, info) coroutines of a model running in this replica (torch is imported here)."""
    from serving.model import BatchedModel

    model = BatchedModel(**settings)
    return model.predict, model.info


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
        if fused_model is not None:
            predict, info = local_model(fused_model)
        elif classifier is None:
            raise ValueError("EnvironmentIngress needs a Classifier handle or fused_model settings")
        else:

            async def predict(images):
                return await classifier.predict.remote(images)

            async def info():
                return await classifier.info.remote()

        self._endpoint = ModelEndpoint(
            environment,
            model_version,
            Limits(max_body_bytes=max_body_bytes, max_batch=max_batch),
            TokenSigner(load_key(), max_age_s=token_max_age_s),
            ServiceMetrics(environment),
            predict,
            info,
            store_from_env(),
        )

    async def handle_predict(self, body: bytes) -> tuple[int, dict]:
        """Validate, predict, sign. Also called by the public router through a handle."""
        return await self._endpoint.predict(body)

    async def info(self) -> dict:
        return await self._endpoint.info()

    async def _read(self, request: Request, route: str, handle):
        try:
            body = await read_body(request, self._endpoint.limits)
        except BadRequest as exc:
            self._endpoint.refused(route, exc.status)
            return json_response(exc.status, {"error": exc.message})
        return json_response(*await handle(body))

    @app.post("/predict")
    async def predict(self, request: Request):
        return await self._read(request, "/predict", self._endpoint.predict)

    @app.post("/feedback")
    async def feedback(self, request: Request):
        return await self._read(request, "/feedback", self._endpoint.feedback)

    @app.get("/healthz")
    async def healthz(self):
        return json_response(*await self._endpoint.health())

    @app.get("/version")
    async def version(self):
        return json_response(*await self._endpoint.version_info())
