from __future__ import annotations

import base64
import re

import pytest

from ansible_collections.scalecorp.airflow.plugins.module_utils.secrets import complete, generate, missing_secrets


def test_kinds_have_their_shape_and_strength():
    assert re.fullmatch(r"[A-Za-z0-9]{40}", generate("alnum"))
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", generate("token"))
    assert re.fullmatch(r"[0-9a-f]{64}", generate("hex"))
    assert len(base64.urlsafe_b64decode(generate("fernet"))) == 32


def test_values_differ_between_calls():
    assert len({generate("alnum") for _index in range(50)}) == 50


def test_complete_keeps_existing_values_and_fills_only_missing_or_empty():
    existing = {"a": "keep-me", "b": "", "extra": "user-added"}
    merged, generated = complete(existing, {"a": "alnum", "b": "token", "c": "fernet"})
    assert generated == ["b", "c"]
    assert merged["a"] == "keep-me"
    assert merged["extra"] == "user-added"
    assert merged["b"] and merged["c"]


def test_complete_is_stable():
    merged, _generated = complete({}, {"a": "alnum"})
    again, generated = complete(merged, {"a": "alnum"})
    assert again == merged
    assert generated == []


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown secret kind"):
        missing_secrets({}, {"a": "base64"})
