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
    description: The declared objects, C({connections, variables, pools}), each a list of entries, and
      optionally C(env), the role's C(airflow_extra_env) mapping (names and values checked, names only shown).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Refuse malformed objects
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('; ') }}"
  vars:
    problems: "{{ {'connections': airflow_connections, 'variables': airflow_variables, 'pools': airflow_pools, 'env': airflow_extra_env}
                  | scalecorp.airflow.airflow_objects_problems }}"
"""

RETURN = r"""
_value:
  description: The problems, each naming the entry and what to fix; empty when every entry is fine.
  type: list
  elements: str
"""

from ansible_collections.scalecorp.airflow.plugins.module_utils.airflow_objects import env_problems, problems


def _airflow_objects_problems(declared):
    declared = dict(declared or {})
    found = problems(declared.get("connections"), declared.get("variables"), declared.get("pools"))
    return found + env_problems(declared.get("env"))


class FilterModule:
    def filters(self):
        return {"airflow_objects_problems": _airflow_objects_problems}
