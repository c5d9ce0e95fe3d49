"""The secrets layer on the controller: generated once, stable, vault-able, never printed."""

from __future__ import annotations

import re
import stat

import pytest
import yaml
from conftest import ROLES, VENV_BIN, playbook, recap, run, why
from cryptography import x509
from cryptography.hazmat.primitives import serialization

pytestmark = pytest.mark.controller
CATALOG = yaml.safe_load((ROLES / "secrets/defaults/main.yml").read_text())["secrets_catalog"]


@pytest.fixture
def inventory(tmp_path):
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "hosts.ini").write_text("host-a ansible_connection=local\nhost-b ansible_connection=local\n")
    return inv


def secrets_of(inv, *args) -> dict:
    proc = run([str(VENV_BIN / "ansible-vault"), "view", *args, str(inv / "group_vars/all/secrets.yml")]) if args else None
    text = proc.stdout if proc else (inv / "group_vars/all/secrets.yml").read_text()
    return yaml.safe_load(text)["scalecorp_secrets"]


def test_generated_once_complete_private_and_stable(inventory):
    first = playbook("tests/playbooks/secrets.yml", inventory=inventory)
    assert first.returncode == 0
    path = inventory / "group_vars/all/secrets.yml"
    values = secrets_of(inventory)
    assert set(values) == set(CATALOG)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert re.findall(r"LOADED (\d+)", first.stdout) == [str(len(CATALOG))] * 2
    # The secrets file, the CA's key and the CA's certificate: generated once, on the first host.
    assert recap(first.stdout)["host-a"]["changed"] == 3
    ca_crt, ca_key = (inventory / "group_vars/all/secrets.ca.crt"), (inventory / "group_vars/all/secrets.ca.key")
    assert stat.S_IMODE(ca_key.stat().st_mode) == 0o600
    with pytest.raises(TypeError, match="encrypted"):  # no password given: the key is encrypted (tls_ca_passphrase)
        serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    serialization.load_pem_private_key(ca_key.read_bytes(), password=values["tls_ca_passphrase"].encode())
    ca = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.subject == ca.issuer and "scalecorp.airflow cluster CA" in ca.subject.rfc4514_string()
    ca_files = (ca_crt.read_bytes(), ca_key.read_bytes())

    second = playbook("tests/playbooks/secrets.yml", "-vvv", inventory=inventory)
    assert second.returncode == 0
    assert secrets_of(inventory) == values
    assert (ca_crt.read_bytes(), ca_key.read_bytes()) == ca_files
    assert all(c["changed"] == 0 for c in recap(second.stdout).values())
    for value in values.values():
        assert value not in first.stdout + first.stderr + second.stdout + second.stderr


def test_a_new_secret_is_added_without_touching_the_others(inventory):
    assert playbook("tests/playbooks/secrets.yml", inventory=inventory).returncode == 0
    before = secrets_of(inventory)
    proc = playbook("tests/playbooks/secrets.yml", "-e", '{"secrets_extra": {"my_token": "hex"}}', inventory=inventory)
    assert proc.returncode == 0, why(proc)
    after = secrets_of(inventory)
    assert re.fullmatch(r"[0-9a-f]{64}", after.pop("my_token"))
    assert after == before
    assert "Generated my_token in" in proc.stdout


def test_vault_encrypted_when_a_vault_password_is_configured(inventory, tmp_path):
    vault_pass = tmp_path / "vault-pass"
    vault_pass.write_text("correct horse battery staple\n")
    proc = playbook("tests/playbooks/secrets.yml", "--vault-password-file", str(vault_pass), inventory=inventory)
    assert proc.returncode == 0, why(proc)
    raw = (inventory / "group_vars/all/secrets.yml").read_text()
    assert raw.startswith("$ANSIBLE_VAULT;1.1;AES256")
    values = secrets_of(inventory, "--vault-password-file", str(vault_pass))
    assert set(values) == set(CATALOG)
    assert all(v not in raw for v in values.values())

    again = playbook("tests/playbooks/secrets.yml", "--vault-password-file", str(vault_pass), inventory=inventory)
    assert again.returncode == 0
    assert (inventory / "group_vars/all/secrets.yml").read_text() == raw
    # Without the password the run stops with Ansible's own clear error.
    locked = playbook("tests/playbooks/secrets.yml", inventory=inventory)
    assert locked.returncode != 0
    assert "vault" in (locked.stdout + locked.stderr).lower()


def test_check_mode_writes_nothing(inventory):
    proc = playbook("tests/playbooks/secrets.yml", "--check", inventory=inventory)
    assert proc.returncode == 0, why(proc)
    assert not (inventory / "group_vars/all/secrets.yml").exists()
    assert not list(inventory.glob("group_vars/all/secrets.ca.*"))
    # Would write: the secrets file, and the CA (one report).
    assert recap(proc.stdout)["host-a"]["changed"] == 2


def test_a_malformed_file_is_refused_and_left_alone(inventory):
    path = inventory / "group_vars/all/secrets.yml"
    path.parent.mkdir(parents=True)
    path.write_text("scalecorp_secrets: [not, a, mapping]\n")
    proc = playbook("tests/playbooks/secrets.yml", inventory=inventory)
    assert proc.returncode != 0
    assert path.read_text() == "scalecorp_secrets: [not, a, mapping]\n"
