# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Action: keep an inventory's secrets file complete, on the controller."""

from __future__ import annotations

import os
import tempfile

import yaml
from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes
from ansible.parsing.vault import VaultLib, is_encrypted_file
from ansible.plugins.action import ActionBase

from ansible_collections.scalecorp.airflow.plugins.module_utils.secrets import complete

HEADER = (
    "# Secrets of this inventory, generated once by scalecorp.airflow and never regenerated.\n"
    "# Keep this file vault-encrypted in version control (ansible-vault encrypt).\n"
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        path = args.get("path")
        wanted = args.get("secrets") or {}
        var_name = args.get("variable", "scalecorp_secrets")
        encrypt = args.get("encrypt", "auto")
        if not path or not isinstance(wanted, dict):
            raise AnsibleActionFail("secrets_file needs 'path' and 'secrets' (a dict of name: kind)")
        if encrypt not in ("auto", "always", "never"):
            raise AnsibleActionFail("encrypt must be one of auto, always, never")

        vault = self._loader._vault  # the vault secrets of this run, if any
        has_vault = bool(getattr(vault, "secrets", None))
        existing: dict = {}
        was_encrypted = False
        if os.path.exists(path):
            with open(path, "rb") as fh:
                was_encrypted = is_encrypted_file(fh)
            data = self._loader.load_from_file(path) or {}
            if not isinstance(data, dict) or not isinstance(data.get(var_name, {}), dict):
                raise AnsibleActionFail(f"{path} must hold a mapping under '{var_name}'")
            existing = dict(data.get(var_name) or {})

        try:
            merged, generated = complete(existing, wanted)
        except ValueError as exc:
            raise AnsibleActionFail(str(exc)) from exc

        want_encrypted = encrypt == "always" or (encrypt == "auto" and (has_vault or was_encrypted))
        if want_encrypted and not has_vault:
            raise AnsibleActionFail(f"{path} must be vault-encrypted but no vault password is configured")
        rewrite = bool(generated) or (want_encrypted and not was_encrypted)
        result.update(
            changed=rewrite,
            path=path,
            generated=generated,
            encrypted=want_encrypted if rewrite else was_encrypted,
            count=len(merged),
        )
        if not rewrite:
            return result
        if self._task.check_mode:
            # Nothing is written; hand the would-be values to the run so that the
            # rest of a check-mode run can template (the caller keeps it no_log).
            result["secrets"] = {str(k): str(v) for k, v in merged.items()}
            return result

        text = HEADER + yaml.safe_dump({str(var_name): {str(k): str(v) for k, v in sorted(merged.items())}}, default_flow_style=False)
        payload = to_bytes(text)
        if want_encrypted:
            payload = VaultLib(vault.secrets).encrypt(payload)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".secrets-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.chmod(tmp_path, 0o600)
            os.replace(tmp_path, path)
        finally:
            if os.path.exists(tmp_path):
                os.unlink(tmp_path)
        return result
