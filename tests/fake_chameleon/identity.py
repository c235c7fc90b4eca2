"""Keystone v3: password, application-credential, token and OIDC access-token auth, and a catalog that
points every service at this fake."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from tests.fake_chameleon.state import PROJECT_ID, USER_ID, HTTPError, State

UNAUTHORIZED = {
    "error": {
        "code": 401,
        "message": "The request you have made requires authentication.",
        "title": "Unauthorized",
    }
}
PROJECT = {"id": PROJECT_ID, "name": "CHI-000000", "domain_id": "d1", "enabled": True}


class Identity:
    def __init__(self, state: State, base: str):
        self.state = state
        self.base = base  # the fake's URL, for the catalog and version links

    def catalog(self):
        def svc(stype, name, suffix):
            return {
                "type": stype,
                "name": name,
                "id": uuid.uuid5(uuid.NAMESPACE_URL, stype).hex,
                "endpoints": [
                    {
                        "id": uuid.uuid5(uuid.NAMESPACE_URL, stype + iface).hex,
                        "interface": iface,
                        "region": self.state.config.region,
                        "region_id": self.state.config.region,
                        "url": f"{self.base}{suffix}",
                    }
                    for iface in ("public", "internal")
                ],
            }

        return [
            svc("identity", "keystone", "/identity/v3"),
            svc("reservation", "blazar", "/reservation/v1"),
            svc("compute", "nova", "/compute/v2.1"),
            svc("network", "neutron", "/network"),
            svc("image", "glance", "/image"),
        ]

    def _issue(self, methods, scoped=True):
        token = uuid.uuid4().hex
        self.state.tokens.add(token)
        now = dt.datetime.now(dt.UTC)
        stamp = "%Y-%m-%dT%H:%M:%S.000000Z"
        body = {
            "token": {
                "methods": methods,
                "expires_at": (now + dt.timedelta(hours=12)).strftime(stamp),
                "issued_at": now.strftime(stamp),
                "user": {
                    "id": USER_ID,
                    "name": self.state.config.username,
                    "domain": {"id": "d1", "name": "chameleon"},
                },
                "audit_ids": [uuid.uuid4().hex[:22]],
            }
        }
        if scoped:
            body["token"] |= {
                "project": {
                    "id": PROJECT_ID,
                    "name": "CHI-000000",
                    "domain": {"id": "d1", "name": "chameleon"},
                },
                "roles": [{"id": "r1", "name": "member"}],
                "catalog": self.catalog(),
            }
        return 201, body, {"X-Subject-Token": token}

    def _authenticate(self, body) -> bool:
        c = self.state.config
        ident = (body or {}).get("auth", {}).get("identity", {})
        methods = ident.get("methods", [])
        if "password" in methods:
            user = ident["password"]["user"]
            return user.get("name") == c.username and user.get("password") == c.password
        if "application_credential" in methods:
            ac = ident["application_credential"]
            return ac.get("id") == c.app_cred_id and ac.get("secret") == c.app_cred_secret
        if "token" in methods:
            tid = ident["token"].get("id")
            return tid == c.static_token or tid in self.state.tokens
        return False

    def handle(self, method, path, body, headers):
        if method == "GET" and path in ("", "/", "/v3", "/v3/"):
            v3 = {
                "id": "v3.14",
                "status": "stable",
                "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": f"{self.base}/identity/v3/"}],
                "media-types": [
                    {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
                ],
            }
            if path.startswith("/v3"):
                return 200, {"version": v3}, {}
            return 300, {"versions": {"values": [v3]}}, {}
        m = re.fullmatch(r"/v3/OS-FEDERATION/identity_providers/([^/]+)/protocols/([^/]+)/auth", path)
        if m and method in ("GET", "POST"):
            if headers.get("Authorization") != f"Bearer {self.state.config.oidc_access_token}":
                raise HTTPError(401, UNAUTHORIZED)
            return self._issue(["openid"], scoped=False)
        if path == "/v3/auth/tokens" and method == "POST":
            if not self._authenticate(body):
                raise HTTPError(401, UNAUTHORIZED)
            return self._issue(body["auth"]["identity"]["methods"])
        if method == "GET" and re.fullmatch(r"/v3/(users/[^/]+/projects|auth/projects)", path):
            return 200, {"projects": [PROJECT]}, {}
        if method == "GET" and path == f"/v3/projects/{PROJECT_ID}":
            return 200, {"project": PROJECT}, {}
        raise HTTPError(404, {"error": {"code": 404, "message": f"no identity route {path}"}})
