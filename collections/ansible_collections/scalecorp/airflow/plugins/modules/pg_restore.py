#!/usr/bin/python
# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_restore
short_description: Restore a pg_backup backup into a new database, verify it, swap it in
version_added: 0.1.0
description:
  - Runs on the backup host, against the running primary among O(servers) (the node that is not in recovery).
  - "Checks before anything changes, in this order: the backup id is known (or C(latest)) and its manifest
    valid; the sha256 of every file matches the manifest; the primary's PostgreSQL major version is the
    backup's; the primary's file system (O(target_free_bytes)) holds the database; no other restore runs
    (a lock file on the backup host and an advisory lock on the server). A refusal changes nothing."
  - O(mode=restore) restores with C(pg_restore -j) into a new database C(<database>_restore_<id>) owned by
    the Airflow role, then verifies it (alembic revision and the row count of every table equal the
    manifest's). A restored database that already exists and verifies is kept (no change).
  - O(mode=swap) swaps a restored database in by rename, C(<database>) becoming
    C(<database>_before_<time>), which is kept until you drop it. Stop every Airflow component first
    (C(restore.yml) does, in a safe order).
  - O(mode=verify) restores the backup into a scratch database, verifies it and drops it; the live database is
    not touched (monthly proof that backups restore).
  - Extensions are not restored (creating one needs a superuser); the live database's extensions are
    reported in RV(extensions) for whoever administers the server to create.
options:
  mode:
    description: What to do.
    type: str
    choices: [restore, swap, verify]
    default: restore
  backup_id:
    description: The backup, or C(latest).
    type: str
    required: true
  owner:
    description: Role that owns the restored database and its objects.
    type: str
    default: airflow
  jobs:
    description: Parallel jobs of C(pg_restore).
    type: int
    default: 2
  target_free_bytes:
    description: Free bytes on the file system of the primary's data directory (the smallest among the nodes, as
      replicas receive the same data); unset skips that check.
    type: int
attributes:
  check_mode:
    description: Runs every check (checksums included) and reports what would be restored or swapped.
    support: full
extends_documentation_fragment:
  - scalecorp.airflow.backup
author:
  - ScaleCorp Platform Team (@scalecorp)
"""

EXAMPLES = r"""
- name: Restore the latest backup into a new database and verify it
  scalecorp.airflow.pg_restore:
    backup_dir: /var/backups/airflow
    backup_id: latest
    servers: [{name: pg1, host: 10.0.0.11}, {name: pg2, host: 10.0.0.12}]
    login_password: "{{ scalecorp_secrets.postgresql_backup_password }}"
  register: restored

- name: Swap it in (every Airflow component stopped)
  scalecorp.airflow.pg_restore:
    mode: swap
    backup_dir: /var/backups/airflow
    backup_id: "{{ restored.backup_id }}"
    servers: [{name: pg1, host: 10.0.0.11}, {name: pg2, host: 10.0.0.12}]
    login_password: "{{ scalecorp_secrets.postgresql_backup_password }}"
"""

RETURN = r"""
backup_id:
  description: The backup (C(latest) resolved).
  returned: always
  type: str
primary:
  description: Inventory name of the primary restored on.
  returned: always
  type: str
restored_database:
  description: The database the backup is (or would be) restored into.
  returned: always
  type: str
previous_database:
  description: The name the live database got when swapped out (kept until dropped).
  returned: mode swap
  type: str
verified:
  description: Whether the restored database's alembic revision and row counts equal the manifest's.
  returned: modes restore and verify, not in check mode
  type: bool
row_counts:
  description: Rows per table in the restored database.
  returned: modes restore and verify, not in check mode
  type: dict
skipped_entries:
  description: Archive entries left out (extensions and grants on their objects).
  returned: modes restore and verify, not in check mode
  type: list
  elements: str
extensions:
  description: Extensions of the backed-up database (not restored; create them as a superuser).
  returned: always
  type: list
  elements: str
live_database_exists:
  description: Whether the live database exists on the primary.
  returned: mode restore, when the restored database already existed and verified (no change)
  type: bool
clients_ended:
  description: Sessions connected to the live database that the swap ends (in check mode, would end).
  returned: mode swap
  type: int
duration_seconds:
  description: Seconds of checksums, restore and verification.
  returned: always
  type: float
