"""The report of a fixed study folder (written by the study driver, checked in under tests/fixtures/study) is
byte-identical to the one committed beside it: a change to the report's code that changes its output shows here.
After a deliberate change, rebuild it from the repository's root:
    python -c "from study.report import build_report; build_report('tests/fixtures/study', 'tests/fixtures/study-report')"
"""

from pathlib import Path

from study.report import build_report

ROOT = Path(__file__).resolve().parents[1]
STUDY, EXPECTED = Path("tests/fixtures/study"), ROOT / "tests" / "fixtures" / "study-report"


def test_the_report_of_the_fixed_study_is_the_committed_one(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the report names the folder as given
    result = build_report(STUDY, tmp_path, quiet=True)
    assert result.problems == []
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in EXPECTED.iterdir())
    for name in written:
        assert (tmp_path / name).read_bytes() == (EXPECTED / name).read_bytes(), f"{name} differs from {EXPECTED / name}"
