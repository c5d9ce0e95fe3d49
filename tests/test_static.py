"""Quality gates on the tree: linters, collection sanity, specs, generated docs."""

from __future__ import annotations

import re
import sys

import pytest
import yaml
from conftest import COLLECTION, ROLES, ROOT, VENV_BIN, run, why

pytestmark = pytest.mark.lint
ROLE_DIRS = sorted(p for p in ROLES.iterdir() if p.is_dir())
PLAYBOOKS = sorted(p for p in (ROOT / "playbooks").glob("*.yml") if p.name != "preflight.yml")


def test_yamllint():
    assert run([str(VENV_BIN / "yamllint"), "-s", "."]).returncode == 0


def test_ansible_lint_production_profile():
    proc = run([str(VENV_BIN / "ansible-lint"), "--profile", "production", "--offline"])
    assert proc.returncode == 0, why(proc)


def test_ruff_lint():
    assert run([str(VENV_BIN / "ruff"), "check", "."]).returncode == 0


def test_ruff_format():
    assert run([str(VENV_BIN / "ruff"), "format", "--check", "."]).returncode == 0


def test_ansible_test_sanity():
    proc = run([str(VENV_BIN / "ansible-test"), "sanity", "--venv", "--python", "3.11", "--color", "no"], cwd=COLLECTION)
    assert proc.returncode == 0, why(proc)
    assert 'Running sanity test "validate-modules"' in proc.stdout


@pytest.mark.parametrize("role", ROLE_DIRS, ids=lambda p: p.name)
def test_defaults_and_argument_specs_agree(role):
    specs_file = role / "meta/argument_specs.yml"
    assert specs_file.exists(), f"{role.name} has no meta/argument_specs.yml"
    # Every entry point's options: a role's tasks_from entry (secrets: certificate) has defaults too.
    options = {}
    for entry in yaml.safe_load(specs_file.read_text())["argument_specs"].values():
        options.update(entry.get("options") or {})
    defaults_file = role / "defaults/main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}
    assert set(defaults) - set(options) == set(), f"{role.name}: defaults without a spec"
    for name, spec in options.items():
        assert spec.get("description"), f"{role.name}: {name} has no description"
        assert name.startswith(f"{role.name}_"), f"{role.name}: {name} is not prefixed with the role name"
        if "default" in spec:
            assert name in defaults, f"{role.name}: {name} has a spec default but is not in defaults/main.yml"
            assert spec["default"] == defaults[name], (
                f"{role.name}: {name} defaults differ: spec {spec['default']!r}, defaults {defaults[name]!r}"
            )
        elif name in defaults and isinstance(defaults[name], str) and "{{" not in defaults[name] and not spec.get("no_log"):
            pytest.fail(f"{role.name}: {name} has a literal default that the spec does not state")


def test_variables_doc_is_current():
    assert run([sys.executable, str(ROOT / "tools/gen_variables_doc.py"), "--check"]).returncode == 0


def test_collection_readme_is_current():
    """The collection README lists every runbook, role, module and plugin (make docs)."""
    assert run([sys.executable, str(ROOT / "tools/gen_collection_readme.py"), "--check"]).returncode == 0


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in str(text).split("."))


def test_one_version_in_galaxy_changelog_and_version_added():
    """galaxy.yml has the version; no plugin was added in a later one; CHANGELOG.md has its entry."""
    version = str(yaml.safe_load((COLLECTION / "galaxy.yml").read_text())["version"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    added = {}
    for path in sorted((COLLECTION / "plugins").rglob("*")):
        if path.suffix in (".py", ".yml") and path.is_file():
            for found in re.findall(r"^\s*version_added:\s*[\"']?([\d.]+)", path.read_text(), re.M):
                added[f"{path.relative_to(COLLECTION)} {found}"] = found
    assert added, "no version_added found"
    newer = sorted(k for k, v in added.items() if _version(v) > _version(version))
    assert not newer, f"version_added newer than galaxy.yml's {version}: {newer}"
    changelog = (COLLECTION / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(version)}\b", changelog, re.M), f"CHANGELOG.md has no entry for {version}"
    for found in set(added.values()):
        assert re.search(rf"^## {re.escape(found)}\b", changelog, re.M), f"CHANGELOG.md has no entry for {found}"


@pytest.mark.parametrize("path", PLAYBOOKS, ids=lambda p: p.name)
def test_every_playbook_starts_with_preflight(path):
    plays = yaml.safe_load(path.read_text())
    assert plays[0].get("ansible.builtin.import_playbook") == "preflight.yml", f"{path.name} must import preflight.yml first"


def test_root_runbooks_import_the_collections_one_definition():
    """site.yml and the others at the root only import scalecorp.airflow.<name>; playbooks/ is a link."""
    link = ROOT / "playbooks"
    assert link.is_symlink() and link.resolve() == (COLLECTION / "playbooks").resolve()
    for path in sorted((COLLECTION / "playbooks").glob("*.yml")):
        assert path.stem.isidentifier(), f"{path.name}: scalecorp.airflow.{path.stem} is not a valid name"
        wrapper = ROOT / f"{path.stem.replace('_', '-')}.yml"
        assert wrapper.is_file(), f"no {wrapper.name} at the root for scalecorp.airflow.{path.stem}"
        (play,) = yaml.safe_load(wrapper.read_text())
        assert set(play) == {"name", "ansible.builtin.import_playbook"}, wrapper.name
        assert play["ansible.builtin.import_playbook"] == f"scalecorp.airflow.{path.stem}", wrapper.name
