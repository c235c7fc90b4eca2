"""Signed prediction tokens: a prediction_id that carries what was predicted, so feedback needs no shared
state.

A token is ``<payload>.<mac>``: the payload (base64url JSON) holds environment, model version, predicted
class, issue time, a random nonce and a digest of the predicted image (so /feedback can hand the feedback
store that very image and no other); the mac is HMAC-SHA256 over the payload with a key only the service
holds. Any replica of any app (or the router) holding the key can verify a token and count its feedback,
across restarts; a client cannot make up a token for a prediction it never received, nor change the class in
one. Replays of a genuine token are not detected (that needs shared state); ``max_age_s`` bounds their window.
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

KEY_ENV = "CHIOPS_TOKEN_KEY"
KEY_FILE_ENV = "CHIOPS_TOKEN_KEY_FILE"
MIN_KEY_BYTES = 16
MAC_BYTES = 16
MAX_TOKEN_CHARS = 512


class TokenError(ValueError):
    """A token that is malformed, forged, or too old."""


@dataclass(frozen=True)
class Prediction:
    environment: str
    model_version: str
    predicted_class: int
    issued_at: float
    image_digest: str | None = None  # serving.feedback_store.image_digest of the predicted image


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_key(environ=None) -> bytes:
    """The signing key from $CHIOPS_TOKEN_KEY or the file named by $CHIOPS_TOKEN_KEY_FILE."""
    environ = os.environ if environ is None else environ
    if environ.get(KEY_ENV):
        key = environ[KEY_ENV].encode()
        source = KEY_ENV
    elif environ.get(KEY_FILE_ENV):
        path = Path(environ[KEY_FILE_ENV])
        try:
            key = path.read_bytes().strip()
        except OSError as exc:
            raise RuntimeError(f"cannot read the token key file {path} ({KEY_FILE_ENV}): {exc}") from exc
        source = str(path)
    else:
        raise RuntimeError(
            f"no token signing key: set {KEY_ENV} or {KEY_FILE_ENV} "
            "(python -m serving.config --token-key-file PATH creates a key file for local use)"
        )
    if len(key) < MIN_KEY_BYTES:
        raise RuntimeError(f"the token key from {source} is shorter than {MIN_KEY_BYTES} bytes")
    return key


def ensure_key_file(path: str | os.PathLike) -> Path:
    """Create a random key file readable only by its owner, unless one exists; returns its path."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path


class TokenSigner:
    def __init__(self, key: bytes, max_age_s: float = 7 * 24 * 3600):
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"token key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self.max_age_s = max_age_s

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()[:MAC_BYTES])

    def sign(
        self,
        environment: str,
        model_version: str,
        predicted_class: int,
        now: float | None = None,
        image_digest: str | None = None,
    ) -> str:
        body = {
            "e": environment,
            "v": model_version,
            "c": int(predicted_class),
            "t": round(time.time() if now is None else now, 3),
            "n": secrets.token_hex(6),
        }
        if image_digest is not None:
            body["d"] = image_digest
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: object, now: float | None = None) -> Prediction:
        # Non-ASCII text would make both the HMAC input and compare_digest raise (a 500), not a refusal.
        if (
            not isinstance(token, str)
            or len(token) > MAX_TOKEN_CHARS
            or not token.isascii()
            or token.count(".") != 1
        ):
            raise TokenError("prediction_id is not a token this service issued")
        payload, mac = token.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise TokenError("prediction_id signature does not match: not issued by this service")
        try:
            body = json.loads(_unb64(payload))
            digest = body.get("d")
            prediction = Prediction(
                str(body["e"]),
                str(body["v"]),
                int(body["c"]),
                float(body["t"]),
                None if digest is None else str(digest),
            )
        except (ValueError, KeyError, TypeError, OverflowError, binascii.Error) as exc:
            raise TokenError("prediction_id payload is malformed") from exc
        age = (time.time() if now is None else now) - prediction.issued_at
        if age > self.max_age_s:
            raise TokenError(
                f"prediction_id is {age:.0f} s old; feedback is accepted for {self.max_age_s:.0f} s"
            )
        return prediction
