from __future__ import annotations

import json

import pytest

from ansible_collections.scalecorp.airflow.plugins.module_utils import airflow_objects as objects

HTTP = {
    "conn_id": "lab_http",
    "conn_type": "http",
    "host": "example.com",
    "port": 443,
    "login": "etl",
    "password": "s3cret",
    "extra": {"b": 1, "a": 2},
}


def test_a_well_formed_declaration_has_no_problem():
    assert (
        objects.problems([HTTP], [{"key": "env", "value": "lab"}, {"key": "cfg", "value": {"x": [1]}}], [{"name": "etl", "slots": 4}]) == []
    )
    assert objects.problems() == []


@pytest.mark.parametrize(
    ("connections", "variables", "pools", "message"),
    [
        ([{"conn_type": "http"}], None, None, "airflow_connections[0]: conn_id must be"),
        ([{"conn_id": "bad id", "conn_type": "http"}], None, None, "conn_id must be letters"),
        ([{"conn_id": "x"}], None, None, "airflow_connections x: conn_type is required"),
        ([{"conn_id": "x", "conn_type": "http", "port": "eighty"}], None, None, "port must be a number from 1 to 65535, not 'eighty'"),
        ([{"conn_id": "x", "conn_type": "http", "extra": "[1]"}], None, None, "extra must be a mapping"),
        ([{"conn_id": "x", "conn_type": "http", "hots": "a"}], None, None, "unknown keys hots"),
        ([HTTP, HTTP], None, None, "airflow_connections lab_http: declared twice"),
        ({"conn_id": "x"}, None, None, "airflow_connections must be a list of entries, not dict"),
        (None, [{"key": "v"}], None, "airflow_variables v: value is required"),
        (None, [{"key": "v", "value": 1, "state": "gone"}], None, "state must be present or absent, not 'gone'"),
        (None, None, [{"name": "p", "slots": "4"}], "airflow_pools p: slots must be a whole number"),
        (None, None, [{"name": "p", "slots": -2}], "slots must be a whole number, 0 or more (-1: unlimited), not -2"),
        (None, None, [{"name": "default_pool", "state": "absent"}], "default pool cannot be removed"),
    ],
)
def test_each_malformed_entry_is_named_with_what_to_fix(connections, variables, pools, message):
    found = objects.problems(connections, variables, pools)
    assert any(message in p for p in found), found
    with pytest.raises(ValueError):
        objects.desired(connections, variables, pools)


def test_problems_never_show_a_secret():
    found = objects.problems([{"conn_id": "x", "password": "s3cret", "port": "no"}])
    assert found and not any("s3cret" in p for p in found)


def current_of(wanted: dict) -> dict:
    """What the database answers once `wanted` is applied (RUNNER's read form)."""
    return {kind: {name: dict(form) for name, form in forms.items() if form is not None} for kind, forms in wanted.items()}


def test_plan_creates_then_finds_nothing_to_do_then_updates_and_deletes():
    wanted = objects.desired([HTTP], [{"key": "cfg", "value": {"x": [1]}}], [{"name": "etl", "slots": 4}])
    first = objects.plan(wanted, {})
    assert objects.summary(first) == ["connection lab_http: create", "variable cfg: create", "pool etl: create"]
    # Applied: the database answers the same forms, with extra's keys in any order and ports as numbers.
    db = current_of(wanted)
    db["connections"]["lab_http"]["extra"] = json.dumps({"a": 2, "b": 1}, indent=2)
    db["pools"]["default_pool"] = {"slots": 128, "description": "Default pool", "include_deferred": False}
    db["connections"]["airflow_db"] = {"conn_type": "postgres"}
    assert objects.changes(objects.plan(wanted, db)) == 0
    # A new password, a removed description, a resized pool, a connection declared absent.
    changed = objects.desired(
        [{**HTTP, "password": "new"}, {"conn_id": "airflow_db", "state": "absent"}],
        [{"key": "cfg", "value": {"x": [1]}}],
        [{"name": "etl", "slots": 8}],
    )
    steps = objects.plan(changed, db)
    assert objects.summary(steps) == ["connection lab_http: update", "connection airflow_db: delete", "pool etl: update"]
    # Absent and not there: nothing to do.
    assert objects.changes(objects.plan(objects.desired(None, [{"key": "gone", "state": "absent"}]), db)) == 0


def test_a_field_left_out_is_unset_and_values_that_are_not_text_are_json():
    wanted = objects.desired([{"conn_id": "c", "conn_type": "http"}], [{"key": "n", "value": 3}])
    assert wanted["connections"]["c"] == {
        "conn_type": "http",
        "description": None,
        "host": None,
        "schema": None,
        "login": None,
        "password": None,
        "port": None,
        "extra": None,
    }
    assert wanted["variables"]["n"]["value"] == "3"
    db = {
        "connections": {"c": {**wanted["connections"]["c"], "description": "set by hand"}},
        "variables": {"n": {"value": "3", "description": None}},
    }
    assert objects.summary(objects.plan(wanted, db)) == ["connection c: update"]


def test_the_runner_result_is_found_among_airflow_warnings():
    out = 'some warning\nSCALECORP-JSON {"applied": true}\n'
    assert objects.runner_output(out) == {"applied": True}
    with pytest.raises(ValueError):
        objects.runner_output("Traceback ...")


def test_the_runner_is_valid_python():
    compile(objects.RUNNER, "airflow_objects runner", "exec")


def test_extra_environment_names_and_values_that_the_env_file_cannot_hold():
    assert objects.env_problems({"AIRFLOW__SECRETS__BACKEND": "x.y.Backend", "HTTPS_PROXY": "http://proxy:3128", "N": 3}) == []
    found = objects.env_problems(
        {"1BAD": "x", "AIRFLOW_HOME": "/tmp", "TOKEN": 'a"b', "DOLLAR": "$HOME", "LIST": ["a"], "OK": "fine s3cret"}
    )
    assert [f.split(":", maxsplit=1)[0] for f in found] == [
        "airflow_extra_env '1BAD'",
        "airflow_extra_env AIRFLOW_HOME",
        "airflow_extra_env TOKEN",
        "airflow_extra_env DOLLAR",
        "airflow_extra_env LIST",
    ]
    assert not any("s3cret" in f or '"' in f.split(":", 1)[1] for f in found)
    assert objects.env_problems("A=1") == ["airflow_extra_env must be a mapping of NAME: value, not str"]
