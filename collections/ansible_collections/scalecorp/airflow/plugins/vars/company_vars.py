# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Vars plugin: the company-wide group_vars layer shared by every inventory."""

from __future__ import annotations

DOCUMENTATION = r"""
name: company_vars
version_added: 0.1.0
short_description: Load the company-wide group_vars shared by every inventory
requirements:
  - Enabled in configuration, before C(host_group_vars) (C(vars_plugins_enabled))
description:
  - Loads C(group_vars/) from a company directory (by default the directory of the
    C(ansible.cfg) in use) for every inventory, so that settings shared by all
    inventories (the seed tuning) live in one place.
  - The values land at the same level as an inventory's own C(group_vars/) and just
    below them, so an inventory overrides a company value for the same group, and a
    more specific group beats C(all) as usual.
  - Only group variables are loaded; C(host_vars/) belongs to inventories.
  - Runs when variables are demanded for inventory sources, never for the playbook
    directory, so a company value cannot override an inventory's C(group_vars/all).
options:
  company_vars_dir:
    description: Directory holding the company C(group_vars/). Relative paths are relative to the C(ansible.cfg) in use.
    type: path
    env:
      - name: SCALECORP_COMPANY_VARS_DIR
    ini:
      - section: scalecorp_airflow
        key: company_vars_dir
  stage:
    description: When the plugin runs; see the C(vars_plugin_staging) fragment of ansible-core.
    type: str
    choices: [all, task, inventory]
    default: task
    ini:
      - section: vars_company_vars
        key: stage
    env:
      - name: ANSIBLE_VARS_PLUGIN_STAGE
"""


import os

from ansible import constants as C
from ansible.inventory.group import InventoryObjectType
from ansible.plugins.vars import BaseVarsPlugin
from ansible.utils.vars import combine_vars


def _group_vars(loader, directory: str, groups: list) -> dict:
    """What group_vars/<group>(.yml|/) under `directory` holds for these groups."""
    data: dict = {}
    base = os.path.join(directory, "group_vars")
    if not os.path.isdir(base):
        return data
    for group in groups:
        for found in loader.find_vars_files(base, group.name):
            new = loader.load_from_file(found, cache="all", unsafe=True, trusted_as_template=True)
            if new:
                data = combine_vars(data, new)
    return data


class VarsModule(BaseVarsPlugin):
    is_stateless = True

    def _company_dir(self) -> str | None:
        configured = self.get_option("company_vars_dir")
        cfg_dir = os.path.dirname(C.CONFIG_FILE) if C.CONFIG_FILE else os.getcwd()
        if configured:
            return os.path.realpath(os.path.join(cfg_dir, configured))
        return os.path.realpath(cfg_dir) if C.CONFIG_FILE else None

    def get_vars(self, loader, path, entities, cache=True):
        if not isinstance(entities, list):
            entities = [entities]
        company = self._company_dir()
        if company is None:
            return {}
        source = os.path.realpath(path if os.path.isdir(path) else os.path.dirname(path))
        # Called for the playbook directory too: skip it, inventories only.
        if source == os.path.realpath(loader.get_basedir()) or source == company:
            return {}
        groups = [e for e in entities if getattr(e, "base_type", None) is InventoryObjectType.GROUP]
        if not groups:
            return {}
        data = _group_vars(loader, company, groups)
        if not data:
            return {}
        # The inventory's own group_vars win for the same group, whatever order
        # the vars plugins run in: apply them on top (host_group_vars loads the
        # same files, so combining them twice changes nothing).
        return combine_vars(data, _group_vars(loader, source, groups))
