"""Scores relative to a reference model: recovery, oracle gap, privleak."""

import subprocess
import sys
from pathlib import Path

import pytest

from ssiuu.scoring.relative import oracle_gap, privleak, recovery

REPO = Path(__file__).resolve().parents[1]


def test_recovery_and_oracle_gap_on_hand_computed_values():
    assert recovery(after=0.5, unlearned=0.0, base=1.0) == 0.5
    assert recovery(after=0.2, unlearned=0.2, base=1.0) == 0.0
    assert recovery(after=0.1, unlearned=0.2, base=1.0) == pytest.approx(-0.125)
    assert recovery(after=-5.0, unlearned=-8.0, base=-2.0) == pytest.approx(0.5)
    assert recovery(after=0.3, unlearned=1.0, base=1.0) is None
    assert oracle_gap(after=0.3, oracle_after=0.1) == pytest.approx(0.2)
    assert oracle_gap(after=-5.0, oracle_after=-3.0) == pytest.approx(-2.0)


def test_privleak_is_zero_for_the_oracle_and_relative_otherwise():
    assert privleak(0.62, 0.62) == 0.0
    assert privleak(0.75, 0.5) == pytest.approx(0.5)
    assert privleak(0.25, 0.5) == pytest.approx(-0.5)


def test_the_report_side_imports_no_torch():
    """The report stage summarises numbers: starting it must not import torch (5 s a stage)."""
    code = ("import runpy, sys\n"
            "sys.argv = ['report.py', '--help']\n"
            "try:\n    runpy.run_path('stages/report.py', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.split()
    assert out[-2:] == ["False", "False"]  # after the stage's --help text
