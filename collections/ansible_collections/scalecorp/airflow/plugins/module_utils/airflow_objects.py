# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Airflow connections, variables and pools as code (role `airflow`, module `airflow_objects`).

Plain Python, no Ansible imports:

- `problems()` lists what is wrong with the declared objects (the preflight filter
  `scalecorp.airflow.airflow_objects_problems` shows it before any host is contacted);
- `desired()` turns the declared objects into their canonical form;
- `plan()` compares them with what the metadata database holds (read by `RUNNER` in the
  Airflow virtualenv) and lists what to create, update and delete, by name only.

A declared object is the whole truth about it: a field left out is unset (a connection
without `description` loses the one set by hand). Objects not declared are left alone,
unless declared with `state: absent`. Values that are secrets (connection passwords and
extras, variable values) travel to the host on standard input, never on a command line,
and the plan names objects, never values.
"""

from __future__ import annotations

import json
import re

KINDS = ("connections", "variables", "pools")
CONNECTION_FIELDS = ("conn_type", "description", "host", "schema", "login", "password", "port", "extra")
CONNECTION_KEYS = {"conn_id", "state", *CONNECTION_FIELDS}
VARIABLE_KEYS = {"key", "value", "description", "state"}
POOL_KEYS = {"name", "slots", "description", "include_deferred", "state"}
STATES = ("present", "absent")
# Airflow's own rule for connection ids (airflow.models.connection.sanitize_conn_id), and a
# sane one for variable keys and pool names.
ID_PATTERN = re.compile(r"^[\w.~-]{1,250}$")
DEFAULT_POOL = "default_pool"


def _entries(kind: str, value) -> tuple[list, list[str]]:
    if value is None:
        return [], []
    if not isinstance(value, list):
        return [], [f"airflow_{kind} must be a list of entries, not {type(value).__name__}"]
    return value, []


def _name_key(kind: str) -> str:
    return {"connections": "conn_id", "variables": "key", "pools": "name"}[kind]


def problems(connections=None, variables=None, pools=None) -> list[str]:
    """What is wrong with the declared objects, one message per problem ([] when fine)."""
    found: list[str] = []
    allowed = {"connections": CONNECTION_KEYS, "variables": VARIABLE_KEYS, "pools": POOL_KEYS}
    for kind, value in (("connections", connections), ("variables", variables), ("pools", pools)):
        entries, errors = _entries(kind, value)
        found += errors
        key = _name_key(kind)
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            where = f"airflow_{kind}[{i}]"
            if not isinstance(entry, dict):
                found.append(f"{where} must be a mapping with {key}, not {type(entry).__name__}")
                continue
            name = entry.get(key)
            if not isinstance(name, str) or not ID_PATTERN.match(name):
                found.append(f"{where}: {key} must be letters, digits, '_', '.', '-' or '~' (at most 250), not {name!r}")
                continue
            where = f"airflow_{kind} {name}"
            if name in seen:
                found.append(f"{where}: declared twice")
            seen.add(name)
            unknown = sorted(set(entry) - allowed[kind])
            if unknown:
                found.append(f"{where}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(allowed[kind]))})")
            state = entry.get("state", "present")
            if state not in STATES:
                found.append(f"{where}: state must be present or absent, not {state!r}")
                continue
            if state == "absent":
                if kind == "pools" and name == DEFAULT_POOL:
                    found.append(f"{where}: Airflow's default pool cannot be removed (set its slots instead)")
                continue
            found += _entry_problems(kind, where, entry)
    return found


def _entry_problems(kind: str, where: str, entry: dict) -> list[str]:
    found = []
    if kind == "connections":
        if not isinstance(entry.get("conn_type"), str) or not entry["conn_type"]:
            found.append(f"{where}: conn_type is required (for example postgres, http, aws)")
        port = entry.get("port")
        if port is not None and (isinstance(port, bool) or not str(port).isdigit() or not 0 < int(port) < 65536):
            found.append(f"{where}: port must be a number from 1 to 65535, not {port!r}")
        extra = entry.get("extra")
        if isinstance(extra, str) and extra:
            try:
                if not isinstance(json.loads(extra), dict):
                    raise ValueError
            except ValueError:
                found.append(f"{where}: extra must be a mapping (or its JSON text)")
        elif extra is not None and not isinstance(extra, (dict, str)):
            found.append(f"{where}: extra must be a mapping (or its JSON text)")
    elif kind == "variables":
        if "value" not in entry or entry["value"] is None:
            found.append(f"{where}: value is required (text, or any value to store as JSON)")
    else:
        slots = entry.get("slots")
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < -1:
            found.append(f"{where}: slots must be a whole number, 0 or more (-1: unlimited), not {slots!r}")
        if not isinstance(entry.get("include_deferred", False), bool):
            found.append(f"{where}: include_deferred must be true or false")
    return found


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_RESERVED = ("AIRFLOW_HOME", "AIRFLOW_CONFIG")
ENV_FORBIDDEN = re.compile(r'[\n\r"\\$`]')


def env_problems(env) -> list[str]:
    """What is wrong with airflow_extra_env (written quoted to airflow.env, which systemd and sh
    both read): names only in the messages, the values may be secrets."""
    if env is None:
        return []
    if not isinstance(env, dict):
        return [f"airflow_extra_env must be a mapping of NAME: value, not {type(env).__name__}"]
    found = []
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME.match(name):
            found.append(f"airflow_extra_env {name!r}: a name is letters, digits and underscores, not starting with a digit")
        elif name in ENV_RESERVED:
            found.append(f"airflow_extra_env {name}: set by the role (airflow_home, airflow_config_dir)")
        elif isinstance(value, (dict, list)) or value is None:
            found.append(f"airflow_extra_env {name}: the value must be text or a number")
        elif ENV_FORBIDDEN.search(str(value)):
            found.append(f"airflow_extra_env {name}: the value holds a newline, quote, backslash, dollar or backtick")
    return found


def _text(value) -> str | None:
    return None if value is None or value == "" else str(value)


def canonical_extra(extra) -> str | None:
    """A connection's extra as compact JSON with sorted keys (None when empty)."""
    if extra is None or extra in ("", {}):
        return None
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            return extra
    return json.dumps(extra, sort_keys=True, separators=(",", ":"))


