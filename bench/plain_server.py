"""The baseline: one FastAPI + uvicorn process serving the same TorchScript model, same API and same checks.

It validates with serving.schema and signs prediction_ids with serving.tokens like the ChiOps service, so the
bench compares the cost of Ray Serve's machinery, not of different amounts of work.

    CHIOPS_TOKEN_KEY=... python bench/plain_server.py --registry registry --version production --port 8081
"""

import argparse
import json
import os
import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from serving.predictor import Predictor
from serving.schema import BadRequest, Limits, parse_predict
from serving.tokens import TokenSigner, load_key


def build(registry: str, version: str) -> FastAPI:
    predictor = Predictor(registry, version)
    signer = TokenSigner(load_key())
    limits = Limits()
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/predict")
    async def predict(request: Request):
        try:
            images = parse_predict(await request.body(), limits)
        except BadRequest as exc:
            return Response(json.dumps({"error": exc.message}), exc.status, media_type="application/json")
        classes, confidences = predictor.predict(images)
        payload = {
            "environment": "plain",
            "model_version": predictor.version,
            "predictions": [
                {
                    "class": c,
                    "probability": round(p, 6),
                    "prediction_id": signer.sign("plain", predictor.version, c),
                }
                for c, p in zip(classes, confidences, strict=True)
            ],
        }
        return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "model_version": predictor.version}

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--registry", required=True)
    p.add_argument("--version", default="production")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    uvicorn.run(
        build(a.registry, a.version), host="127.0.0.1", port=a.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
