#!/usr/bin/python
# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)

from __future__ import annotations

DOCUMENTATION = r"""
module: airflow_objects
short_description: Airflow connections, variables and pools as code
version_added: 0.5.0
description:
  - Makes the metadata database hold the declared connections, variables and pools, through Airflow's own
    models in its virtualenv (run on an Airflow host, as root; the Airflow code runs as the airflow user).
  - A declared object is the whole truth about it (a field left out is unset); objects not declared are left
    alone unless declared with C(state=absent).
  - Reads first and writes only what differs, in one transaction; in check mode it only reads and reports
    what it would do. Reports the names of what changed, never a value.
  - A malformed entry fails before anything is read or written, naming the entry and what to fix.
    The logic lives in C(module_utils/airflow_objects.py).
options:
  connections:
    description: Connections; each is the whole truth about its connection (a field left out is unset).
    type: list
    elements: dict
    default: []
    suboptions:
      conn_id: {description: The connection id., type: str, required: true}
      conn_type: {description: "Its type (postgres, http, aws, ...); required unless O(connections[].state=absent).", type: str}
      description: {description: What it is for., type: str}
      host: {description: Host., type: str}
      schema: {description: Schema or database., type: str}
      login: {description: Login., type: str}
      password: {description: Password (never shown)., type: str}
      port: {description: Port (1 to 65535)., type: raw}
      extra: {description: "Extra settings: a mapping or its JSON text (never shown).", type: raw}
      state: {description: C(absent) removes it., type: str, default: present, choices: [present, absent]}
  variables:
    description: Variables.
    type: list
    elements: dict
    default: []
    suboptions:
      key: {description: The variable's key., type: str, required: true}
      value: {description: "Its value: text, or any value, stored as JSON (never shown).", type: raw}
      description: {description: What it is for., type: str}
      state: {description: C(absent) removes it., type: str, default: present, choices: [present, absent]}
  pools:
    description: Pools. Airflow's C(default_pool) may be declared to set its slots, not removed.
    type: list
    elements: dict
    default: []
    suboptions:
      name: {description: The pool's name., type: str, required: true}
      slots: {description: "Its slots, -1 for unlimited.", type: raw}
      description: {description: What it is for., type: str}
      include_deferred: {description: Whether deferred tasks take slots., type: bool, default: false}
      state: {description: C(absent) removes it., type: str, default: present, choices: [present, absent]}
  airflow_command:
    description: The role's C(airflow) wrapper, which runs the virtualenv's programs as the airflow user with its environment.
    type: path
    default: /usr/local/bin/airflow
attributes:
  check_mode:
    support: full
    description: Reads and reports the plan, writes nothing.
  diff_mode:
    support: none
    description: Values are secrets; the result names the objects instead.
  platform:
    support: full
    platforms: posix
    description: An Airflow host of this collection.
author:
  - ScaleCorp Platform Team (@scalecorp)
"""

EXAMPLES = r"""
- name: The company's connections, variables and pools
  scalecorp.airflow.airflow_objects:
    connections:
      - conn_id: warehouse
        conn_type: postgres
        host: warehouse.example.com
        login: etl
        password: "{{ vault_warehouse_password }}"
        extra: {sslmode: verify-full}
    variables:
      - {key: environment, value: production}
    pools:
      - {name: warehouse, slots: 8}
  no_log: true
"""

RETURN = r"""
changes:
  description: One line per change, names only.
  returned: always
  type: list
  elements: str
  sample: ["connection warehouse: create", "pool warehouse: update"]
plan:
  description: Per kind (connections, variables, pools), the names to create, update and delete.
  returned: always
  type: dict
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalecorp.airflow.plugins.module_utils import airflow_objects as objects


def run_airflow(module: AnsibleModule, request: dict) -> dict:
    rc, out, err = module.run_command(
        [module.params["airflow_command"], "-c", objects.RUNNER],
        data=json.dumps(request),
        environ_update={"AIRFLOW_WRAPPER_PROGRAM": "python"},
        binary_data=False,
    )
    if rc != 0:
        tail = "\n".join((err or out).strip().splitlines()[-8:])
        module.fail_json(msg=f"Airflow could not {request['action']} its connections, variables and pools (rc={rc}): {tail}")
    try:
        return objects.runner_output(out)
    except ValueError as exc:
        module.fail_json(msg=f"{exc}: {(err or out)[-500:]}")


def main() -> None:
    # Only the secrets are no_log: Ansible masks a no_log value wherever it appears in the
    # output, and the names of what changed must stay readable. Types are raw: problems()
    # checks them and says what to fix.
    state = {"type": "str", "default": "present", "choices": list(objects.STATES)}
    module = AnsibleModule(
        argument_spec={
            "connections": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "conn_id": {"type": "str", "required": True},
                    "conn_type": {"type": "str"},
                    "description": {"type": "str"},
                    "host": {"type": "str"},
                    "schema": {"type": "str"},
                    "login": {"type": "str"},
                    "password": {"type": "str", "no_log": True},
                    "port": {"type": "raw"},
                    "extra": {"type": "raw", "no_log": True},
                    "state": state,
                },
            },
            "variables": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "key": {"type": "str", "required": True, "no_log": False},
                    "value": {"type": "raw", "no_log": True},
                    "description": {"type": "str"},
                    "state": state,
                },
            },
            "pools": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "name": {"type": "str", "required": True},
                    "slots": {"type": "raw"},
                    "description": {"type": "str"},
                    "include_deferred": {"type": "bool", "default": False},
                    "state": state,
                },
            },
            "airflow_command": {"type": "path", "default": "/usr/local/bin/airflow"},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        wanted = objects.desired(p["connections"], p["variables"], p["pools"])  # checks them first
    except ValueError as exc:
        module.fail_json(msg=f"Fix airflow_connections, airflow_variables or airflow_pools: {exc}")
    if not any(wanted.values()):
        module.exit_json(changed=False, changes=[], plan=objects.plan(wanted, {}))
    current = run_airflow(module, {"action": "read"})
    steps = objects.plan(wanted, current)
    lines = objects.summary(steps)
    if lines and not module.check_mode:
        changed = {kind: {name: wanted[kind][name] for verbs in steps[kind].values() for name in verbs} for kind in objects.KINDS}
        run_airflow(module, {"action": "apply", "objects": changed})
    module.exit_json(changed=bool(lines), changes=lines, plan=steps)


if __name__ == "__main__":
    main()
