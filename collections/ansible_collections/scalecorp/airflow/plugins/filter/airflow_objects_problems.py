# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Filter: what is wrong with declared Airflow connections, variables and pools."""

from __future__ import annotations

DOCUMENTATION = r"""
name: airflow_objects_problems
short_description: Check declared Airflow connections, variables and pools
version_added: 0.5.0
description:
  - Returns one message per problem of the declared objects (a missing id or type, an unknown key,
    a port or a slot count that is not a number, an entry declared twice, removing the default pool),
    the checks module C(scalecorp.airflow.airflow_objects) makes, so that preflight refuses a
    malformed entry before any host is contacted. Never shows a value.
options:
  _input:
    description: The declared objects, C({connections, variables, pools}), each a list of entries.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Refuse malformed objects
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('; ') }}"
  vars:
    problems: "{{ {'connections': airflow_connections, 'variables': airflow_variables, 'pools': airflow_pools}
                  | scalecorp.airflow.airflow_objects_problems }}"
"""

RETURN = r"""
_value:
  description: The problems, each naming the entry and what to fix; empty when every entry is fine.
  type: list
  elements: str
"""

from ansible_collections.scalecorp.airflow.plugins.module_utils.airflow_objects import problems


def _airflow_objects_problems(declared):
    declared = dict(declared or {})
    return problems(declared.get("connections"), declared.get("variables"), declared.get("pools"))


class FilterModule:
    def filters(self):
        return {"airflow_objects_problems": _airflow_objects_problems}