def connection_form(entry: dict) -> dict:
    """A connection (declared, or as read from the database) in the form plan() compares."""
    form = {field: _text(entry.get(field)) for field in CONNECTION_FIELDS if field not in ("port", "extra")}
    form["port"] = int(entry["port"]) if entry.get("port") not in (None, "") else None
    form["extra"] = canonical_extra(entry.get("extra"))
    return form


def variable_form(entry: dict) -> dict:
    value = entry.get("value")
    return {"value": value if isinstance(value, str) else json.dumps(value, sort_keys=True), "description": _text(entry.get("description"))}


def pool_form(entry: dict) -> dict:
    return {
        "slots": int(entry["slots"]),
        "description": _text(entry.get("description")),
        "include_deferred": bool(entry.get("include_deferred", False)),
    }


FORMS = {"connections": connection_form, "variables": variable_form, "pools": pool_form}


def desired(connections=None, variables=None, pools=None) -> dict:
    """The declared objects, checked: {kind: {name: form or None (absent)}}. ValueError on a problem."""
    found = problems(connections, variables, pools)
    if found:
        raise ValueError("; ".join(found))
    out: dict[str, dict] = {}
    for kind, value in (("connections", connections), ("variables", variables), ("pools", pools)):
        key = _name_key(kind)
        out[kind] = {e[key]: (None if e.get("state", "present") == "absent" else FORMS[kind](e)) for e in (value or [])}
    return out


