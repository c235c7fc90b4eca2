"""bcrypt for ArgoCD's admin password: hash it, and tell whether a stored hash already matches it.

ArgoCD keeps the admin password as a bcrypt hash in the argocd-secret Secret. A fresh hash differs every
run (random salt), so the role only writes one when the stored hash does not match the wanted password.
"""

from ansible.errors import AnsibleFilterError

try:
    import bcrypt
except ImportError:  # pragma: no cover - depends on the controller's Python
    bcrypt = None


def _require_bcrypt():
    if bcrypt is None:
        raise AnsibleFilterError(
            "the argocd role needs the Python 'bcrypt' package on the controller (pip install bcrypt)"
        )


def argocd_bcrypt_hash(password, rounds=10):
    """A $2a$ bcrypt hash of password, the form ArgoCD writes itself."""
    _require_bcrypt()
    if not password:
        raise AnsibleFilterError("refusing to hash an empty ArgoCD admin password")
    salt = bcrypt.gensalt(rounds=int(rounds), prefix=b"2a")
    return bcrypt.hashpw(str(password).encode(), salt).decode()


def argocd_bcrypt_matches(stored_hash, password):
    """True when stored_hash (possibly empty) is a bcrypt hash of password."""
    _require_bcrypt()
    if not stored_hash or not password:
        return False
    try:
        return bcrypt.checkpw(str(password).encode(), str(stored_hash).encode())
    except ValueError:
        return False


class FilterModule:
    def filters(self):
        return {
            "argocd_bcrypt_hash": argocd_bcrypt_hash,
            "argocd_bcrypt_matches": argocd_bcrypt_matches,
        }
