#!/bin/sh
# Print the state of a Debian PostgreSQL cluster as one line of JSON; changes nothing.
# Usage: pg_state.sh VERSION CLUSTER   (run as root)
set -u
version=$1
cluster=$2
bindir=/usr/lib/postgresql/$version/bin
datadir=/var/lib/postgresql/$version/$cluster
installed=false exists=false running=false standby=false has_data=false
state="" sysid="" timeline=0 lsn=""

[ -x "$bindir/postgres" ] && installed=true
if $installed && [ -f "$datadir/PG_VERSION" ]; then
  exists=true
  control=$(LC_ALL=C "$bindir/pg_controldata" "$datadir" 2>/dev/null)
  field() { printf '%s\n' "$control" | sed -n "s/^$1: *//p"; }
  state=$(field 'Database cluster state')
  sysid=$(field 'Database system identifier')
  timeline=$(field "Latest checkpoint's TimeLineID")
  # Databases other than template0, template1 and postgres have OIDs >= 16384.
  for dir in "$datadir"/base/*; do
    oid=${dir##*/}
    case $oid in '' | *[!0-9]*) continue ;; esac
    if [ "$oid" -ge 16384 ]; then has_data=true; fi
  done
  [ -f "$datadir/standby.signal" ] && standby=true
  if [ -f "$datadir/postmaster.pid" ] && kill -0 "$(head -n 1 "$datadir/postmaster.pid")" 2>/dev/null; then
    running=true
    # A running server answers for itself (it may still be starting: keep the files' word).
    answer=$(cd / && runuser -u postgres -- psql --cluster "$version/$cluster" -XAtq -F ' ' -d postgres -c \
      "SELECT pg_is_in_recovery(),
              CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
              CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
                   ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END" 2>/dev/null)
    set -- $answer
    if [ $# -eq 3 ]; then
      [ "$1" = t ] && standby=true || standby=false
      lsn=$2 timeline=$3
    fi
  fi
fi
printf '{"installed": %s, "exists": %s, "running": %s, "standby": %s, "has_data": %s, "state": "%s", "sysid": "%s", "timeline": %s, "lsn": "%s"}\n' \
  "$installed" "$exists" "$running" "$standby" "$has_data" "$state" "$sysid" "${timeline:-0}" "$lsn"
