"""The collection builds into a tarball that installs and documents itself."""

from __future__ import annotations

import pytest
from conftest import COLLECTION, VENV_BIN, run

pytestmark = pytest.mark.controller


def test_build_install_and_document(tmp_path):
    built = run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(COLLECTION)])
    assert built.returncode == 0
    tarballs = list(tmp_path.glob("scalecorp-airflow-*.tar.gz"))
    assert len(tarballs) == 1
    target = tmp_path / "installed"
    # An empty collections path, without the project's ansible.cfg.
    (tmp_path / "empty.cfg").write_text("[defaults]\n")
    env = {"ANSIBLE_COLLECTIONS_PATH": str(target), "ANSIBLE_CONFIG": str(tmp_path / "empty.cfg")}
    installed = run(
        [str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--offline", "--no-deps", "-p", str(target), str(tarballs[0])],
        cwd=tmp_path,
        **env,
    )
    assert installed.returncode == 0
    assert (target / "ansible_collections/scalecorp/airflow/MANIFEST.json").exists()
    modules = run([str(VENV_BIN / "ansible-doc"), "-l", "scalecorp.airflow"], cwd=tmp_path, **env)
    assert modules.returncode == 0
    assert "scalecorp.airflow.secrets_file" in modules.stdout
    filters = run([str(VENV_BIN / "ansible-doc"), "-t", "filter", "-l", "scalecorp.airflow"], cwd=tmp_path, **env)
    assert "scalecorp.airflow.inventory_problems" in filters.stdout
    roles = run([str(VENV_BIN / "ansible-doc"), "-t", "role", "-l", "scalecorp.airflow"], cwd=tmp_path, **env)
    for role in ("common", "preflight", "secrets"):
        assert f"scalecorp.airflow.{role}" in roles.stdout
