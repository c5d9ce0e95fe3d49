"""Every role scenario under molecule/: create, converge, (idempotence,) check, verify, destroy.

The scenarios run one after the other in the background from the start of the session
(conftest.MoleculeRuns); each test here waits for its scenario and reads the result.
"""

from __future__ import annotations

import pytest
import yaml
from conftest import ROOT, MoleculeRuns, why

pytestmark = pytest.mark.molecule
SCENARIOS = sorted(p.name for p in (ROOT / "molecule").iterdir() if (p / "molecule.yml").exists())
SHARED = yaml.safe_load((ROOT / ".config/molecule/config.yml").read_text())


def steps(scenario: str) -> list[str]:
    """The steps the scenario's test sequence runs that report "Executed: Successful"."""
    own = yaml.safe_load((ROOT / "molecule" / scenario / "molecule.yml").read_text()) or {}
    sequence = (own.get("scenario") or {}).get("test_sequence") or SHARED["scenario"]["test_sequence"]
    return [step for step in ("converge", "idempotence", "check", "verify") if step in sequence]


def test_there_are_scenarios():
    assert "common" in SCENARIOS
    assert all("converge" in steps(s) and "verify" in steps(s) for s in SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario):
    proc = MoleculeRuns.result(scenario)
    assert proc.returncode == 0, why(proc)
    out = (proc.stdout + proc.stderr).replace("➜ ", "").replace("\x1b", "")
    for step in steps(scenario):
        assert f"{step}: Executed: Successful" in out, f"{step} did not run"
