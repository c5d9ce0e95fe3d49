"""Inventory validation and the company-wide variable layer, without hosts.

Broken inventories must fail in preflight with a message that names what to
fix, before any change, and before the secrets file is written.
"""

from __future__ import annotations

import copy
import re
import shutil

import pytest
import yaml
from conftest import LAB_INVENTORY, ROOT, assert_refused, playbook, why

pytestmark = pytest.mark.controller

LAB_HOSTS = yaml.safe_load((LAB_INVENTORY / "hosts.yml").read_text())


def children(inv: dict) -> dict:
    return inv["all"]["children"]


def two_primaries(inv):
    children(inv)["postgresql"]["hosts"]["lab-pg2"]["postgresql_role"] = "primary"


def two_sentinels(inv):
    del children(inv)["redis_sentinel"]["hosts"]["lab-lb1"]


def empty_workers(inv):
    children(inv)["airflow"]["children"]["airflow_worker"]["hosts"] = {}


def no_redis_master(inv):
    children(inv)["redis"]["hosts"]["lab-rd1"]["redis_role"] = "replica"


def role_var_outside_group(inv):
    children(inv)["airflow"]["children"]["airflow_worker"]["hosts"]["lab-wk1"] = {"postgresql_role": "replica"}


CASES = {
    "two_primaries": (two_primaries, "group 'postgresql' needs exactly one host with postgresql_role=primary; found 2: lab-pg1, lab-pg2"),
    "two_sentinels": (two_sentinels, "group 'redis_sentinel' needs an odd number of hosts, at least 3"),
    "empty_airflow_worker": (empty_workers, "group 'airflow_worker' has no host"),
    "no_redis_master": (no_redis_master, "group 'redis' needs exactly one host with redis_role=master; found 0"),
    "host_in_wrong_group": (role_var_outside_group, "host 'lab-wk1' sets postgresql_role=replica but is not in group 'postgresql'"),
}


def make_inventory(tmp_path, mutate):
    inv = copy.deepcopy(LAB_HOSTS)
    mutate(inv)
    target = tmp_path / "inventory"
    shutil.copytree(LAB_INVENTORY, target, ignore=shutil.ignore_patterns("secrets.yml"))
    (target / "hosts.yml").write_text(yaml.safe_dump(inv))
    return target


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_inventory_fails_in_preflight_and_changes_nothing(tmp_path, case):
    mutate, message = CASES[case]
    inventory = make_inventory(tmp_path, mutate)
    proc = playbook("playbooks/site.yml", inventory=inventory)
    # It stopped at the inventory check: nothing ran after it, not even on the controller.
    assert_refused(proc, "The inventory must be fixed before anything changes", message, not_reached="Check that every host answers")
    assert not (inventory / "group_vars/all/secrets.yml").exists()


def show_vars(inventory) -> dict:
    proc = playbook("tests/playbooks/show_vars.yml", inventory=inventory)
    assert proc.returncode == 0, why(proc)
    rows = re.findall(r"VARS (\S+) (\S+) (\S+) (\S+)", proc.stdout)
    return {h: {"parallelism": int(p), "concurrency": int(c), "loaded": loaded == "True"} for h, p, c, loaded in rows}


def test_company_group_vars_load_for_every_inventory_and_inventories_override_them():
    lab = show_vars(LAB_INVENTORY)
    prod = show_vars(ROOT / "inventories/production.example")
    assert len(lab) == 9
    assert len(prod) >= 10
    # Company value, no inventory sets it: the same everywhere.
    assert {r["parallelism"] for r in (*lab.values(), *prod.values())} == {256}
    assert all(r["loaded"] is True for r in (*lab.values(), *prod.values()))
    # The lab inventory overrides the company's worker_concurrency; production keeps it.
    assert {r["concurrency"] for r in lab.values()} == {2}
    assert {r["concurrency"] for r in prod.values()} == {16}


def test_a_runbook_imported_from_beside_the_company_group_vars_keeps_the_precedence(tmp_path):
    """The root's site.yml and the others import the collection's playbooks from beside the company
    group_vars/: that directory must not become "playbook group_vars" (which beat an inventory's own).
    The same arrangement in a scratch directory, with show_vars.yml in place of a runbook."""
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars/all.yml").write_text((ROOT / "group_vars/all.yml").read_text())
    wrapper = tmp_path / "runbook.yml"
    wrapper.write_text(f"- name: Import\n  ansible.builtin.import_playbook: {ROOT / 'tests/playbooks/show_vars.yml'}\n")
    proc = playbook(str(wrapper))
    assert proc.returncode == 0, why(proc)
    rows = re.findall(r"VARS (\S+) (\S+) (\S+) (\S+)", proc.stdout)
    assert len(rows) == 9
    assert {c for _, _, c, _ in rows} == {"2"}, "the company's worker_concurrency beat the lab inventory's"


def test_preflight_refuses_a_run_without_the_company_layer(tmp_path):
    # Without the project's ansible.cfg the vars plugin is not enabled.
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text(f"[defaults]\ncollections_path = {ROOT / 'collections'}\n")
    proc = playbook("playbooks/site.yml", ANSIBLE_CONFIG=str(cfg))
    assert_refused(proc, "The company-wide group_vars/ layer was not loaded", not_reached="Check that every host answers")
