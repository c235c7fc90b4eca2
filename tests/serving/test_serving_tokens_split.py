"""Signed prediction tokens and the router's split ratio (no Ray)."""

import base64
import json
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.split import CANARY, WeightedSplitter
from serving.tokens import KEY_ENV, KEY_FILE_ENV, TokenError, TokenSigner, ensure_key_file, load_key

KEY = b"k" * 32


def test_token_round_trip_carries_environment_version_class():
    signer = TokenSigner(KEY)
    token = signer.sign("canary", "v7", 4)
    p = TokenSigner(KEY).verify(token)  # another replica with the same key
    assert (p.environment, p.model_version, p.predicted_class) == ("canary", "v7", 4)


def test_tokens_for_the_same_prediction_differ():
    signer = TokenSigner(KEY)
    assert signer.sign("production", "v1", 2) != signer.sign("production", "v1", 2)


def test_changed_class_is_refused():
    token = TokenSigner(KEY).sign("production", "v1", 2)
    payload, mac = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["c"] = 7
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode() + "." + mac
    with pytest.raises(TokenError, match="signature"):
        TokenSigner(KEY).verify(forged)


def test_token_from_another_key_is_refused():
    token = TokenSigner(b"x" * 32).sign("production", "v1", 2)
    with pytest.raises(TokenError, match="signature"):
        TokenSigner(KEY).verify(token)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", 42, None, "x" * 600 + ".y"])
def test_garbage_tokens_are_refused(token):
    with pytest.raises(TokenError):
        TokenSigner(KEY).verify(token)


def test_old_token_is_refused():
    signer = TokenSigner(KEY, max_age_s=60)
    token = signer.sign("production", "v1", 1, now=1000.0)
    assert signer.verify(token, now=1059.0).predicted_class == 1
    with pytest.raises(TokenError, match="old"):
        signer.verify(token, now=1061.0)


def test_key_from_environment_and_file(tmp_path):
    path = ensure_key_file(tmp_path / "sub" / "token.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = path.read_text()
    ensure_key_file(path)  # an existing key is kept, so tokens survive restarts
    assert path.read_text() == first and len(first) == 64
    assert load_key({KEY_FILE_ENV: str(path)}) == first.encode()
    assert load_key({KEY_ENV: "e" * 20, KEY_FILE_ENV: str(path)}) == b"e" * 20


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({}, "no token signing key"),
        ({KEY_ENV: "short"}, "shorter than"),
        ({KEY_FILE_ENV: "/nonexistent/k"}, "cannot read"),
    ],
)
def test_missing_or_weak_key_fails_clearly(environ, words):
    with pytest.raises(RuntimeError, match=words):
        load_key(environ)


@pytest.mark.parametrize("weight", [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.9, 1.0])
def test_split_ratio_matches_weight(weight):
    splitter = WeightedSplitter(weight)
    for n in (10, 100, 1000):
        canary = sum(splitter.choose() == CANARY for _ in range(n))
        assert canary == int(n * weight), (n, canary)
        splitter.set_weight(weight)  # restart the count


def test_weight_change_applies_to_the_next_requests():
    splitter = WeightedSplitter(0.0)
    assert all(splitter.choose() != CANARY for _ in range(50))
    splitter.set_weight(0.2)
    assert sum(splitter.choose() == CANARY for _ in range(50)) == 10


@pytest.mark.parametrize("weight", [-0.1, 1.5, "0.5", None, True, float("nan")])
def test_bad_weight_is_refused(weight):
    with pytest.raises(ValueError, match="canary_weight"):
        WeightedSplitter(weight)


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:8000", "http://192.0.2.2", "http://[2001:db8::1]:80", "nohost"]
)
def test_loadgen_refuses_non_loopback_targets(url):
    from serving.loadgen import require_loopback

    with pytest.raises(ValueError, match=r"loopback|no host"):
        require_loopback(url)


def test_loadgen_accepts_loopback():
    from serving.loadgen import require_loopback

    assert require_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert require_loopback("http://localhost:1") == "http://localhost:1"


@settings(max_examples=300, deadline=None, database=None)
@given(token=st.one_of(st.text(max_size=80), st.text(max_size=40).map(lambda t: t + "." + t)))
def test_any_text_as_a_token_is_a_token_error(token):
    """Non-ASCII ids once raised UnicodeEncodeError (a 500 at /feedback); any text must be a refusal."""
    with pytest.raises(TokenError):
        TokenSigner(KEY).verify(token)


def test_signed_payload_with_overflowing_class_is_a_token_error():
    signer = TokenSigner(KEY)
    payload = base64.urlsafe_b64encode(b'{"e":"p","v":"v1","c":1e999,"t":0}').rstrip(b"=").decode()
    with pytest.raises(TokenError, match="malformed"):
        signer.verify(f"{payload}.{signer._mac(payload)}")
