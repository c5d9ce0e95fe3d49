#!/usr/bin/env python3
"""Build the wheelhouse of one Airflow lockfile, once, for hosts without an index.

    wheelhouse.py 3.3.2 [--python 3.11]   ->  .cache/wheelhouse/apache-airflow-3.3.2-py3.11.tar.gz

Downloads exactly the lockfile's wheels for the target Python and Linux x86_64
(no resolve: the lockfile already is the resolve), and packs them as
`wheelhouse-<version>/` into a tarball that the airflow role unpacks on each
host (variable airflow_wheelhouse). Reused while the lockfile is unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKDIR = ROOT / "collections/ansible_collections/scalecorp/airflow/roles/airflow/files/lockfiles"
OUTDIR = ROOT / ".cache/wheelhouse"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version")
    parser.add_argument("--python", default="3.11")
    args = parser.parse_args()

    lock = LOCKDIR / f"apache-airflow-{args.version}-py{args.python}.txt"
    if not lock.exists():
        have = ", ".join(sorted(p.name for p in LOCKDIR.glob("*.txt"))) or "none"
        print(f"no lockfile {lock.name}; lockfiles: {have}", file=sys.stderr)
        return 2
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    out = OUTDIR / f"apache-airflow-{args.version}-py{args.python}.tar.gz"
    stamp = out.with_suffix(".sha256")
    if out.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        print(out)
        return 0
    started = time.monotonic()
    OUTDIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUTDIR) as tmp:
        target = Path(tmp) / f"wheelhouse-{args.version}"
        abi = "cp" + args.python.replace(".", "")
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
        cmd += ["--only-binary=:all:", "--implementation", "cp", "--python-version", args.python, "--abi", abi, "--abi", "abi3"]
        cmd += ["--abi", "none"]
        for platform in (
            "manylinux_2_28_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux2014_x86_64",
            "manylinux_2_5_x86_64",
            "linux_x86_64",
            "any",
        ):
            cmd += ["--platform", platform]
        cmd += ["-d", str(target), "-r", str(lock)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            return proc.returncode
        # Packed beside, then renamed: a reader (or a second build running at once) never
        # sees a half-written tarball.
        packed = Path(tmp) / out.name
        with tarfile.open(packed, "w:gz", compresslevel=1) as tar:
            tar.add(target, arcname=target.name)
        packed.replace(out)
    stamp.write_text(digest + "\n")
    count = sum(1 for line in lock.read_text().splitlines() if line and not line.startswith("#"))
    took = time.monotonic() - started
    print(f"[wheelhouse] {count} wheels for Airflow {args.version} / Python {args.python} in {took:.0f} s", file=sys.stderr)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
