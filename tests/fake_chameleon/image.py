"""Glance v2: the site's images, looked up by name."""

from __future__ import annotations

import re

from tests.fake_chameleon.state import State

SCHEMA = {
    "name": "image",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": ["null", "string"]},
        "status": {"type": "string"},
        "created_at": {"type": "string"},
        "visibility": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": {"type": "string"},
    "links": [],
}


class Image:
    def __init__(self, state: State, base: str):
        self.state = state
        self.base = base

    @staticmethod
    def view(iid, img):
        return {
            "id": iid,
            "name": img["name"],
            "status": "active",
            "created_at": img["created_at"],
            "visibility": "public",
            "tags": [],
            "build-repo": "https://github.com/ChameleonCloud/cc-images",
        }

    def handle(self, method, path, query, body, headers):
        if method == "GET" and path in ("/", "", "/versions"):
            link = {"rel": "self", "href": f"{self.base}/image/v2/"}
            return 200, {"versions": [{"id": "v2.16", "status": "CURRENT", "links": [link]}]}, {}
        if method == "GET" and path == "/v2/schemas/image":
            return 200, SCHEMA, {}
        if method == "GET" and path == "/v2/images":
            imgs = [self.view(i, img) for i, img in self.state.images.items()]
            if "name" in query:
                imgs = [i for i in imgs if i["name"] == query["name"][0]]
            return 200, {"images": imgs, "first": "/v2/images", "schema": "/v2/schemas/images"}, {}
        m = re.fullmatch(r"/v2/images/([^/]+)", path)
        if m and method == "GET":
            if m.group(1) not in self.state.images:
                return 404, {"message": "image not found"}, {}
            return 200, self.view(m.group(1), self.state.images[m.group(1)]), {}
        return 404, {"message": f"no glance route {path}"}, {}
