# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)
"""Access to the PostgreSQL cluster for the backup modules (psycopg2, imported lazily).

The modules run on the backup host and reach every PostgreSQL node over TLS as the
backup role; the primary is discovered from the nodes themselves (the one that is not
in recovery), never taken from the inventory.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re

from ansible_collections.scalecorp.airflow.plugins.module_utils.backup import BackupError, major_version

APPLICATION = "scalecorp-backup"
# Every restore on a server holds this advisory lock (one restore at a time per cluster).
RESTORE_LOCK_KEY = 0x5C41_F10B


class Cluster:
    def __init__(self, servers, *, port=5432, user="airflow_backup", password=None, sslmode="require", connect_timeout=10):
        self.servers = [dict(s) for s in servers]
        self.port = int(port)
        self.user = user
        self.password = password
        self.sslmode = sslmode
        self.connect_timeout = int(connect_timeout)

    # ------------------------------------------------------------ connections
    def connect(self, host, database="postgres", autocommit=True):
        try:
            import psycopg2
        except ImportError as exc:  # pragma: no cover - host setup
            raise BackupError("python3-psycopg2 is missing on the backup host (the backup role installs it)") from exc
        try:
            conn = psycopg2.connect(
                host=host,
                port=self.port,
                dbname=database,
                user=self.user,
                password=self.password,
                sslmode=self.sslmode,
                connect_timeout=self.connect_timeout,
                application_name=APPLICATION,
            )
        except psycopg2.Error as exc:
            raise BackupError(f"cannot connect to {host}:{self.port}/{database} as {self.user}: {str(exc).strip()}") from exc
        conn.autocommit = autocommit
        return conn

    def env(self):
        """Environment for pg_dump/pg_restore: the password never appears on a command line."""
        env = dict(os.environ)
        env.update(
            PGPORT=str(self.port),
            PGUSER=self.user,
            PGSSLMODE=self.sslmode,
            PGCONNECT_TIMEOUT=str(self.connect_timeout),
            PGAPPNAME=APPLICATION,
        )
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    # ------------------------------------------------------------ discovery
    def discover(self):
        """{'primary': server, 'replicas': [server...], 'unreachable': [...]}; servers get state added."""
        primaries, replicas, unreachable = [], [], []
        for server in self.servers:
            try:
                conn = self.connect(server["host"])
            except BackupError as exc:
                unreachable.append(dict(server, error=str(exc)))
                continue
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_is_in_recovery(), current_setting('server_version_num')")
                    recovery, version_num = cur.fetchone()
                    state = dict(server, version_num=int(version_num), major=major_version(version_num))
                    if recovery:
                        cur.execute(
                            "SELECT pg_last_wal_replay_lsn()::text, "
                            "COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8"
                        )
                        lsn, seconds = cur.fetchone()
                        replicas.append(dict(state, replay_lsn=lsn, replay_age=float(seconds)))
                    else:
                        cur.execute("SELECT pg_current_wal_lsn()::text")
                        primaries.append(dict(state, current_lsn=cur.fetchone()[0]))
            finally:
                conn.close()
        if len(primaries) != 1:
            names = ", ".join(p["name"] for p in primaries) or "none"
            seen = "; ".join(f"{u['name']}: {u['error']}" for u in unreachable)
            raise BackupError(
                f"expected exactly one running primary among the PostgreSQL nodes, found {len(primaries)}: {names}. {seen}".strip()
            )
        primary = primaries[0]
        conn = self.connect(primary["host"])
        try:
            with conn.cursor() as cur:
                for replica in replicas:
                    cur.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint", (primary["current_lsn"], replica["replay_lsn"]))
                    behind = max(int(cur.fetchone()[0]), 0)
                    replica["lag_bytes"] = behind
                    # Caught up: no lag, however long ago the last transaction was.
                    replica["lag_seconds"] = 0.0 if behind == 0 else replica["replay_age"]
        finally:
            conn.close()
        return {"primary": primary, "replicas": replicas, "unreachable": unreachable}

    @staticmethod
    def choose_source(found, prefer="replica", max_lag_seconds=60.0):
        """The node to dump from: a caught-up replica when `prefer` says so, else the primary."""
        if prefer == "replica":
            fresh = sorted(
                (r for r in found["replicas"] if r["lag_seconds"] <= max_lag_seconds), key=lambda r: (r["lag_seconds"], r["name"])
            )
            if fresh:
                return dict(fresh[0], role="replica"), None
            lags = ", ".join(f"{r['name']} {r['lag_seconds']:.0f} s" for r in found["replicas"]) or "no replica answers"
            return dict(
                found["primary"], role="primary"
            ), f"no replica within {max_lag_seconds:g} s of lag ({lags}): dumping from the primary"
        return dict(found["primary"], role="primary"), None


def pg_bin(program, server_major, bin_dir=""):
    """Path of a PostgreSQL client program able to talk to a server of `server_major`."""
    if bin_dir:
        path = os.path.join(bin_dir, program)
        if not os.access(path, os.X_OK):
            raise BackupError(f"{path} is not an executable")
        return path
    candidates = []
    for path in glob.glob(f"/usr/lib/postgresql/*/bin/{program}"):
        match = re.search(r"/postgresql/(\d+)/bin/", path)
        if match and int(match.group(1)) >= int(server_major):
            candidates.append((int(match.group(1)), path))
    if not candidates:
        raise BackupError(
            f"no {program} of PostgreSQL {server_major} or later on the backup host: install postgresql-client-{server_major}"
        )
    return min(candidates)[1]


@contextlib.contextmanager
def file_lock(path, what):
    """An exclusive, non-blocking lock on `path` for the duration of the block."""
    handle = open(path, "a+")  # noqa: SIM115 - held open for the whole block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BackupError(f"another {what} is running (lock {path} is held); wait for it to finish") from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def user_tables(cur):
    """Every ordinary table of the connected database outside the system schemas, as (schema, name)."""
    cur.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%' "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') "
        "ORDER BY 1, 2"
    )
    return cur.fetchall()


def row_counts(cur):
    """{'schema.table': rows} of every user table (exact counts, in the cursor's transaction)."""
    from psycopg2 import sql

    counts = {}
    for schema, name in user_tables(cur):
        cur.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))
        counts[f"{schema}.{name}"] = int(cur.fetchone()[0])
    return counts


def alembic_revision(cur):
    cur.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL")
    if not cur.fetchone()[0]:
        return ""
    cur.execute("SELECT string_agg(version_num, ',' ORDER BY version_num) FROM public.alembic_version")
    return cur.fetchone()[0] or ""


def extension_members(cur):
    """{extension: [member object names]} of the connected database (not restorable without a superuser)."""
    cur.execute(
        "SELECT e.extname, COALESCE(c.relname, p.proname) FROM pg_extension e "
        "JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid AND d.deptype = 'e' "
        "LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid "
        "LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid "
        "WHERE e.extname <> 'plpgsql' ORDER BY 1, 2"
    )
    members = {}
    for ext, name in cur.fetchall():
        members.setdefault(ext, [])
        if name and name not in members[ext]:
            members[ext].append(name)
    return members
