from __future__ import annotations

import bcrypt
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.scalecorp.airflow.plugins.filter.web_auth import FilterModule, bcrypt_hash, derived_salt


def test_hash_verifies_and_is_stable_across_runs():
    first = bcrypt_hash("s3cret-Password", "prometheus/admin")
    assert first.startswith("$2b$10$") and len(first) == 60
    assert bcrypt.checkpw(b"s3cret-Password", first.encode())
    assert not bcrypt.checkpw(b"s3cret-password", first.encode())
    assert bcrypt_hash("s3cret-Password", "prometheus/admin") == first  # a rerun writes the same file


def test_another_password_or_seed_gives_another_salt():
    base = bcrypt_hash("one", "prometheus/admin")
    assert bcrypt_hash("two", "prometheus/admin")[:29] != base[:29]
    assert bcrypt_hash("one", "alertmanager/admin")[:29] != base[:29]


def test_salt_is_canonical_bcrypt_base64():
    salt = derived_salt("anything", "seed", 12)
    assert salt.startswith(b"$2b$12$") and len(salt) == 29
    # 16 bytes in bcrypt's alphabet: the last character carries 2 bits, so it is one of . O e u
    assert chr(salt[-1]) in ".Oeu"
    assert bcrypt.hashpw(b"x", salt).startswith(salt)


@pytest.mark.parametrize(
    ("password", "rounds", "message"),
    [("", 10, "non-empty"), (None, 10, "non-empty"), ("x" * 73, 10, "72 bytes"), ("pw", 3, "rounds must be 4..31")],
)
def test_bad_input_is_refused(password, rounds, message):
    with pytest.raises(AnsibleFilterError, match=message):
        bcrypt_hash(password, "seed", rounds)


def test_the_filter_is_registered():
    assert FilterModule().filters()["bcrypt_hash"] is bcrypt_hash
