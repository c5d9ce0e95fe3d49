"""The secrets audit (issue: security hardening): no secret value in the output of any
playbook this session ran, nor in verbose (-vvv) runs, nor in any lab host's journal
and logs. Runs after every other module (conftest.LAST_MODULES), so that it sees the
output of every playbook the suite ran: site, scale, backup, restore, maintenance,
status, upgrade and its rollback."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import LAB_HOSTS, PLAYBOOK_OUTPUTS, lab_secrets, on, playbook, recap, why

pytestmark = pytest.mark.lab


# The secrets audit: every playbook this session ran (PLAYBOOK_OUTPUTS, recorded by
# conftest.run) and the verbose runs below; then each host's journal and logs.
LOG_SEARCH = r"""
import json, os, subprocess, sys
secrets = [s for s in sys.stdin.read().split("\n") if s]
found = {}
def look(where, text):
    for i, s in enumerate(secrets):
        if s in text:
            found.setdefault(str(i), []).append(where)
journal = subprocess.run(["journalctl", "--no-pager", "-o", "cat"], capture_output=True).stdout
look("journal", journal.decode("utf-8", "replace"))
for root in sys.argv[1:]:
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "journal"]
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                if os.path.getsize(path) < 200 * 2**20:
                    with open(path, "rb") as fh:
                        look(path, fh.read().decode("utf-8", "replace"))
            except OSError:
                pass
print(json.dumps(found))
"""

VERBOSE_RUNS = [
    ("playbooks/status.yml",),
    ("playbooks/scale.yml", "-e", "mode=status"),
    ("playbooks/backup.yml",),
]


def test_no_secret_in_any_playbook_output_or_host_log(lab):
    assert lab.returncode == 0, why(lab)
    secrets = lab_secrets()
    for args in VERBOSE_RUNS:
        # Whether the run succeeds is other tests' business (status.yml fails while an
        # alert fires); it must run to its end.
        proc = playbook(*args, "-vvv")
        assert recap(proc.stdout), f"{' '.join(args)} did not run to its end (rc {proc.returncode})"
    names = sorted(secrets)
    values = [secrets[n] for n in names]
    outputs = "\n".join(PLAYBOOK_OUTPUTS)
    recorded = len(PLAYBOOK_OUTPUTS)
    assert recorded >= len(VERBOSE_RUNS)
    leaked = sorted(n for n in names if secrets[n] in outputs)
    assert leaked == [], f"secrets in playbook output: {leaked}"
    # The search also looks for a control string just logged on each host: it must find it.
    control = f"scalecorp secrets audit control {uuid.uuid4().hex}"
    in_logs = {}
    for host in LAB_HOSTS:
        assert on(host, "logger", "-t", "scalecorp-audit", control).returncode == 0
        proc = on(host, "python3", "-c", LOG_SEARCH, "/var/log", "/var/lib/airflow/logs", input="\n".join([*values, control]))
        assert proc.returncode == 0, proc.stderr
        found = json.loads(proc.stdout)
        control_found = "journal" in found.pop(str(len(names)), [])
        assert control_found, f"the search did not find the control string in the journal of {host}"
        for index, places in found.items():
            in_logs.setdefault(names[int(index)], []).extend(f"{host}:{p}" for p in places)
    assert in_logs == {}, f"secrets in the hosts' logs: {in_logs}"
    # The runs above were verbose (-vvv prints the configuration file in use).
    assert "config file = " in outputs
