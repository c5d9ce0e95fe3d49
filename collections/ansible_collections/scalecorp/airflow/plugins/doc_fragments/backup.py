# Copyright: (c) 2026, ScaleCorp Platform Team
# Apache License 2.0 (see LICENSE in the collection root)

from __future__ import annotations


class ModuleDocFragment:
    # The options pg_backup and pg_restore share (module_utils.backup.COMMON_ARGUMENT_SPEC).
    DOCUMENTATION = r"""
options:
  backup_dir:
    description: Directory of the backups on this host.
    type: path
    required: true
  servers:
    description: The PostgreSQL nodes, as C(name) (inventory name) and C(host) (address); the module finds which
      one is the primary itself.
    type: list
    elements: dict
    required: true
  port:
    description: PostgreSQL port of every node.
    type: int
    default: 5432
  database:
    description: The live Airflow metadata database.
    type: str
    default: airflow
  login_user:
    description: Role the module logs in as. The postgresql role grants it C(pg_read_all_data) for backups, and
      CREATEDB, membership of the Airflow role and C(pg_signal_backend) for restores.
    type: str
    default: airflow_backup
  login_password:
    description: Its password.
    type: str
    required: true
  sslmode:
    description: libpq C(sslmode) of every connection.
    type: str
    default: require
  min_free_mb:
    description: Free space that must remain on the file system written to (the backup directory for a backup,
      the primary's data directory for a restore) after the work, in MiB.
    type: int
    default: 1024
  pg_bin_dir:
    description: Directory of C(pg_dump) and C(pg_restore); by default the newest installed client that is at least
      the server's major version.
    type: path
  timeout:
    description: Seconds C(pg_dump) or C(pg_restore) may run.
    type: int
    default: 86400
attributes:
  diff_mode:
    support: none
    description: No diff.
  platform:
    platforms: posix
    description: Debian hosts with python3-psycopg2 and postgresql-client.
    support: full
"""
