"""Unit tests import the collection as ansible_collections.scalecorp.airflow."""

import sys
from pathlib import Path

import pytest

COLLECTIONS = Path(__file__).resolve().parents[5]
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    # The hook sees every item of the session: mark only the tests under this directory.
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.unit)
