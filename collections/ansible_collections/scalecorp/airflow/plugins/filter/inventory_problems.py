# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Filter: check an inventory against the collection's group contract."""

from __future__ import annotations

DOCUMENTATION = r"""
name: inventory_problems
short_description: Check an inventory against the groups the collection expects
version_added: 0.1.0
description:
  - Returns the errors and warnings of an inventory, that is missing groups, airflow_* groups
    that are not children of C(airflow), the number of PostgreSQL primaries and Redis
    masters, role variables on hosts outside their group, and an even or too small
    number of Redis sentinels.
options:
  _input:
    description: Ansible's C(groups) magic variable.
    type: dict
    required: true
  hostvars:
    description: Ansible's C(hostvars) magic variable.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Fail on a broken inventory
  ansible.builtin.assert:
    that: (groups | scalecorp.airflow.inventory_problems(hostvars)).errors | length == 0
"""

RETURN = r"""
_value:
  description: A dict with C(errors) and C(warnings), each a list of messages.
  type: dict
"""

from ansible_collections.scalecorp.airflow.plugins.module_utils.inventory import inventory_problems


def _inventory_problems(groups, hostvars):
    return inventory_problems(dict(groups), hostvars)


class FilterModule:
    def filters(self):
        return {"inventory_problems": _inventory_problems}
