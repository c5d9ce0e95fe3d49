#!/bin/sh
# The systemd services whose processes still map a deleted library or program
# (replaced by an upgrade): they run old code until restarted. One unit a line.
for d in /proc/[0-9]*; do
  if grep -qE '(/(usr/)?(s?bin|lib|lib64|libexec)/[^ ]+|\.so(\.[0-9]+)*) \(deleted\)$' "$d/maps" 2>/dev/null; then
    grep -oE '[^/]+\.service' "$d/cgroup" 2>/dev/null | tail -n 1
  fi
done | sort -u
