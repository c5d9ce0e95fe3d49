"""Pure helpers of the maintenance runbook (maintenance.yml, role maintenance).

Plain Python, no Ansible imports: parse what the hosts print (apt's simulation,
`airflow db clean`, the autoscaler's history) and render the report's tables.
"""

from __future__ import annotations

import datetime as _dt
import json
import re

# apt-get -s upgrade: "Inst libc6 [2.36-9+deb12u7] (2.36-9+deb12u8 Debian-Security:12/stable-security [amd64])"
_APT_INST = re.compile(r"^Inst (?P<package>\S+) (?:\[(?P<old>[^\]]+)\] )?\((?P<new>\S+) (?P<origins>.*?)(?: \[[^\]]+\])?\)")
_CLEAN_TABLE = re.compile(r"^Checking table (?P<table>\S+)")
_CLEAN_FOUND = re.compile(r"^Found (?P<rows>\d+) rows meeting deletion criteria")
_CLEAN_ARCHIVE = re.compile(r"^Moving data to table (?P<archive>\S+)")


def render_table(columns, rows, empty="(none)"):
    """A table as aligned text, Markdown style ('| a | b |'), readable in a terminal and in a page.

    columns: header names, or [key, header] pairs; rows: lists in column order, or dicts keyed by
    the column names (keys). Numbers align right.
    """
    keys = [str(c[0]) if isinstance(c, (list, tuple)) else str(c) for c in columns]
    columns = [str(c[1]) if isinstance(c, (list, tuple)) else str(c) for c in columns]
    cells = []
    for row in rows or []:
        values = [row.get(k, "") for k in keys] if isinstance(row, dict) else list(row)
        values = (values + [""] * len(columns))[: len(columns)]
        cells.append(["" if v is None else str(v) for v in values])
    if not cells:
        return empty
    numeric = [all(_is_number(r[i]) for r in cells if r[i] != "") and any(r[i] != "" for r in cells) for i in range(len(columns))]
    widths = [max([len(columns[i])] + [len(r[i]) for r in cells]) for i in range(len(columns))]

    def line(values):
        return "| " + " | ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric, strict=True)) + "|"
    return "\n".join([line(columns), rule] + [line(r) for r in cells])


def _is_number(text):
    try:
        float(str(text).rstrip("%"))
    except ValueError:
        return False
    return True


def render_report(title, sections, generated_at=None):
    """The whole report: a title line, then per section its title, a table or text, and notes.

    sections: [{title, columns?, rows?, text?, notes?: [str]}]
    """
    out = [title, "=" * len(title)]
    if generated_at:
        out.append(f"generated {generated_at}")
    for section in sections or []:
        out += ["", section["title"], "-" * len(section["title"])]
        if section.get("columns") is not None:
            out.append(render_table(section["columns"], section.get("rows") or [], section.get("empty", "(none)")))
        if section.get("text"):
            out.append(str(section["text"]).rstrip())
        out += [f"- {note}" for note in section.get("notes") or []]
    return "\n".join(out) + "\n"


def apt_security_upgrades(simulation, origin="Debian-Security"):
    """Packages apt would upgrade (the output of `apt-get -s upgrade`) from an origin such as Debian-Security.

    Returns [{package, installed, candidate, origins}] for the lines whose origins name `origin`.
    """
    found = []
    for line in (simulation or "").splitlines():
        m = _APT_INST.match(line.strip())
        if not m:
            continue
        origins = [o.strip() for o in m["origins"].split(",")]
        if any(o.split(":")[0] == origin for o in origins):
            found.append({"package": m["package"], "installed": m["old"] or "", "candidate": m["new"], "origins": ", ".join(origins)})
    return found


def db_clean_counts(output):
    """Rows per table that `airflow db clean` found (dry run) or removed, and the archive tables it wrote.

    Returns {tables: {table: rows}, archives: [names], total: rows}.
    """
    tables = {}
    archives = []
    current = None
    for raw in (output or "").splitlines():
        line = raw.strip()
        m = _CLEAN_TABLE.match(line)
        if m:
            current = m["table"]
            tables.setdefault(current, 0)
            continue
        m = _CLEAN_FOUND.match(line)
        if m and current is not None:
            tables[current] = int(m["rows"])
            continue
        m = _CLEAN_ARCHIVE.match(line)
        if m:
            archives.append(m["archive"])
    return {"tables": tables, "archives": archives, "total": sum(tables.values())}


def _hour(ts):
    return _dt.datetime.fromtimestamp(float(ts), tz=_dt.UTC).strftime("%Y-%m-%d %H:00")


def scaling_history_summary(history, now, hours=168):
    """The autoscaler's history (JSON lines of scaling_history_file) summarised per UTC hour.

    Only changes of the count are recorded. For each hour of the last `hours` hours that saw a
    change: changes, up, down, set by hand, and the fewest and most worker instances during the
    hour (the count before the hour's first change and after each change). Returns
    {rows: [...], changes, first, last, min_workers, max_workers, skipped}.
    """
    events = []
    skipped = 0
    for raw in (history or "").splitlines() if isinstance(history, str) else history or []:
        record = raw
        if isinstance(raw, str):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                skipped += 1
                continue
        try:
            events.append({k: record[k] for k in ("time", "action", "current", "target")})
        except (KeyError, TypeError):
            skipped += 1
    since = float(now) - float(hours) * 3600
    events = sorted((e for e in events if float(e["time"]) >= since), key=lambda e: float(e["time"]))
    per_hour = {}
    for e in events:
        h = per_hour.setdefault(_hour(e["time"]), {"hour": _hour(e["time"]), "changes": 0, "up": 0, "down": 0, "set": 0, "counts": []})
        h["changes"] += 1
        action = e["action"] if e["action"] in ("up", "down") else "set"
        h[action] += 1
        if not h["counts"]:
            h["counts"].append(int(e["current"]))
        h["counts"].append(int(e["target"]))
    rows = []
    for hour in sorted(per_hour):
        h = per_hour.pop(hour)
        counts = h.pop("counts")
        rows.append(dict(h, min_workers=min(counts), max_workers=max(counts)))
    counts = [int(e["current"]) for e in events] + [int(e["target"]) for e in events]
    return {
        "rows": rows,
        "changes": len(events),
        "first": _hour(events[0]["time"]) if events else None,
        "last": _hour(events[-1]["time"]) if events else None,
        "min_workers": min(counts) if counts else None,
        "max_workers": max(counts) if counts else None,
        "skipped": skipped,
    }


def restart_plan(units, order, never=(), worker_prefix="airflow-worker@"):
    """How one host's units are restarted by the patch play.

    units: unit names (with or without '.service'). Returns {workers, services, left_alone}:
    the worker instances (drained before, started after), the other units in restart order
    (units matching no pattern of `order` first, then by the first pattern each matches),
    and the units matching a `never` pattern (reported, not restarted).
    """
    names = sorted({re.sub(r"\.service$", "", u) for u in units or [] if u})
    left_alone = [u for u in names if any(re.match(p, u) for p in never or [])]
    workers = [u for u in names if u.startswith(worker_prefix) and u not in left_alone]
    rest = [u for u in names if u not in left_alone and u not in workers]

    def rank(unit):
        for i, pattern in enumerate(order or []):
            if re.match(pattern, unit):
                return i + 1
        return 0

    return {"workers": workers, "services": sorted(rest, key=lambda u: (rank(u), u)), "left_alone": left_alone}
