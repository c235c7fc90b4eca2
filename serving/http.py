"""HTTP plumbing shared by the environment ingress and the public router (torch-free)."""

import json

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from serving.schema import BadRequest, Limits


async def read_body(request: Request, limits: Limits) -> bytes:
    """The request body, refused with 413 as soon as it grows past the limit (never read whole first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise BadRequest(413, f"body is {declared} bytes; the limit is {limits.max_body_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise BadRequest(413, f"body is over the limit of {limits.max_body_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def json_response(status: int, payload: dict) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def install_error_handlers(app: FastAPI) -> None:
    """Unknown paths and methods answer in the service's own error shape, ``{"error": ...}``."""

    async def http_error(request: Request, exc: HTTPException) -> Response:
        response = json_response(
            exc.status_code, {"error": f"{request.method} {request.url.path}: {exc.detail}"}
        )
        if exc.headers:
            response.headers.update(exc.headers)  # e.g. Allow on a 405
        return response

    app.add_exception_handler(HTTPException, http_error)
