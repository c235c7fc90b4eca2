"""Strict input validation, one test per kind of rejected body (no Ray)."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.schema import BadRequest, Limits, parse_json, parse_predict, validate_feedback, validate_predict

LIMITS = Limits(max_body_bytes=4096, max_batch=4)
IMAGE = [[0] * 8 for _ in range(8)]


def predict(body: bytes):
    return validate_predict(parse_json(body, LIMITS), LIMITS)


def rejected(body: bytes, status: int, words: str):
    with pytest.raises(BadRequest) as err:
        predict(body)
    assert err.value.status == status
    assert words in err.value.message
    return err.value


def test_valid_batch_is_flattened_to_floats():
    image = [[float(r + c) for c in range(8)] for r in range(8)]
    image[0][0] = 16  # ints and the inclusive upper bound are fine
    flat = predict(json.dumps({"images": [image, IMAGE]}).encode())
    assert len(flat) == 2 and len(flat[0]) == 64
    assert flat[0][0] == 16.0 and flat[0][9] == 2.0 and all(isinstance(v, float) for v in flat[0])


def test_body_over_the_size_limit():
    rejected(b"[" + b"0," * 3000 + b"0]", 413, "limit is 4096")


def test_empty_body():
    rejected(b"", 400, "empty")


def test_non_json():
    rejected(b"images=1", 400, "not valid JSON")


def test_invalid_utf8():
    rejected(b'{"images": "\xff\xfe"}', 400, "not valid JSON")


def test_nan_literal():
    rejected(b'{"images": [[[NaN, 0, 0, 0, 0, 0, 0, 0]]]}', 400, "NaN")


def test_infinity_from_overflowing_float():
    body = json.dumps({"images": [IMAGE]}).replace("0", "1e999", 1).encode()
    rejected(body, 422, "not a finite number")


def test_deep_nesting():
    rejected(b"[" * 3000 + b"]" * 3000, 413, "limit")  # over the size limit first …
    deep = Limits(max_body_bytes=200_000, max_batch=4)
    with pytest.raises(BadRequest) as err:
        parse_json(b"[" * 100_000 + b"]" * 100_000, deep)
    assert err.value.status == 400 and "nested too deeply" in err.value.message


def test_not_an_object():
    rejected(b"[1, 2]", 422, "JSON object")


def test_missing_images_key():
    rejected(b"{}", 422, "lacks ['images']")


def test_unknown_key():
    rejected(json.dumps({"images": [IMAGE], "extra": 1}).encode(), 422, "unknown keys ['extra']")


def test_images_not_a_list():
    rejected(b'{"images": "abc"}', 422, "must be a list")


def test_empty_batch():
    rejected(b'{"images": []}', 422, "empty")


def test_oversized_batch():
    rejected(json.dumps({"images": [IMAGE] * 5}).encode(), 413, "limit is 4")


def test_wrong_number_of_rows():
    rejected(json.dumps({"images": [IMAGE[:7]]}).encode(), 422, "images[0] must be a list of 8 rows")


def test_wrong_row_length():
    bad = [row[:] for row in IMAGE]
    bad[3] = [0] * 9
    rejected(json.dumps({"images": [IMAGE, bad]}).encode(), 422, "images[1][3] must be a list of 8")


def test_flat_image_instead_of_rows():
    rejected(json.dumps({"images": [[0] * 64]}).encode(), 422, "list of 8 rows")


def test_string_pixel():
    bad = [row[:] for row in IMAGE]
    bad[2][5] = "7"
    rejected(json.dumps({"images": [bad]}).encode(), 422, "images[0][2][5] is str")


def test_boolean_pixel():
    bad = [row[:] for row in IMAGE]
    bad[0][1] = True
    rejected(json.dumps({"images": [bad]}).encode(), 422, "is bool")


def test_null_pixel():
    bad = [row[:] for row in IMAGE]
    bad[7][7] = None
    rejected(json.dumps({"images": [bad]}).encode(), 422, "is NoneType")


@pytest.mark.parametrize("value", [-0.5, 16.01, 10**400])
def test_pixel_out_of_range(value):
    bad = [row[:] for row in IMAGE]
    bad[1][1] = value
    rejected(json.dumps({"images": [bad]}).encode(), 422, "out of range")


def test_feedback_accepts_token_and_label():
    assert validate_feedback({"prediction_id": "abc.def", "label": 3}) == ("abc.def", 3)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"prediction_id": "a.b"}, "lacks ['label']"),
        ({"prediction_id": "a.b", "label": 10}, "between 0 and 9"),
        ({"prediction_id": "a.b", "label": True}, "integer class"),
        ({"prediction_id": "a.b", "label": 2.0}, "integer class"),
        ({"prediction_id": 5, "label": 2}, "non-empty string"),
        ({"prediction_id": "", "label": 2}, "non-empty string"),
        ("a.b", "JSON object"),
    ],
)
def test_feedback_rejections(body, words):
    with pytest.raises(BadRequest) as err:
        validate_feedback(body)
    assert err.value.status == 422 and words in err.value.message


PIXEL = st.one_of(
    st.integers(-2, 18),
    st.floats(-1, 17),
    st.sampled_from([True, False, None, "1", 1e999, -1e999, 10**30, [0]]),
)
IMAGES = st.lists(
    st.lists(st.lists(PIXEL, min_size=7, max_size=9), min_size=7, max_size=9), min_size=0, max_size=5
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    images=st.one_of(
        IMAGES,
        # mostly-valid images: one pixel at most differs from a clean digit
        st.tuples(st.integers(1, 5), PIXEL, st.integers(0, 63)).map(
            lambda t: [
                [[t[1] if (i == 0 and r * 8 + c == t[2]) else 3 for c in range(8)] for r in range(8)]
                for i in range(t[0])
            ]
        ),
    ),
    extra=st.booleans(),
)
def test_fast_parse_decides_exactly_like_the_full_validation(images, extra):
    """parse_predict's numpy path accepts exactly what validate_predict accepts, with the same values."""
    body = {"images": images, **({"x": 1} if extra else {})}
    raw = json.dumps(body).encode()
    try:
        expected = validate_predict(parse_json(raw, LIMITS), LIMITS)
    except BadRequest as exc:
        with pytest.raises(BadRequest) as err:
            parse_predict(raw, LIMITS)
        assert (err.value.status, err.value.message) == (exc.status, exc.message)
    else:
        got = parse_predict(raw, LIMITS)
        assert got.dtype == np.float32 and got.shape == (len(images), 8, 8)
        assert np.array_equal(got.reshape(len(images), 64), np.asarray(expected, dtype=np.float32))
