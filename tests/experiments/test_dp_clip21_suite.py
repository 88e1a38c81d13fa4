"""The dp-clip21 suite end to end, shortened to seconds: every private run logs ε, the claims are checked and
the utility-against-ε figure is drawn (the pipeline, not the paper's numbers)."""

from distclip.reproduce import reproduce


def test_dp_suite_runs_and_checks_its_claims(tmp_path):
    results, claims, report = reproduce("dp-clip21", tmp_path, quick=True,
                                        overrides=["run.steps=20", "partition.clients=40"])
    assert len(results) == 12 and len(claims) == 6
    assert all(isinstance(c.holds, bool) and c.evidence for c in claims)
    assert claims[0].holds  # the calibrated noise spends each run's budget
    private = [r for r in results if "-eps=" in r.label]
    assert all(r.metrics[-1]["epsilon"] <= float(r.label.rpartition("=")[2]) for r in private)
    assert all("epsilon" not in r.metrics[-1] for r in results if r.label.endswith("nonprivate"))
    assert (tmp_path / "plots" / "utility-vs-epsilon.png").stat().st_size > 1000
    assert "utility-vs-epsilon" in report.read_text()
