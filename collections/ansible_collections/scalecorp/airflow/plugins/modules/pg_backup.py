#!/usr/bin/python
# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_backup
short_description: Back up Airflow's metadata database with a manifest, checksums and retention
version_added: 0.1.0
description:
  - Runs on the backup host. Finds the running primary among O(servers) (the node that is not in
    recovery) and dumps from a replica whose lag is within O(max_replica_lag), else from the primary.
  - Checks the free space of O(backup_dir) against the database's size before anything is written.
  - Exports a snapshot and, inside it, counts the rows of every table while C(pg_dump --snapshot)
    dumps the same snapshot, so the counts in the manifest are exactly what the dump holds.
  - "Writes C(<backup_dir>/<id>.partial/), then the configuration archive, the checksums of every
    file and C(manifest.json), then renames the directory to C(<id>): a directory named by an id
    with a manifest is a complete backup."
  - Applies the retention (O(keep_last), O(keep_daily), O(keep_weekly)) to the complete backups,
    never deleting the one just made, and removes leftovers of interrupted runs.
  - One backup at a time per backup directory (a lock file).
options:
  prefer:
    description: Dump from a C(replica) (when one is within O(max_replica_lag)) or always from the C(primary).
    type: str
    choices: [replica, primary]
    default: replica
  max_replica_lag:
    description: Seconds of replay lag up to which a replica is dumped from (0 when it has replayed all the primary's WAL).
    type: float
    default: 60
  dump_format:
    description: C(custom) (one file, restored in parallel) or C(directory) (dumped in parallel with O(jobs)).
    type: str
    choices: [custom, directory]
    default: custom
  jobs:
    description: Parallel jobs of C(pg_dump) in directory format.
    type: int
    default: 2
  compress:
    description: C(pg_dump --compress) level, 0 to 9; unset for pg_dump's default.
    type: int
  airflow_version:
    description: Airflow version running against the database, recorded in the manifest.
    type: str
    default: ""
  config_dir:
    description: Directory of per-host C(<host>.tar.gz) configuration archives to combine into C(config.tar.gz).
    type: path
  secrets_file:
    description: The inventory's secrets file, copied here; kept in the backup only when it is vault-encrypted.
    type: path
  keep_last:
    description: Keep the newest N backups.
    type: int
    default: 1
  keep_daily:
    description: Keep the newest backup of each of the newest N days that have backups (UTC).
    type: int
    default: 7
  keep_weekly:
    description: Keep the newest backup of each of the newest N ISO weeks that have backups (UTC).
    type: int
    default: 4
attributes:
  check_mode:
    description: Discovers the source, checks space and the lock, and reports the id, the source and what
      retention would delete, without dumping or deleting.
    support: full
extends_documentation_fragment:
  - scalecorp.airflow.backup
author:
  - ScaleCorp Platform Team (@scalecorp)
"""

EXAMPLES = r"""
- name: Back up the metadata database
  scalecorp.airflow.pg_backup:
    backup_dir: /var/backups/airflow
    servers:
      - {name: pg1, host: 10.0.0.11}
      - {name: pg2, host: 10.0.0.12}
    login_password: "{{ scalecorp_secrets.postgresql_backup_password }}"
    airflow_version: 3.3.2
    keep_daily: 7
    keep_weekly: 4
  register: backup
"""

RETURN = r"""
backup_id:
  description: Id of the backup (its UTC time, C(YYYYMMDDTHHMMSSZ)); in check mode the id it would get.
  returned: always
  type: str
path:
  description: Directory of the backup.
  returned: always
  type: str
manifest:
  description: Path of its manifest.
  returned: always
  type: str
files:
  description: Files of the backup (relative to RV(path)) with size and sha256.
  returned: success, not in check mode
  type: dict
source:
  description: The node dumped from (C(name), C(host), C(role), and C(lag_seconds) for a replica).
  returned: always
  type: dict
total_bytes:
  description: Bytes of the backup's files.
  returned: success, not in check mode
  type: int
row_counts:
  description: Rows per table in the dumped snapshot.
  returned: success, not in check mode
  type: dict
alembic_revision:
  description: Alembic revision of the dumped database.
  returned: success, not in check mode
  type: str
kept:
  description: Ids kept by the retention, with why.
  returned: always
  type: dict
deleted:
  description: Ids the retention deleted (in check mode, would delete).
  returned: always
  type: list
  elements: str
duration_seconds:
  description: Seconds the dump, the counts and the checksums took.
  returned: success, not in check mode
  type: float
"""

import datetime as dt
import os
import shutil
import tarfile
import threading
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.scalecorp.airflow.plugins.module_utils import backup as bk
from ansible_collections.scalecorp.airflow.plugins.module_utils.pg_cluster import (
    Cluster,
    alembic_revision,
    extension_members,
    file_lock,
    pg_bin,
    row_counts,
)

DUMP_NAMES = {"custom": "airflow.dump", "directory": "airflow.dir"}


def combine_config(config_dir, secrets_file, dest, warnings):
    """config.tar.gz with <host>/<path> members from per-host archives, plus a vault-encrypted secrets file."""
    added = []
    with tarfile.open(dest, "w:gz") as out:
        if config_dir and os.path.isdir(config_dir):
            for name in sorted(os.listdir(config_dir)):
                if not name.endswith(".tar.gz"):
                    continue
                host = name[: -len(".tar.gz")]
                with tarfile.open(os.path.join(config_dir, name), "r:gz") as src:
                    for member in src.getmembers():
                        if not (member.isfile() or member.isdir() or member.issym()):
                            continue
                        path = member.name.lstrip("./").lstrip("/")
                        if not path or ".." in path.split("/"):
                            continue
                        data = src.extractfile(member) if member.isfile() else None
                        member.name = f"{host}/{path}"
                        out.addfile(member, data)
                        if member.isfile():
                            added.append(member.name)
        if secrets_file and os.path.isfile(secrets_file):
            with open(secrets_file, "rb") as handle:
                head = handle.read(14)
            if head.startswith(b"$ANSIBLE_VAULT"):
                out.add(secrets_file, arcname="controller/secrets.yml")
                added.append("controller/secrets.yml")
            else:
                warnings.append("the secrets file is not vault-encrypted: it is not kept in the backup")
    os.chmod(dest, 0o600)
    return added


def dump(module, cluster, source, database, staging, *, warnings):
    """Dump `source` and count its rows in one exported snapshot; return (manifest fields, seconds)."""
    params = module.params
    started = time.monotonic()
    conn = cluster.connect(source["host"], database, autocommit=False)
    try:
        cur = conn.cursor()
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute("SELECT pg_export_snapshot(), current_setting('server_version'), pg_database_size(current_database())")
        snapshot, server_version, size = cur.fetchone()
        cur.execute("SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = current_database()")
        encoding, collate, ctype = cur.fetchone()
        fmt = params["dump_format"]
        target = os.path.join(staging, DUMP_NAMES[fmt])
        argv = [
            pg_bin("pg_dump", bk.major_version(server_version), params["pg_bin_dir"]),
            "--host",
            source["host"],
            "--dbname",
            database,
            "--snapshot",
            snapshot,
            "--format",
            fmt,
            "--file",
            target,
            "--no-password",
        ]
        if fmt == "directory" and params["jobs"] > 1:
            argv += ["--jobs", str(params["jobs"])]
        if params["compress"] is not None:
            argv += ["--compress", str(params["compress"])]
        running = {}

        def count_in_snapshot(proc):
            """Called by run_command once pg_dump runs: count in the exported snapshot while it dumps it."""
            running["proc"] = proc
            running["counts"] = row_counts(cur)
            running["revision"] = alembic_revision(cur)
            running["extensions"] = extension_members(cur)

            def expire():
                running["timed_out"] = True
                proc.kill()

            # pg_dump's time limit, from when the counts are done (as with communicate(timeout=...)).
            running["timer"] = threading.Timer(params["timeout"], expire)
            running["timer"].daemon = True
            running["timer"].start()

        try:
            rc, _out, err = module.run_command(
                argv,
                environ_update=cluster.env(),
                expand_user_and_vars=False,
                before_communicate_callback=count_in_snapshot,
                handle_exceptions=False,
            )
        except BaseException:
            proc = running.get("proc")
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        finally:
            if "timer" in running:
                running["timer"].cancel()
        counts, revision, extensions = running["counts"], running["revision"], running["extensions"]
        if running.get("timed_out"):
            raise bk.BackupError(f"pg_dump did not finish within {params['timeout']} s (timeout) and was killed")
        if rc != 0:
            raise bk.BackupError(f"pg_dump failed ({rc}): {err.strip()[-2000:]}")
        if err.strip():
            warnings.append(f"pg_dump: {err.strip()[-500:]}")
    finally:
        conn.rollback()
        conn.close()
    fields = {
        "alembic_revision": revision,
        "postgresql_version": server_version.split()[0],
        "database_size_bytes": int(size),
        "row_counts": counts,
        "extra": {
            "extensions": extensions,
            "database_settings": {"encoding": encoding, "lc_collate": collate, "lc_ctype": ctype},
            "pg_dump_major": os.path.basename(os.path.dirname(os.path.dirname(argv[0]))),
        },
    }
    return fields, time.monotonic() - started


def apply_retention(module, backup_dir, protect, check):
    result = bk.select_retention(
        bk.list_backups(backup_dir),
        keep_last=module.params["keep_last"],
        keep_daily=module.params["keep_daily"],
        keep_weekly=module.params["keep_weekly"],
        protect=protect,
    )
    if not check:
        for id_ in result["delete"]:
            shutil.rmtree(os.path.join(backup_dir, id_))
    return result


def run(module):
    p = module.params
    check = module.check_mode
    warnings = []
    backup_dir = p["backup_dir"]
    if p["compress"] is not None and not 0 <= p["compress"] <= 9:
        raise ValueError(f"compress must be 0 to 9 (pg_dump --compress), not {p['compress']}")
    if p["jobs"] < 1:
        raise ValueError(f"jobs must be 1 or more, not {p['jobs']}")
    if not os.path.isdir(backup_dir):
        if check:
            warnings.append(f"{backup_dir} does not exist yet")
        else:
            os.makedirs(backup_dir, mode=0o700)
    cluster = Cluster(p["servers"], port=p["port"], user=p["login_user"], password=p["login_password"], sslmode=p["sslmode"])
    found = cluster.discover()
    source, note = Cluster.choose_source(found, p["prefer"], p["max_replica_lag"])
    if note:
        warnings.append(note)
    for gone in found["unreachable"]:
        warnings.append(f"{gone['name']} does not answer: {gone['error']}")
    public_source = {k: source[k] for k in ("name", "host", "role") if k in source}
    if source["role"] == "replica":
        public_source["lag_seconds"] = round(source["lag_seconds"], 3)

    conn = cluster.connect(source["host"], p["database"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_database_size(current_database())")
            size = int(cur.fetchone()[0])
    finally:
        conn.close()
    problem = bk.space_problem(
        bk.free_bytes(backup_dir), size, p["min_free_mb"] * 1024 * 1024, f"a dump of {p['database']} ({bk.human(size)})"
    )
    if problem:
        raise bk.BackupError(problem)

    now = dt.datetime.now(dt.UTC)
    existing = os.listdir(backup_dir) if os.path.isdir(backup_dir) else []
    id_ = bk.next_id(now, [name.split(".")[0] for name in existing])
    final = os.path.join(backup_dir, id_)
    result = {"backup_id": id_, "path": final, "manifest": os.path.join(final, bk.MANIFEST), "source": public_source}
    if check:
        retention = bk.select_retention(
            bk.list_backups(backup_dir) + [id_], p["keep_last"], p["keep_daily"], p["keep_weekly"], protect=[id_]
        )
        return dict(result, changed=True, kept=retention["reasons"], deleted=retention["delete"], warnings=warnings)

    lock = os.path.join(backup_dir, ".backup.lock")
    with file_lock(lock, "backup into " + backup_dir):
        # We hold the lock: any .partial directory is a leftover of an interrupted run.
        for name in os.listdir(backup_dir):
            if name.endswith(".partial"):
                shutil.rmtree(os.path.join(backup_dir, name), ignore_errors=True)
        staging = final + ".partial"
        os.makedirs(staging, mode=0o700)
        try:
            fields, seconds = dump(module, cluster, source, p["database"], staging, warnings=warnings)
            started = time.monotonic()
            config_files = combine_config(p["config_dir"], p["secrets_file"], os.path.join(staging, "config.tar.gz"), warnings)
            files = bk.checksum_files(staging)
            manifest = bk.build_manifest(
                backup_id_=id_,
                time=now,
                airflow_version=p["airflow_version"],
                alembic_revision=fields["alembic_revision"],
                postgresql_version=fields["postgresql_version"],
                database=p["database"],
                database_size_bytes=fields["database_size_bytes"],
                source=public_source,
                dump_format=p["dump_format"],
                files=files,
                row_counts=fields["row_counts"],
                extra=dict(fields["extra"], config_files=config_files),
            )
            bk.write_manifest(staging, manifest)
            os.rename(staging, final)
            fd = os.open(backup_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            seconds += time.monotonic() - started
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        retention = apply_retention(module, backup_dir, [id_], check=False)
    return dict(
        result,
        changed=True,
        files=files,
        total_bytes=manifest["total_bytes"],
        row_counts=manifest["row_counts"],
        alembic_revision=manifest["alembic_revision"],
        kept=retention["reasons"],
        deleted=retention["delete"],
        duration_seconds=round(seconds, 3),
        warnings=warnings,
    )


def main():
    module = AnsibleModule(
        argument_spec={
            **bk.COMMON_ARGUMENT_SPEC,
            "prefer": {"type": "str", "choices": ["replica", "primary"], "default": "replica"},
            "max_replica_lag": {"type": "float", "default": 60},
            "dump_format": {"type": "str", "choices": ["custom", "directory"], "default": "custom"},
            "jobs": {"type": "int", "default": 2},
            "compress": {"type": "int"},
            "airflow_version": {"type": "str", "default": ""},
            "config_dir": {"type": "path"},
            "secrets_file": {"type": "path"},
            "keep_last": {"type": "int", "default": 1},
            "keep_daily": {"type": "int", "default": 7},
            "keep_weekly": {"type": "int", "default": 4},
        },
        supports_check_mode=True,
    )
    os.umask(0o077)
    try:
        result = run(module)
    except (bk.BackupError, ValueError) as exc:
        module.fail_json(msg=f"Nothing was backed up: {exc}")
    warnings = result.pop("warnings", [])
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
