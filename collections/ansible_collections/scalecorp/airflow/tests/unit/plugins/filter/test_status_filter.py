from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.scalecorp.airflow.plugins.filter.status import FilterModule, status_report


def test_the_filter_takes_a_dict_of_hosts_and_names_the_missing_ones():
    hosts = {
        "h1": {
            "host": "h1",
            "units_expected": ["nginx"],
            "units": "Id=nginx.service\nLoadState=loaded\nActiveState=active\nSubState=running",
        },
        "h2": None,
    }
    result = status_report(hosts, {"time": 0})
    assert result["problems"] == ["h2 status (not collected)"]
    assert FilterModule().filters()["status_report"] is status_report


def test_bad_input_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match="status_report"):
        status_report([{"no": "host"}], {})
