"""`distclip reproduce`: a suite runs, checks the paper's claims and writes its report and figures."""

from distclip.cli import main
from distclip.reproduce import SUITES, reproduce


def test_toy_quick_reproduces_every_claim(tmp_path):
    results, claims, report = reproduce("clip21-toy", tmp_path / "toy", quick=True)
    assert len(results) == 7 and len(claims) == 6
    assert all(c.holds for c in claims), [c for c in claims if not c.holds]
    text = report.read_text()
    assert "distclip reproduce clip21-toy --quick" in text and "not reproduced" not in text
    assert (tmp_path / "toy" / "plots" / "all.png").stat().st_size > 1000


def test_a_claim_that_fails_is_reported(tmp_path):
    # a run too short to reach the step a claim is about must be reported as not reproduced
    _, claims, report = reproduce("clip21-toy", tmp_path / "t", quick=True, overrides=["run.steps=60"])
    assert any(not c.holds for c in claims)  # |x^200| is not reached in 60 steps: that claim cannot hold
    assert "**not reproduced**" in report.read_text()


def test_cli_lists_and_runs(tmp_path, capsys):
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in SUITES)
    assert main(["reproduce", "clip21-toy", "--quick", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "6 of 6 claims reproduced" in out and "clip21-init=zero" in out
    assert main(["reproduce", "celgc-ptb"]) == 2
    assert "unknown suite 'celgc-ptb'" in capsys.readouterr().err
