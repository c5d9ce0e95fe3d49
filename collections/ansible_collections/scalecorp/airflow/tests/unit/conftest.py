"""Unit tests import the collection as ansible_collections.scalecorp.airflow."""

import sys
from pathlib import Path

import pytest

COLLECTIONS = Path(__file__).resolve().parents[5]
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.unit)