"""

import contextlib
import datetime as dt
import os
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalecorp.airflow.plugins.module_utils import backup as bk
from ansible_collections.scalecorp.airflow.plugins.module_utils.pg_cluster import (
    RESTORE_LOCK_KEY,
    Cluster,
    alembic_revision,
    file_lock,
    pg_bin,
    row_counts,
)

DUMP_NAMES = {"custom": "airflow.dump", "directory": "airflow.dir"}


def ident(name):
    from psycopg2 import sql

    return sql.Identifier(name)


def database_exists(cur, name):
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    return cur.fetchone() is not None


@contextlib.contextmanager
def server_lock(cluster, host):
    """The cluster-wide advisory lock: one restore at a time, whatever host runs it."""
    conn = cluster.connect(host)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (RESTORE_LOCK_KEY,))
            if not cur.fetchone()[0]:
                raise bk.BackupError(f"another restore is running on {host} (advisory lock {RESTORE_LOCK_KEY} is held)")
        yield
    finally:
        conn.close()


def verify_database(cluster, host, name, manifest):
    """(problems, row counts) of a restored database against the manifest."""
    conn = cluster.connect(host, name, autocommit=False)
    try:
        cur = conn.cursor()
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        revision = alembic_revision(cur)
        counts = row_counts(cur)
        conn.rollback()
    finally:
        conn.close()
    problems = []
    if revision != manifest["alembic_revision"]:
        problems.append(f"alembic revision {revision or '(none)'}, the backup has {manifest['alembic_revision']}")
    problems.extend(bk.compare_counts(manifest["row_counts"], counts))
    return problems, counts


def drop_database(cluster, host, name):
    from psycopg2 import sql

    conn = cluster.connect(host)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident(name)))
    finally:
        conn.close()


def restore_into(module, cluster, primary, *, manifest, directory, name):
    """Create `name` and pg_restore the backup into it; return the skipped archive entries."""
    from psycopg2 import sql

    p = module.params
    settings = manifest.get("database_settings") or {}
    conn = cluster.connect(primary["host"])
    try:
        with conn.cursor() as cur:
            statement = sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(ident(name), ident(p["owner"]))
            if settings:
                statement = sql.SQL("{} ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
                    statement, sql.Literal(settings["encoding"]), sql.Literal(settings["lc_collate"]), sql.Literal(settings["lc_ctype"])
                )
            cur.execute(statement)
    finally:
        conn.close()
    archive = os.path.join(directory, DUMP_NAMES[manifest["dump_format"]])
    binary = pg_bin("pg_restore", primary["major"], p["pg_bin_dir"])
    listing = subprocess.run([binary, "--list", archive], capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        raise bk.BackupError(f"pg_restore --list failed: {listing.stderr.strip()[-1000:]}")
    kept, skipped = bk.filter_toc(listing.stdout, manifest.get("extensions") or {})
    list_file = os.path.join(p["backup_dir"], f".restore-{manifest['id']}.list")
    with open(list_file, "w", encoding="utf-8") as handle:
        handle.write(kept)
    try:
        argv = [
            binary,
            "--host",
            primary["host"],
            "--dbname",
            name,
            "--jobs",
            str(max(1, p["jobs"])),
            "--no-owner",
            "--role",
            p["owner"],
            "--exit-on-error",
            "--no-password",
            "--use-list",
            list_file,
            archive,
        ]
        proc = subprocess.run(argv, env=cluster.env(), capture_output=True, text=True, timeout=p["timeout"], check=False)
    finally:
        os.unlink(list_file)
    if proc.returncode != 0:
        raise bk.BackupError(f"pg_restore into {name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return skipped


def swap(cluster, primary, *, live, restored, previous):
    """Rename `live` to `previous` and `restored` to `live`; copy the database-level grants."""
    from psycopg2 import Error as PgError
    from psycopg2 import sql
    from psycopg2.errors import ObjectInUse

    conn = cluster.connect(primary["host"])
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT grantee, privilege_type FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s AND a.grantee <> d.datdba",
            (live,),
        )
        grants = cur.fetchall()
        cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(ident(live)))
        # True while the live database is named `previous`.
        renamed = False
        last_error = None
        try:
            for _attempt in range(10):
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN (%s, %s) AND pid <> pg_backend_pid()",
                    (live, restored),
                )
                time.sleep(0.5)
                try:
                    cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(live), ident(previous)))
                    renamed = True
                    break
                except ObjectInUse as exc:  # a client came back: end it again and retry
                    last_error = exc
                except PgError as exc:  # not transient (privileges, name taken...): retrying cannot help
                    raise bk.BackupError(f"renaming {live} to {previous} failed, nothing was swapped: {str(exc).strip()}") from exc
            if not renamed:
                raise bk.BackupError(f"{live} is still in use after 10 attempts: {str(last_error).strip()}")
            try:
                cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(restored), ident(live)))
            except Exception as exc:
                cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(previous), ident(live)))
                # Put back: the live database has its own name again (connections are re-allowed below).
                renamed = False
                raise bk.BackupError(f"renaming {restored} to {live} failed, {live} was put back: {exc}") from exc
        finally:
            cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(ident(previous if renamed else live)))
        cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident(live)))
        for grantee, privilege in grants:
            if grantee == 0:
                target = sql.SQL("PUBLIC")
            else:
                cur.execute("SELECT rolname FROM pg_roles WHERE oid = %s", (grantee,))
                target = ident(cur.fetchone()[0])
            cur.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(sql.SQL(privilege), ident(live), target))
    finally:
        conn.close()


def run(module):
    p = module.params
    started = time.monotonic()
    check = module.check_mode
    backup_dir = p["backup_dir"]
    id_ = bk.resolve_id(backup_dir, p["backup_id"])
    manifest = bk.load_manifest(backup_dir, id_)
    directory = os.path.join(backup_dir, id_)
    purpose = "verify" if p["mode"] == "verify" else "restore"
    name = bk.restore_database_name(p["database"], id_, purpose)
    result = {"backup_id": id_, "restored_database": name, "extensions": sorted(manifest.get("extensions") or {})}

    cluster = Cluster(p["servers"], port=p["port"], user=p["login_user"], password=p["login_password"], sslmode=p["sslmode"])
    found = cluster.discover()
    primary = found["primary"]
    result["primary"] = primary["name"]
    if primary["major"] != manifest["postgresql_major"]:
        raise bk.BackupError(
            f"backup {id_} is of PostgreSQL {manifest['postgresql_major']}, the primary {primary['name']} runs "
            f"{primary['major']}: restore it on a cluster of the same major version (or dump and upgrade it there)"
        )

    if p["mode"] == "swap":
        return run_swap(module, cluster, primary, manifest=manifest, name=name, result=result, started=started)

    # Every file, before anything touches a server.
    problems = bk.verify_files(directory, manifest["files"])
    if problems:
        raise bk.BackupError(f"backup {id_} is damaged, checksums do not match its manifest: {'; '.join(problems[:5])}")
    if p["target_free_bytes"] is not None:
        problem = bk.space_problem(
            p["target_free_bytes"], manifest["database_size_bytes"], p["min_free_mb"] * 1024 * 1024, f"restoring {id_} on {primary['name']}"
        )
        if problem:
            raise bk.BackupError(problem)
    with file_lock(os.path.join(backup_dir, ".restore.lock"), "restore"), server_lock(cluster, primary["host"]):
        conn = cluster.connect(primary["host"])
        try:
            with conn.cursor() as cur:
                exists = database_exists(cur, name)
                live_exists = database_exists(cur, p["database"])
        finally:
            conn.close()
        if p["mode"] == "restore" and exists:
            problems, counts = verify_database(cluster, primary["host"], name, manifest)
            if not problems:
                return dict(
                    result,
                    changed=False,
                    verified=True,
                    row_counts=counts,
                    skipped_entries=[],
                    live_database_exists=live_exists,
                    duration_seconds=round(time.monotonic() - started, 3),
                )
        if check:
            return dict(result, changed=True, duration_seconds=round(time.monotonic() - started, 3))
        if exists:
            drop_database(cluster, primary["host"], name)
        try:
            skipped = restore_into(module, cluster, primary, manifest=manifest, directory=directory, name=name)
            problems, counts = verify_database(cluster, primary["host"], name, manifest)
        except BaseException:
            drop_database(cluster, primary["host"], name)
            raise
        if p["mode"] == "verify" or problems:
            drop_database(cluster, primary["host"], name)
        if problems:
            raise bk.BackupError(f"backup {id_} restored but does not match its manifest (database dropped): {'; '.join(problems[:10])}")
    return dict(
        result,
        changed=p["mode"] == "restore",
        verified=True,
        row_counts=counts,
        skipped_entries=skipped,
        duration_seconds=round(time.monotonic() - started, 3),
    )


def run_swap(module, cluster, primary, *, manifest, name, result, started):
    p = module.params
    conn = cluster.connect(primary["host"])
    try:
        with conn.cursor() as cur:
            restored_exists = database_exists(cur, name)
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (p["database"],))
            clients = int(cur.fetchone()[0])
    finally:
        conn.close()
    if not restored_exists:
        raise bk.BackupError(f"there is no restored database {name} to swap in: restore backup {manifest['id']} first (mode restore)")
    revision_problems = []
    probe = cluster.connect(primary["host"], name)
    try:
        with probe.cursor() as cur:
            revision = alembic_revision(cur)
    finally:
        probe.close()
    if revision != manifest["alembic_revision"]:
        revision_problems.append(f"{name} has alembic revision {revision}, the backup {manifest['alembic_revision']}")
    if revision_problems:
        raise bk.BackupError("; ".join(revision_problems))
    previous = bk.previous_database_name(p["database"], dt.datetime.now(dt.UTC))
    result = dict(result, previous_database=previous, clients_ended=clients)
    if module.check_mode:
        return dict(result, changed=True, duration_seconds=round(time.monotonic() - started, 3))
    with file_lock(os.path.join(p["backup_dir"], ".restore.lock"), "restore"), server_lock(cluster, primary["host"]):
        swap(cluster, primary, live=p["database"], restored=name, previous=previous)
    return dict(result, changed=True, duration_seconds=round(time.monotonic() - started, 3))


def main():
    module = AnsibleModule(
        argument_spec={
            **bk.COMMON_ARGUMENT_SPEC,
            "mode": {"type": "str", "choices": ["restore", "swap", "verify"], "default": "restore"},
            "backup_id": {"type": "str", "required": True},
            "owner": {"type": "str", "default": "airflow"},
            "jobs": {"type": "int", "default": 2},
            "target_free_bytes": {"type": "int"},
        },
        supports_check_mode=True,
    )
    os.umask(0o077)
    try:
        result = run(module)
    except (bk.BackupError, ValueError) as exc:
        prefix = "Swap failed" if module.params["mode"] == "swap" else "Refused, the live database is untouched"
        module.fail_json(msg=f"{prefix}: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
