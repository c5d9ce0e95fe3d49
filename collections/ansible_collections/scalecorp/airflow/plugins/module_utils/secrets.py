# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Generation of the collection's secrets (pure helpers, no Ansible imports)."""

from __future__ import annotations

import base64
import os
import secrets
import string

# kind -> generator. Every kind is safe inside URLs, INI files and shell words.
ALNUM = string.ascii_letters + string.digits


def _alnum(length: int = 40) -> str:
    # 40 characters of 62 symbols: about 238 bits.
    return "".join(secrets.choice(ALNUM) for _index in range(length))


def _fernet() -> str:
    # What cryptography.fernet.Fernet.generate_key() returns.
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _token() -> str:
    # Like `openssl rand -base64 32`, but URL-safe: 256 bits.
    return secrets.token_urlsafe(32)


def _hex() -> str:
    return secrets.token_hex(32)


GENERATORS = {"alnum": _alnum, "fernet": _fernet, "token": _token, "hex": _hex}


def missing_secrets(existing: dict, wanted: dict) -> list:
    """Names in `wanted` (name -> kind) that `existing` lacks or holds empty."""
    unknown = sorted({kind for kind in wanted.values() if kind not in GENERATORS})
    if unknown:
        raise ValueError(f"unknown secret kind(s) {', '.join(unknown)}; use one of {', '.join(sorted(GENERATORS))}")
    return sorted(name for name in wanted if not existing.get(name))


def generate(kind: str) -> str:
    return GENERATORS[kind]()


def complete(existing: dict, wanted: dict) -> tuple:
    """Return (all secrets, names generated now). Existing values are never changed."""
    names = missing_secrets(existing, wanted)
    result = dict(existing)
    for name in names:
        result[name] = generate(wanted[name])
    return result, names
