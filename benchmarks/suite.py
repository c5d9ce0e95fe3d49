#!/usr/bin/env python3
"""Where a test session's time went: every command the suite ran, summed per test and per kind.

    .venv/bin/python benchmarks/suite.py [--top 30] [LOG]

Reads the log the suite writes as it runs (`.cache/suite-commands.tsv`: one line per
command, its wall time, return code and test), so it costs nothing to gather and
describes the last session, whatever it selected. Prints three tables: the slowest
commands, the tests that spent most in commands, and the time per kind of command
(each playbook, molecule, make lab, commands on lab hosts). A baseline in the same
form is another session's log, passed as LOG.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def kind(command: str) -> str:
    words = command.split()
    if not words:
        return "?"
    if words[0] == "ansible-playbook":
        path = next((w for w in words[1:] if w.endswith(".yml") and not w.startswith("inventories")), "?")
        return f"ansible-playbook {path}"
    if words[0] == "docker" and len(words) > 1 and words[1] == "exec":
        return "docker exec (command on a lab host)"
    if words[0] == "make":
        return " ".join(words[:3])
    return " ".join(words[:2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", nargs="?", default=str(ROOT / ".cache/suite-commands.tsv"))
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    rows = []
    for line in Path(args.log).read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 5:
            rows.append((float(parts[1]), int(parts[2]), parts[3], parts[4]))
    if not rows:
        raise SystemExit(f"{args.log}: no command recorded")
    total = sum(r[0] for r in rows)
    print(f"{len(rows)} commands, {total / 60:.1f} min in all (sequential sum)\n")

    print("| slowest commands | s | rc | test |\n|---|---|---|---|")
    for seconds, rc, test, command in sorted(rows, reverse=True)[: args.top]:
        print(f"| `{command[:90]}` | {seconds:.0f} | {rc} | {test.split('::')[-1][:60]} |")

    per_test: dict[str, float] = defaultdict(float)
    per_kind: dict[str, list[float]] = defaultdict(list)
    for seconds, _, test, command in rows:
        per_test[test or "(outside a test)"] += seconds
        per_kind[kind(command)].append(seconds)
    print("\n| test | s in commands |\n|---|---|")
    for test, seconds in sorted(per_test.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| {test[:100]} | {seconds:.0f} |")
    print("\n| kind | runs | s in all |\n|---|---|---|")
    for name, times in sorted(per_kind.items(), key=lambda kv: -sum(kv[1]))[: args.top]:
        print(f"| `{name}` | {len(times)} | {sum(times):.0f} |")


if __name__ == "__main__":
    main()
