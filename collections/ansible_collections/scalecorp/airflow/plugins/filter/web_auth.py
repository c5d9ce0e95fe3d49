# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""bcrypt_hash: the bcrypt hash Prometheus' and Alertmanager's web config want.

Deterministic: the salt is derived from the password and a seed, so the same
password gives the same hash on every run (a rerun changes nothing) and a new
password gives a new hash. Its documentation is in bcrypt_hash.yml beside this file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from ansible.errors import AnsibleFilterError

try:
    import bcrypt

    HAS_BCRYPT = True
except ImportError:  # pragma: no cover - the controller's requirements install it
    HAS_BCRYPT = False

_STD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def derived_salt(password: str, seed: str, rounds: int = 10) -> bytes:
    """A bcrypt salt ($2b$<rounds>$ + 22 characters) from HMAC-SHA256(password, seed)."""
    raw = hmac.new(password.encode(), seed.encode(), hashlib.sha256).digest()[:16]
    encoded = base64.b64encode(raw).rstrip(b"=").translate(bytes.maketrans(_STD, _BCRYPT))
    return b"$2b$%02d$" % rounds + encoded


def bcrypt_hash(password, seed, rounds=10):
    if not HAS_BCRYPT:
        raise AnsibleFilterError("bcrypt_hash needs the Python package bcrypt on the controller (requirements.txt)")
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("bcrypt_hash: the password must be a non-empty string")
    if len(password.encode()) > 72:
        raise AnsibleFilterError("bcrypt_hash: bcrypt takes at most 72 bytes of password")
    if not 4 <= int(rounds) <= 31:
        raise AnsibleFilterError(f"bcrypt_hash: rounds must be 4..31, not {rounds}")
    return bcrypt.hashpw(password.encode(), derived_salt(password, str(seed), int(rounds))).decode()


class FilterModule:
    def filters(self):
        return {"bcrypt_hash": bcrypt_hash}
