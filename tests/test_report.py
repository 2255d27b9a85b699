"""The committed report is exactly what scripts/make_report.py builds from the committed results."""
import importlib.util

import pytest

from tests.conftest import ROOT


def test_report_regenerates_byte_for_byte():
    committed = ROOT / "results" / "README.md"
    if not committed.is_file():
        pytest.skip("no committed report yet")
    spec = importlib.util.spec_from_file_location("make_report", ROOT / "scripts" / "make_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.report() == committed.read_text()
