"""Every role scenario under molecule/: create, converge, idempotence, check, verify, destroy."""

from __future__ import annotations

import pytest
from conftest import ROOT, VENV_BIN, run, why

pytestmark = pytest.mark.molecule
SCENARIOS = sorted(p.name for p in (ROOT / "molecule").iterdir() if (p / "molecule.yml").exists())


def test_there_are_scenarios():
    assert "common" in SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario):
    proc = run([str(VENV_BIN / "molecule"), "test", "-s", scenario], timeout=2400)
    assert proc.returncode == 0, why(proc)
    out = proc.stdout + proc.stderr
    for step in ("converge", "idempotence", "check", "verify"):
        assert f"{step}: Executed: Successful" in out.replace("➜ ", "").replace("\x1b", ""), f"{step} did not run"