def plan(wanted: dict, current: dict) -> dict:
    """What to change: {kind: {create: [names], update: [names], delete: [names]}}.

    wanted: desired()'s result; current: {kind: {name: form}} as the database holds them.
    """
    out = {}
    for kind in KINDS:
        have = current.get(kind) or {}
        steps: dict[str, list[str]] = {"create": [], "update": [], "delete": []}
        for name, form in sorted((wanted.get(kind) or {}).items()):
            if form is None:
                if name in have:
                    steps["delete"].append(name)
            elif name not in have:
                steps["create"].append(name)
            elif FORMS[kind](have[name]) != form:  # each form is its own canonical form
                steps["update"].append(name)
        out[kind] = steps
    return out


def changes(steps: dict) -> int:
    return sum(len(names) for kind in steps.values() for names in kind.values())


def summary(steps: dict) -> list[str]:
    """One line per change, names only: 'connection lab_http: create'."""
    singular = {"connections": "connection", "variables": "variable", "pools": "pool"}
    return [f"{singular[kind]} {name}: {verb}" for kind in KINDS for verb in ("create", "update", "delete") for name in steps[kind][verb]]


# Runs in the Airflow virtualenv as the airflow user (the role's wrapper
# /usr/local/bin/airflow with AIRFLOW_WRAPPER_PROGRAM=python), reading
# {"action": "read"} or {"action": "apply", "objects": {kind: {name: form or None}}}
# on standard input and printing one line "SCALECORP-JSON <json>". "read" answers every
# object in the forms above, secrets included (the module never prints them).
RUNNER = r"""
import json, sys
request = json.load(sys.stdin)
from airflow.models.connection import Connection
from airflow.models.pool import Pool
from airflow.models.variable import Variable
from airflow.utils.session import create_session

def extra_of(c):
    text = c.extra
    if not text:
        return None
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return text

def none(v):
    return None if v in (None, "") else v

with create_session() as session:
    if request["action"] == "read":
        out = {
            "connections": {
                c.conn_id: {"conn_type": none(c.conn_type), "description": none(c.description), "host": none(c.host),
                            "schema": none(c.schema), "login": none(c.login), "password": none(c.password),
                            "port": c.port, "extra": extra_of(c)}
                for c in session.query(Connection)
            },
            "variables": {v.key: {"value": v.val, "description": none(v.description)} for v in session.query(Variable)},
            "pools": {p.pool: {"slots": p.slots, "description": none(p.description), "include_deferred": bool(p.include_deferred)}
                      for p in session.query(Pool)},
        }
    else:
        def set_connection(row, form):
            row.conn_type, row.description, row.host, row.schema = form["conn_type"], form["description"], form["host"], form["schema"]
            row.login, row.port, row.password, row.extra = form["login"], form["port"], form["password"], form["extra"]

        def set_variable(row, form):
            row.set_val(form["value"])
            row.description = form["description"]

        def set_pool(row, form):
            row.slots, row.description, row.include_deferred = form["slots"], form["description"], form["include_deferred"]

        kinds = {
            "connections": (Connection, Connection.conn_id, lambda n, f: Connection(conn_id=n, conn_type=f["conn_type"]), set_connection),
            "variables": (Variable, Variable.key, lambda name, f: Variable(key=name), set_variable),
            "pools": (Pool, Pool.pool, lambda name, f: Pool(pool=name, include_deferred=False), set_pool),
        }
        for kind, forms in request["objects"].items():
            model, column, make, update = kinds[kind]
            for name, form in forms.items():
                row = session.query(model).filter(column == name).one_or_none()
                if form is None:
                    if row is not None:
                        session.delete(row)
                    continue
                if row is None:
                    row = make(name, form)
                    session.add(row)
                update(row, form)
        out = {"applied": True}
print("SCALECORP-JSON " + json.dumps(out))
"""


def runner_output(stdout: str) -> dict:
    """The JSON line RUNNER printed (Airflow may print warnings around it). ValueError if none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("SCALECORP-JSON "):
            return json.loads(line[len("SCALECORP-JSON ") :])
    raise ValueError("the Airflow runner printed no result")
