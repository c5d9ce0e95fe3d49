#!/usr/bin/env python3
"""Generate docs/variables.md from every role's meta/argument_specs.yml.

gen_variables_doc.py          write the file
gen_variables_doc.py --check  exit 1 when the file is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLES = ROOT / "collections/ansible_collections/scalecorp/airflow/roles"
OUT = ROOT / "docs/variables.md"


def _cell(value) -> str:
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def _default(spec: dict) -> str:
    if "default" not in spec:
        return "(templated, see defaults/main.yml)" if not spec.get("required") else "**required**"
    value = spec["default"]
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    dumped = dumped.removesuffix("...").strip()
    return f"`{_cell(dumped)}`"


def render() -> str:
    lines = [
        "# Role variables",
        "",
        "Generated from each role's `meta/argument_specs.yml` by `make docs`",
        "(`tools/gen_variables_doc.py`); a test fails when this file is stale.",
        "Company-wide values live in `group_vars/`, per-inventory values in",
        '`inventories/<name>/group_vars/` (see architecture.md, "Variable precedence").',
        "",
    ]
    for role_dir in sorted(p for p in ROLES.iterdir() if (p / "meta/argument_specs.yml").exists()):
        specs = yaml.safe_load((role_dir / "meta/argument_specs.yml").read_text())["argument_specs"]
        for entry, spec in specs.items():
            title = f"`{role_dir.name}`" + ("" if entry == "main" else f" (entry point `{entry}`)")
            lines += [f"## {title}", "", _cell(spec.get("short_description", "")), ""]
            options = spec.get("options") or {}
            if not options:
                lines += ["No variables.", ""]
                continue
            lines += ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
            for name, opt in sorted(options.items()):
                typ = opt.get("type", "str")
                if opt.get("elements"):
                    typ += f" of {opt['elements']}"
                if opt.get("choices"):
                    typ += " (" + ", ".join(str(c) for c in opt["choices"]) + ")"
                desc = opt.get("description", "")
                if isinstance(desc, list):
                    desc = " ".join(desc)
                secret = " *Secret.*" if opt.get("no_log") else ""
                lines.append(f"| `{name}` | {_cell(typ)} | {_default(opt)} | {_cell(desc)}{secret} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
