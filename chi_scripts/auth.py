"""Pointing python-chi at the right Keystone, from OS_* variables or from the spec's site.

python-chi reads OS_* variables only when it is imported and on chi.context.reset(), so every command
resets the context first: a notebook that changes os.environ between calls gets what it set.
"""

from __future__ import annotations

import logging
import os
import warnings

from chi_scripts.errors import CloudError, SpecError
from chi_scripts.spec import Spec

# Variables each auth type needs (names only: values are never printed or stored).
REQUIRED_VARS = {
    "v3applicationcredential": ("OS_APPLICATION_CREDENTIAL_ID", "OS_APPLICATION_CREDENTIAL_SECRET"),
    "v3password": ("OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME"),
    "v3token": ("OS_TOKEN",),
    "v3oidcaccesstoken": ("OS_ACCESS_TOKEN", "OS_IDENTITY_PROVIDER", "OS_PROTOCOL", "OS_PROJECT_NAME"),
}


def quiet_libraries():
    """stevedore logs ERROR lines for optional SAML plugins; neutronclient warns on every client."""
    for name in ("stevedore", "keystoneauth", "chi", "openstack", "novaclient", "neutronclient"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message=".*neutronclient is deprecated.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # openstacksdk 4.x announces removals planned for 5.0 on every call.
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module="openstack")


def auth_type_from_env(env=os.environ) -> str:
    explicit = env.get("OS_AUTH_TYPE")
    if explicit:
        return explicit
    if env.get("OS_APPLICATION_CREDENTIAL_ID"):
        return "v3applicationcredential"
    if env.get("OS_ACCESS_TOKEN"):
        return "v3oidcaccesstoken"
    if env.get("OS_PASSWORD"):
        return "v3password"
    return "v3token"


def connect(spec: Spec) -> str:
    """Configure python-chi's global context and authenticate once; returns a description of the target."""
    quiet_libraries()
    import chi
    import chi.context

    chi.context.reset()
    auth_url = os.environ.get("OS_AUTH_URL")
    if auth_url:
        auth_type = auth_type_from_env()
        if auth_type not in REQUIRED_VARS:
            raise SpecError(
                f"OS_AUTH_TYPE={auth_type!r} is not supported (use one of {sorted(REQUIRED_VARS)})"
            )
        missing = [v for v in REQUIRED_VARS[auth_type] if not os.environ.get(v)]
        if missing:
            raise SpecError(f"OS_AUTH_TYPE {auth_type} needs {', '.join(missing)} in the environment")
        chi.context.set("auth_type", auth_type)
        chi.context.set("auth_url", auth_url)
        where = f"{auth_url} ({auth_type})"
    else:
        if not spec.site:
            raise SpecError(f"{spec.path}: site is needed when OS_AUTH_URL is not set")
        try:
            chi.context.use_site(spec.site)
        except Exception as e:
            raise CloudError(f"cannot select Chameleon site {spec.site}: {e}") from None
        if chi.context.get("region_name") != spec.site:
            raise CloudError(f"cannot select Chameleon site {spec.site}: the site list could not be fetched")
        where = spec.site
    try:
        chi.context.session().get_token()
    except Exception as e:
        raise CloudError(f"authentication at {where} failed: {_reason(e)}") from None
    return where


def _reason(exc: Exception) -> str:
    return str(exc).strip() or type(exc).__name__
