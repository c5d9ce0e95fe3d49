"""The collection builds into a tarball that installs, documents itself and runs its runbooks.

The tarball is built and installed once per module, into a fresh collections path, with a
configuration of its own (not the project's ansible.cfg): what a user of the installed
collection has.
"""

from __future__ import annotations

import tarfile

import pytest
from conftest import COLLECTION, LAB_INVENTORY, ROOT, VENV_BIN, assert_refused, run, why

pytestmark = pytest.mark.controller

RUNBOOKS = sorted(p.stem for p in (COLLECTION / "playbooks").glob("*.yml"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(tarball, the environment that sees only the installed copy of the collection, its cwd)."""
    tmp = tmp_path_factory.mktemp("collection")
    built = run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp), str(COLLECTION)])
    assert built.returncode == 0, why(built)
    tarballs = list(tmp.glob("scalecorp-airflow-*.tar.gz"))
    assert len(tarballs) == 1
    target = tmp / "installed"
    # An empty collections path (the collection's dependencies come with the `ansible`
    # package, found beside ansible-core), without the project's ansible.cfg.
    (tmp / "empty.cfg").write_text("[defaults]\n")
    env = {"ANSIBLE_COLLECTIONS_PATH": str(target), "ANSIBLE_CONFIG": str(tmp / "empty.cfg")}
    installed = run(
        [str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--offline", "--no-deps", "-p", str(target), str(tarballs[0])],
        cwd=tmp,
        **env,
    )
    assert installed.returncode == 0, why(installed)
    assert (target / "ansible_collections/scalecorp/airflow/MANIFEST.json").exists()
    return tarballs[0], env, tmp


def test_install_and_document(installed):
    _, env, cwd = installed
    modules = run([str(VENV_BIN / "ansible-doc"), "-l", "scalecorp.airflow"], cwd=cwd, **env)
    assert modules.returncode == 0
    assert "scalecorp.airflow.secrets_file" in modules.stdout
    filters = run([str(VENV_BIN / "ansible-doc"), "-t", "filter", "-l", "scalecorp.airflow"], cwd=cwd, **env)
    assert "scalecorp.airflow.inventory_problems" in filters.stdout
    roles = run([str(VENV_BIN / "ansible-doc"), "-t", "role", "-l", "scalecorp.airflow"], cwd=cwd, **env)
    for role in ("common", "preflight", "secrets"):
        assert f"scalecorp.airflow.{role}" in roles.stdout


def test_the_tarball_ships_every_runbook(installed):
    tarball, _, _ = installed
    with tarfile.open(tarball) as tar:
        shipped = {name for name in tar.getnames() if name.startswith("playbooks/")}
    assert {f"playbooks/{name}.yml" for name in RUNBOOKS} <= shipped
    assert {"site", "upgrade", "scale", "backup", "restore", "status", "maintenance", "pg_switchover", "preflight"} <= set(RUNBOOKS)


def test_every_shipped_runbook_passes_syntax_check_by_its_name(installed):
    _, env, cwd = installed
    names = [f"scalecorp.airflow.{name}" for name in RUNBOOKS]
    proc = run([str(VENV_BIN / "ansible-playbook"), "--syntax-check", "-i", str(LAB_INVENTORY), *names], cwd=cwd, **env)
    assert proc.returncode == 0, why(proc)
    for name in RUNBOOKS:  # each from the installed copy
        assert f"playbook: {cwd}/installed/ansible_collections/scalecorp/airflow/playbooks/{name}.yml" in proc.stdout


def test_the_installed_scale_refuses_a_bad_request_before_any_host_is_contacted(installed):
    """`ansible-playbook scalecorp.airflow.scale -e workers=abc`, from the installed copy, with a
    user's own ansible.cfg that enables the collection's company vars plugin."""
    _, env, cwd = installed
    cfg = cwd / "user.cfg"
    cfg.write_text(
        "[defaults]\nvars_plugins_enabled = scalecorp.airflow.company_vars, host_group_vars\n"
        f"interpreter_python = auto_silent\n\n[scalecorp_airflow]\ncompany_vars_dir = {ROOT}\n"
    )
    cmd = [str(VENV_BIN / "ansible-playbook"), "scalecorp.airflow.scale", "-e", "workers=abc", "-i", str(LAB_INVENTORY)]
    proc = run(cmd, cwd=cwd, **{**env, "ANSIBLE_CONFIG": str(cfg)})
    assert_refused(
        proc,
        'workers must be a whole number of worker instances, not "abc"',
        "Nothing was changed",
        not_reached="Check that every host answers",
    )
