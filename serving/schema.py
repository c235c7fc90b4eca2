"""Request schema and strict validation of /predict and /feedback bodies.

Validation is hand-written rather than left to pydantic/FastAPI so that every malformed body, whatever its
shape, ends in a 4xx with a message that names the problem, never an exception that becomes a 5xx.
"""

import json
import math
from dataclasses import dataclass

import numpy as np

IMAGE_SIDE = 8
PIXEL_MAX = 16.0
NUM_CLASSES = 10


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 256 * 1024
    max_batch: int = 64


class BadRequest(ValueError):
    """A request the service refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _reject_constant(name: str):
    raise BadRequest(400, f"body contains {name}, which is not valid JSON (numbers must be finite)")


def parse_json(body: bytes, limits: Limits) -> object:
    if len(body) > limits.max_body_bytes:
        raise BadRequest(413, f"body is {len(body)} bytes; the limit is {limits.max_body_bytes}")
    if not body:
        raise BadRequest(400, "body is empty; send a JSON object")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except BadRequest:
        raise
    except RecursionError:
        raise BadRequest(400, "body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"body is not valid JSON: {exc}") from None


def _object_with(body: object, required: set[str], what: str) -> dict:
    if not isinstance(body, dict):
        raise BadRequest(422, f"{what} body must be a JSON object with keys {sorted(required)}")
    missing = required - body.keys()
    if missing:
        raise BadRequest(422, f"{what} body lacks {sorted(missing)}")
    extra = body.keys() - required
    if extra:
        raise BadRequest(422, f"{what} body has unknown keys {sorted(extra)}")
    return body


def _pixel(value: object, where: str) -> float:
    # bool is an int subclass in Python; true/false are not pixel values.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(422, f"{where} is {type(value).__name__}; pixels must be numbers")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(422, f"{where} is not a finite number")
    if not 0 <= value <= PIXEL_MAX:
        raise BadRequest(422, f"{where} is out of range; pixels must be between 0 and {PIXEL_MAX:g}")
    return float(value)


def validate_predict(body: object, limits: Limits) -> list[list[float]]:
    """Return the images as flat lists of 64 floats, or raise BadRequest saying what is wrong."""
    images = _object_with(body, {"images"}, "/predict")["images"]
    if not isinstance(images, list):
        raise BadRequest(422, "images must be a list of 8x8 images")
    if not images:
        raise BadRequest(422, f"images is empty; send between 1 and {limits.max_batch} images")
    if len(images) > limits.max_batch:
        raise BadRequest(413, f"batch of {len(images)} images; the limit is {limits.max_batch}")
    flat: list[list[float]] = []
    for i, image in enumerate(images):
        if not isinstance(image, list) or len(image) != IMAGE_SIDE:
            raise BadRequest(422, f"images[{i}] must be a list of {IMAGE_SIDE} rows")
        pixels: list[float] = []
        for r, row in enumerate(image):
            if not isinstance(row, list) or len(row) != IMAGE_SIDE:
                raise BadRequest(422, f"images[{i}][{r}] must be a list of {IMAGE_SIDE} numbers")
            pixels.extend(_pixel(v, f"images[{i}][{r}][{c}]") for c, v in enumerate(row))
        flat.append(pixels)
    return flat


def _well_formed_images(body: bytes, obj: object, limits: Limits) -> np.ndarray | None:
    """The images of a valid body, checked with numpy in one pass; None sends the body to the slow path.

    Exact, not a shortcut around the rules: without a ``true``/``false``/``null`` literal in the body no pixel
    can be a boolean or null; strings, ragged rows, huge integers and nested lists give numpy a non-numeric
    dtype or another shape; non-finite and out-of-range values are checked here. Anything else is decided
    (and its message written) by validate_predict.
    """
    if type(obj) is not dict or len(obj) != 1 or b"true" in body or b"false" in body or b"null" in body:
        return None
    images = obj.get("images")
    if type(images) is not list or not 1 <= len(images) <= limits.max_batch:
        return None
    try:
        arr = np.array(images)
    except (ValueError, OverflowError):
        return None
    if arr.dtype.kind not in "if" or arr.shape != (len(images), IMAGE_SIDE, IMAGE_SIDE):
        return None
    if not (np.isfinite(arr).all() and (arr >= 0).all() and (arr <= PIXEL_MAX).all()):
        return None
    return arr.astype(np.float32)


def parse_predict(body: bytes, limits: Limits) -> np.ndarray:
    """A /predict body → float32 images (N, 8, 8), or BadRequest saying what is wrong."""
    obj = parse_json(body, limits)
    images = _well_formed_images(body, obj, limits)
    if images is None:
        images = np.asarray(validate_predict(obj, limits), dtype=np.float32).reshape(
            -1, IMAGE_SIDE, IMAGE_SIDE
        )
    return images


def validate_feedback(body: object) -> tuple[str, int]:
    """Return (prediction_id, true label), or raise BadRequest."""
    token, label, _image = validate_feedback_image(body)
    return token, label


def validate_feedback_image(body: object) -> tuple[str, int, np.ndarray | None]:
    """(prediction_id, true label, the predicted 8x8 image or None): the image is optional, and needed only
    when a feedback store keeps the feedback (serving/feedback.py)."""
    keys = {"prediction_id", "label"}
    if isinstance(body, dict) and "image" in body:
        keys.add("image")
    body = _object_with(body, keys, "/feedback")
    token, label = body["prediction_id"], body["label"]
    if not isinstance(token, str) or not token:
        raise BadRequest(422, "prediction_id must be the non-empty string /predict returned")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < NUM_CLASSES:
        raise BadRequest(422, f"label must be an integer class between 0 and {NUM_CLASSES - 1}")
    if "image" not in body:
        return token, label, None
    image = body["image"]
    if not isinstance(image, list) or len(image) != IMAGE_SIDE:
        raise BadRequest(422, f"image must be the 8x8 image sent to /predict, a list of {IMAGE_SIDE} rows")
    pixels: list[float] = []
    for r, row in enumerate(image):
        if not isinstance(row, list) or len(row) != IMAGE_SIDE:
            raise BadRequest(422, f"image[{r}] must be a list of {IMAGE_SIDE} numbers")
        pixels.extend(_pixel(v, f"image[{r}][{c}]") for c, v in enumerate(row))
    return token, label, np.asarray(pixels, dtype=np.float32).reshape(IMAGE_SIDE, IMAGE_SIDE)
