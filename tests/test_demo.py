"""`make demo` showcases fits that pass their own checks, and says where the report is."""

import os

import pytest

from samplax import demo

pytestmark = pytest.mark.slow  # two fits and a report


def test_demo_fits_pass_their_checks_and_the_report_is_written(tmp_path, capsys, recwarn):
    assert demo.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("checks: all passed") == 2, out
    assert not [w for w in recwarn if "ConvergenceWarning" in type(w.message).__name__]
    report = tmp_path / "eight_schools_mala.html"
    assert report.exists() and f"report written to {os.path.abspath(report)}" in out
