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
    assert main(["reproduce", "celgc-imagenet"]) == 2
    assert "unknown suite 'celgc-imagenet'" in capsys.readouterr().err


def test_network_suites_run_and_check_their_claims(tmp_path):
    # shortened to seconds (digits instead of MNIST, 20 steps): the pipeline, not the paper's numbers
    for name in ("celgc-mnist", "clip21-sgd-cnn"):
        results, claims, report = reproduce(name, tmp_path / name, quick=True,
                                            overrides=['problem.dataset="digits"', "run.steps=20"])
        assert claims and all(isinstance(c.holds, bool) and c.evidence for c in claims)
        assert all("test_acc" in r.metrics[-1] for r in results)
        assert (tmp_path / name / "plots" / "all.png").stat().st_size > 1000
        assert "## Claims" in report.read_text()


def test_cifar10_suite_needs_a_path_and_runs_on_a_fake_folder(tmp_path, capsys, fake_cifar10):
    assert main(["reproduce", "--list"]) == 0
    assert "celgc-cifar10" in (line := next(s for s in capsys.readouterr().out.splitlines() if "cifar10" in s))
    assert "needs --set problem.path=DIR" in line
    assert main(["reproduce", "celgc-cifar10", "--quick", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "needs its data: add --set problem.path=DIR" in err and "cs.toronto.edu" in err and err.count("\n") == 1
    assert not (tmp_path / "none").exists()
    # the quick suite end to end on the fake pickle folder, shrunk to seconds: the pipeline, not the paper's numbers
    tiny = [f"problem.path={fake_cifar10}", "problem.width=2", "problem.groups=1", "problem.eval_rows=0",
            "run.batch_size=2", "run.steps=4", "run.log_every=2", "algorithm.milestones=[2]"]
    results, claims, report = reproduce("celgc-cifar10", tmp_path / "c", quick=True, overrides=tiny)
    assert sorted(r.label for r in results) == ["celgc-I=1", "celgc-I=16", "celgc-I=2", "celgc-I=4", "celgc-I=8",
                                                "naive-parallel-clip"]
    assert all(r.summary["problem"]["test_rows"] == 12 and r.summary["problem"]["augment"] for r in results)
    assert all(r.metrics[-1]["step"] == 4 and "test_acc" in r.metrics[-1] for r in results)
    assert len(claims) == 4 and "## Claims" in report.read_text()
    rounds = {r.label: r.metrics[-1]["comm_rounds"] for r in results}
    assert rounds["naive-parallel-clip"] == 8 and rounds["celgc-I=16"] == 1  # models and gradients every step


def test_cifar10_suite_has_the_papers_settings(tmp_path):
    from distclip.config import expand
    from distclip.reproduce import load_config, suite_path

    runs = dict(expand(load_config(suite_path("celgc-cifar10"), [f"problem.path={tmp_path}"])))
    assert sorted(runs) == ["celgc-I=1", "celgc-I=16", "celgc-I=2", "celgc-I=4", "celgc-I=8", "naive-parallel-clip"]
    for label, cfg in runs.items():  # spec: experiments.md §2.1; 98 steps = ceil(50,000 / (8 * 64)) per epoch
        p, a, r = cfg.problem, cfg.algorithm, cfg.run
        assert (p.kind, p.augment, cfg.partition.clients, r.batch_size, a.name) == ("resnet56", True, 8, 64, "celgc")
        assert (a.lr, a.gamma, a.weight_decay, a.momentum, a.decay) == (0.3, 1.0, 5e-4, 0.0, 0.1)
        assert (r.steps, a.milestones, r.log_every) == (160 * 98, [80 * 98, 120 * 98], 98)
        interval = 1 if label == "naive-parallel-clip" else int(label.split("=")[1])
        assert (a.baseline, a.local_steps) == (label == "naive-parallel-clip", interval)
