"""The suites' claim vocabulary on small fabricated runs: each claim type holds, and fails, when it should; runs
are found by config values; every shipped suite loads, expands and can word all of its claims."""

import math

import pytest
import torch

from distclip.config import expand, from_dict
from distclip.errors import DistclipError
from distclip.reproduce import SUITES, Context, load_config, suite_path
from distclip.reproduce.claims import TYPES, evaluate, validate
from distclip.reproduce.seeds import average_seeds
from distclip.reproduce.select import config_value, render
from distclip.runner import RunResult


def _run(label, seed=0, summary=None, model=0.0, problem=None, **columns):
    """A finished run: algorithm keys (name, tau, target_epsilon, ...) and metric columns, one value per row."""
    algorithm = {"name": "gd", "lr": 0.1}
    metrics = {}
    for k, v in columns.items():
        (metrics if isinstance(v, list) else algorithm)[k] = v
    cfg = from_dict({"seed": seed, "problem": problem or {"kind": "quadratic", "centres": [1.0, -1.0]},
                     "algorithm": algorithm, **({"run": {"batch_size": 1}} if "sgd" in algorithm["name"] else {})})
    n = len(next(iter(metrics.values()), [0.0]))
    metrics.setdefault("step", list(range(n)))
    metrics.setdefault("comm_rounds", metrics["step"])
    rows = [{k: v[i] for k, v in metrics.items()} for i in range(n)]
    return RunResult(cfg, rows, {"last_clip_step": -1, **(summary or {})}, torch.tensor([model]), label=label)


def _check(spec, runs, names=None):
    validate(spec, "test")
    return evaluate(spec, Context.of(runs, names))


def _holds(spec, runs):
    (claim,) = _check(spec, runs)
    return claim.holds


C21 = {"algorithm.name": "clip21"}
CGD = {"algorithm.name": "clip-gd"}


# --- final, at_step, always ------------------------------------------------------------------------------------

def test_final_compares_the_last_value_with_its_bound():
    runs = [_run("a", name="clip21", tau=1.0, grad_norm_sq=[1.0, 1e-13])]
    spec = {"text": "Clip21 reaches ‖∇f‖² < {below:sci} (k = {step})", "type": "final", "run": C21,
            "metric": "grad_norm_sq", "below": 1e-12, "evidence": "{value:.2g}"}
    (claim,) = _check(spec, runs)
    assert claim.holds and claim.text == "Clip21 reaches ‖∇f‖² < 1e-12 (k = 1)" and claim.evidence == "1e-13"
    assert not _holds({**spec, "below": 1e-14}, runs)
    assert not _holds({**{k: v for k, v in spec.items() if k != "below"}, "above": 1e-12}, runs)
    assert _holds({**{k: v for k, v in spec.items() if k != "below"}, "at_least": 1e-13, "at_most": 1e-13}, runs)


def test_final_near_and_summary_and_model_quantities():
    runs = [_run("a", name="clip21", tau=1.0, loss=[1.0], summary={"last_clip_step": 4}, model=-2.0)]
    near = {"text": "x = {near:g}", "type": "final", "run": C21, "metric": "x", "near": -2.0, "tol": 1e-10}
    (claim,) = _check(near, runs)
    assert claim.holds and claim.text == "x = −2"  # claim sentences write the minus sign
    assert not _holds({**near, "near": -2.1}, runs)
    settled = {"text": "t", "type": "final", "run": C21, "metric": "last_clip_step", "at_most": 5}
    assert _holds(settled, runs) and not _holds({**settled, "at_most": 3}, runs)


def test_at_step_reads_the_logged_step_and_fails_when_it_was_not_run():
    runs = [_run("a", name="clip21", tau=1.0, grad_norm_sq=[1.0, 0.25, 0.0625])]
    spec = {"text": "|x^{step}| < {below:g}", "type": "at_step", "run": C21, "metric": "grad_norm", "step": 1,
            "below": 0.6}
    (claim,) = _check(spec, runs)
    assert claim.holds and claim.text == "|x^1| < 0.6" and "0.5" in claim.evidence
    assert not _holds({**spec, "below": 0.4}, runs)
    (short,) = _check({**spec, "step": 200}, runs)  # a run too short to reach the step
    assert not short.holds and "nan" in short.evidence


def test_always_needs_every_logged_row():
    spec = {"text": "stuck", "type": "always", "run": CGD, "metric": "grad_norm_sq", "equals": 1.0}
    assert _holds(spec, [_run("a", name="clip-gd", tau=1.0, grad_norm_sq=[1.0, 1.0, 1.0])])
    assert not _holds(spec, [_run("a", name="clip-gd", tau=1.0, grad_norm_sq=[1.0, 0.5, 1.0])])


# --- ratio, rounds_to -------------------------------------------------------------------------------------------

def test_ratio_factor_margin_within_and_every():
    a, b = _run("a", name="clip21", tau=1.0, loss=[0.4], test_acc=[0.9]), _run("b", name="clip-gd", tau=1.0,
                                                                               loss=[1.0], test_acc=[0.85])
    half = {"text": "halved", "type": "ratio", "a": C21, "b": CGD, "metric": "loss", "factor": 0.5}
    assert _holds(half, [a, b]) and not _holds({**half, "factor": 0.3}, [a, b])
    margin = {"text": "{margin:pts} points", "type": "ratio", "a": C21, "b": CGD, "metric": "test_acc", "op": ">=",
              "margin": 0.10}
    (claim,) = _check(margin, [a, b])
    assert not claim.holds and claim.text == "10 points"
    assert _holds({**margin, "margin": 0.05}, [a, b])
    within = {"text": "within {within:.0%}", "type": "ratio", "a": CGD, "b": C21, "metric": "loss", "within": 1.5}
    assert _holds(within, [a, b]) and _check(within, [a, b])[0].text == "within 150%"
    assert not _holds({**within, "within": 1.0}, [a, b])
    strict = {"text": "t", "type": "ratio", "a": C21, "b": C21, "metric": "loss", "op": "<"}
    assert not _holds(strict, [a, b])  # equal is not lower
    c = _run("c", name="clip21", tau=0.1, loss=[2.0])
    every = {"text": "t", "type": "ratio", "a": C21, "every": True, "b": CGD, "metric": "loss", "op": "<=",
             "listing": {"over": C21, "by": "algorithm.tau", "item": "τ = {key:g}: {value}"}}
    (claim,) = _check({**every, "evidence": "{listing}"}, [a, b, c])
    assert not claim.holds and claim.evidence == "τ = 0.1: 2.0, τ = 1: 0.4"  # the τ = 0.1 run is above b
    assert _holds(every, [a, b])


def test_rounds_to_a_target_relative_to_another_run():
    fast = _run("fast", name="clip21", tau=1.0, loss=[3.0, 1.5, 1.0], comm_rounds=[0, 1, 2])
    slow = _run("slow", name="clip-gd", tau=1.0, loss=[3.0, 2.0, 1.4, 1.0], comm_rounds=[0, 4, 8, 12])
    spec = {"text": "{fewer}x fewer rounds to {relative:g} x its final loss ({target:.2f})", "type": "rounds_to",
            "a": C21, "b": CGD, "relative": 1.5, "fewer": 4, "evidence": "{a_rounds} vs {b_rounds}"}
    (claim,) = _check(spec, [fast, slow])
    assert claim.holds and claim.text == "4x fewer rounds to 1.5 x its final loss (1.50)" and claim.evidence == "1 vs 8"
    assert not _holds({**spec, "fewer": 10}, [fast, slow])
    never = {"text": "t", "type": "rounds_to", "a": C21, "target": 0.5}
    (claim,) = _check({**never, "evidence": "{a_rounds}"}, [fast, slow])
    assert not claim.holds and claim.evidence == "None"
    assert _holds({**never, "target": 1.0, "at_most": 2}, [fast]) and not _holds({**never, "target": 1.0,
                                                                                   "at_most": 1}, [fast])


# --- monotone ---------------------------------------------------------------------------------------------------

def test_monotone_in_a_parameter():
    runs = [_run(f"t{t}", name="clip21", tau=t, loss=[1.0], summary={"last_clip_step": s})
            for t, s in ((1.0, 0), (0.1, 16), (0.01, 168))]
    spec = {"text": "the smaller τ, the later", "type": "monotone", "over": C21, "param": "algorithm.tau",
            "order": "descending", "metric": "last_clip_step", "trend": "rises", "item": "τ = {key:g}: {value}"}
    (claim,) = _check(spec, runs)
    assert claim.holds and claim.evidence == "τ = 1: 0, τ = 0.1: 16, τ = 0.01: 168"
    assert not _holds({**spec, "trend": "falls"}, runs)
    assert _holds({**spec, "order": "ascending", "trend": "falls"}, runs)
    runs[1].summary["last_clip_step"] = 200
    assert not _holds(spec, runs)
    assert not _holds(spec, runs[:1])  # one value is no trend


def test_monotone_lists_unset_runs_without_checking_them():
    runs = [_run(f"e{e}", name="clip-sgd", tau=0.1, target_epsilon=e, loss=[v], epsilon=[e])
            for e, v in ((3.0, 1.4), (9.0, 0.75), (27.0, 0.72))] + [_run("free", name="clip-sgd", tau=0.1, loss=[0.73])]
    spec = {"text": "{name}: falls as ε grows through {values}", "each": "algorithm.name", "type": "monotone",
            "param": "algorithm.target_epsilon", "metric": "loss", "trend": "falls", "unset": math.inf,
            "item": "ε={key:g}: {value:.2f}"}
    (claim,) = _check(spec, runs, names={"algorithm.name": {"clip-sgd": "Clip-SGD"}})
    assert claim.holds and claim.text == "Clip-SGD: falls as ε grows through 3, 9, 27"
    assert claim.evidence == "ε=3: 1.40, ε=9: 0.75, ε=27: 0.72, ε=inf: 0.73"  # inf is above 27: not checked
    (claim,) = _check({k: v for k, v in spec.items() if k != "unset"}, runs)
    assert not claim.holds and claim.evidence.startswith("cannot check")


# --- clipping_stops, epsilon_spent --------------------------------------------------------------------------------

def test_clipping_stops_for_good():
    spec = {"text": "switches off", "type": "clipping_stops", "run": C21}
    run = _run("a", name="clip21", tau=1.0, clip_frac=[1.0, 0.5, 0.0, 0.0], summary={"last_clip_step": 1})
    (claim,) = _check(spec, [run])
    assert claim.holds and claim.evidence == "last clipped step 1 of 3"
    run.summary["last_clip_step"] = 3  # clipped up to the last step
    assert not _holds(spec, [run])
    run.summary["last_clip_step"] = 1
    run.metrics[3]["clip_frac"] = 0.5  # clipping logged after the step the summary calls the last
    assert not _holds(spec, [run])


def test_epsilon_spent_within_the_budget():
    def private(e, got):
        return _run(f"e{e}", name="clip-sgd", tau=0.1, target_epsilon=e, loss=[1.0, 1.0], epsilon=[0.0, got])

    spec = {"text": "within {within:.0%} below the target", "type": "epsilon_spent", "within": 0.01,
            "item": "{run[algorithm.name]} ε={key:g}: {value:.3f}"}
    free = _run("free", name="clip-sgd", tau=0.1, loss=[1.0])
    (claim,) = _check(spec, [private(3.0, 2.998), private(9.0, 8.994), free])
    assert claim.holds and claim.text == "within 1% below the target"
    assert claim.evidence == "clip-sgd ε=3: 2.998, clip-sgd ε=9: 8.994"
    assert not _holds(spec, [private(3.0, 2.9), free])  # too little spent
    assert not _holds(spec, [private(3.0, 3.01)])  # over budget
    assert not _holds(spec, [free])  # no private run


# --- named functions ----------------------------------------------------------------------------------------------

def test_episode_target9_function_claims():
    spec = next(s for s in SUITES["episode-synthetic"].claims if "function" in s)

    def quartic(name, h, seed, loss, grad):
        return _run(f"{name}-H={h}-seed={seed}", seed=seed, problem={"kind": "quartic", "H": h}, name=name, tau=5.0,
                    loss=[0.0, loss], grad_norm_sq=[1.0, grad], clip_frac_mean=[0.0, 0.0])

    runs = [quartic(m, h, s, f, g) for s in (0, 1) for m, h, f, g in
            (("celgc", 0.0, -6.318, 0.01), ("celgc", 4.0, -11.55, 144.0), ("episode", 0.0, -6.318, 0.01),
             ("episode", 4.0, -17.95, 0.04))]
    by_text = {c.text: c for c in _check(spec, runs)}
    assert by_text["H = 4: EPISODE ends nearer a stationary point than CELGC (final |f'|, mean of 2 seeds)"].holds
    assert by_text["H = 4: EPISODE reaches a clearly lower objective (by more than 1)"].holds
    assert by_text["EPISODE clips in fewer than 1% of its rounds at every H"].holds
    assert by_text["final f within 0.1 of the reference simulation (experiments.md §8 target 9) for every method "
                   "and H"].holds
    runs[3].metrics[-1]["loss"] = runs[7].metrics[-1]["loss"] = -12.0  # EPISODE stuck by CELGC at H = 4
    by_text = {c.text: c for c in _check(spec, runs)}
    assert not by_text["H = 4: EPISODE reaches a clearly lower objective (by more than 1)"].holds
    assert not by_text["final f within 0.1 of the reference simulation (experiments.md §8 target 9) for every "
                       "method and H"].holds


# --- selecting runs by config values ----------------------------------------------------------------------------

def test_config_value_reads_toml_keys():
    cfg = from_dict({"seed": 3, "problem": {"kind": "quartic", "H": 2.0}, "algorithm": {"name": "gd", "lr": 0.1}})
    assert config_value(cfg, "problem.H") == 2.0 and config_value(cfg, "seed") == 3
    assert config_value(cfg, "algorithm.lr") == 0.1 and config_value(cfg, "problem.kind") == "quartic"
    assert config_value(cfg, "problem.lambda") is None  # a key of another kind (logreg): unset for this run
    for bad in ("problem.het", "algorithm", "nosuch.key"):
        with pytest.raises(DistclipError, match="unknown config key"):
            config_value(cfg, bad)

    class WithGet:
        def get(self, dotted):
            return f"got {dotted}"

    assert config_value(WithGet(), "problem.H") == "got problem.H"  # Config.get, where there is one


def test_selection_errors_are_reported_not_raised():
    runs = [_run("a", name="clip21", tau=1.0, loss=[1.0]), _run("b", name="clip21", tau=0.1, loss=[1.0])]
    spec = {"text": "Clip21 at τ = {run[algorithm.tau]}", "type": "final", "run": C21, "metric": "loss", "below": 2}
    (claim,) = _check(spec, runs)  # two runs match
    assert not claim.holds and "2 runs match" in claim.evidence and "add a key" in claim.evidence
    assert claim.text == "Clip21 at τ = ?"
    (claim,) = _check({**spec, "run": CGD}, runs)
    assert not claim.holds and claim.evidence.startswith("cannot check: no run matches")
    assert _holds({**spec, "run": {**C21, "algorithm.tau": {"max": True}}}, runs)
    (claim,) = _check({**spec, "run": {**C21, "algorithm.tau": {"min": True}}}, runs)
    assert claim.holds and claim.text == "Clip21 at τ = 0.1"
    assert _holds({**spec, "run": {"algorithm.name": {"in": ["clip-gd", "clip21"]}, "algorithm.tau": 1.0}}, runs)
    free = _run("free", name="clip-sgd", tau=0.1, loss=[1.0])
    dp = _run("dp", name="clip-sgd", tau=0.1, target_epsilon=3.0, loss=[2.0], epsilon=[3.0])
    unset = {"text": "t", "type": "final", "run": {"algorithm.target_epsilon": {"unset": True}}, "metric": "loss",
             "below": 1.5}
    assert _holds(unset, [free, dp]) and not _holds({**unset, "run": {"algorithm.target_epsilon": 3.0}}, [free, dp])


def test_each_makes_one_claim_per_value_and_groups_keep_them_together():
    runs = [_run(f"{n}-{t}", name=n, tau=t, loss=[1.0, v], clip_frac=[1.0, 0.0], summary={"last_clip_step": 0})
            for n, t, v in (("clip21", 1.0, 0.1), ("clip21", 0.1, 0.2), ("clip-gd", 1.0, 0.5), ("clip-gd", 0.1, 0.9))]
    spec = {"each": "algorithm.tau", "group": [
        {"text": "τ = {tau:g}: Clip21 below Clip-GD", "type": "ratio", "a": "c21", "b": "cgd", "metric": "loss",
         "op": "<", "evidence": "{c21.loss} vs {cgd.loss}"},
        {"text": "τ = {tau:g}: stops", "type": "clipping_stops", "run": "c21"}],
        "runs": {"c21": C21, "cgd": CGD}}
    claims = _check(spec, runs)
    assert [c.text for c in claims] == ["τ = 1: Clip21 below Clip-GD", "τ = 1: stops",
                                        "τ = 0.1: Clip21 below Clip-GD", "τ = 0.1: stops"]
    assert all(c.holds for c in claims) and claims[2].evidence == "0.2 vs 0.9"


def test_compound_claims_need_every_check():
    runs = [_run("ef", name="ef21", k=1, loss=[1.0], grad_norm_sq=[1e-13]), _run("gd", name="gd", grad_norm_sq=[1e-11])]
    spec = {"text": "both below {ef21.below:sci}", "check": {
        "ef21": {"type": "final", "run": {"algorithm.name": "ef21"}, "metric": "grad_norm_sq", "below": 1e-12},
        "gd": {"type": "final", "run": {"algorithm.name": "gd"}, "metric": "grad_norm_sq", "below": 1e-12}},
        "evidence": "EF21 {ef21.value:.2g}, GD {gd.value:.2g}"}
    (claim,) = _check(spec, runs)
    assert not claim.holds and claim.text == "both below 1e-12" and claim.evidence == "EF21 1e-13, GD 1e-11"
    runs[1].metrics[-1]["grad_norm_sq"] = 1e-14
    assert _holds(spec, runs)


def test_seeds_are_averaged_by_config_not_label():
    runs = [_run("x-seed=0", seed=0, loss=[1.0, 3.0]), _run("x-seed=1", seed=1, loss=[2.0, 5.0]),
            _run("y-seed=0", seed=0, name="clip21", tau=1.0, loss=[7.0]),  # another config: not merged
            _run("y-seed=1", seed=1, name="clip21", tau=0.5, loss=[9.0])]  # differs in tau too
    merged = {r.label: r for r in average_seeds(runs)}
    assert set(merged) == {"x", "y-seed=0", "y-seed=1"}
    assert [m["loss"] for m in merged["x"].metrics] == [1.5, 4.0] and merged["x"].summary["seeds"] == [0, 1]
    ctx = Context.of(runs)
    assert [len(g) for g in ctx.groups] == [2, 1, 1]
    spec = {"text": "t", "type": "final", "run": {"algorithm.name": "gd"}, "metric": "loss", "below": 4.5}
    assert _holds(spec, runs)  # the mean of the seeds, 4.0
    assert not _holds({**spec, "run": {"algorithm.name": "gd", "seed": 1}}, runs)  # seed 1 alone: 5.0


def test_templates():
    assert render("{a:sci} {b:sci} {c:sci} {d:pts}", {"a": 2e-5, "b": 1e-12, "c": 1.7e-3, "d": -0.02}) == \
        "2e-5 1e-12 1.7e-3 2"
    assert render("{x:g} {nothing} {nothing.deeper[1]:.3f}", {"x": -2.0}) == "-2 ? ?"
    assert render("{x:g}", {"x": -2.0}, prose=True) == "−2"


@pytest.mark.parametrize("spec, message", [
    ({"text": "t", "type": "nosuch"}, "unknown type"),
    ({"text": "t", "type": "final", "run": {}, "metric": "loss", "below": 1, "colour": 2}, "unknown: \\['colour'\\]"),
    ({"text": "t", "type": "ratio", "a": {}, "metric": "loss"}, "missing: \\['b'\\]"),
    ({"text": "t", "type": "final", "run": {"algorithm.nosuch": 1}, "metric": "loss", "below": 1}, "unknown config"),
    ({"text": "t", "type": "final", "run": "c21", "metric": "loss", "below": 1}, "not in the claim's runs"),
    ({"text": "t", "type": "final", "run": {}, "metric": "loss"}, "give a bound"),
    ({"text": "t", "type": "final", "run": {}, "metric": "loss", "near": 1}, "near and tol"),
    ({"text": "t", "type": "monotone", "param": "algorithm.tau", "metric": "loss", "trend": "up"}, "trend"),
    ({"text": "t", "type": "rounds_to", "a": {}}, "target = VALUE or relative"),
    ({"text": "t", "type": "final", "run": {"algorithm.tau": {"largest": True}}, "metric": "loss", "below": 1},
     "a table value is one of"),
    ({"function": "nosuch"}, "unknown claim function"),
    ({"type": "final"}, "needs text"),
    ({"text": "t", "check": {"a": "final"}}, "checks are tables"),
])
def test_malformed_claims_are_refused(spec, message):
    with pytest.raises(DistclipError, match=message):
        validate(spec, "claim 1")


def test_every_type_has_a_failing_and_a_holding_test():
    tested = {"final", "at_step", "always", "ratio", "rounds_to", "monotone", "clipping_stops", "epsilon_spent"}
    assert set(TYPES) == tested


# --- the shipped suites ---------------------------------------------------------------------------------------------

def _fabricated(cfg, label):
    """A run of ``cfg`` with every metric the claims read (the numbers do not matter, the wording does)."""
    steps = [0, 5, 10, 20, 50, 100, 200]
    rows = [{"step": s, "loss": 1.0 / (1 + s), "grad_norm_sq": 1.0 / (1 + s), "comm_rounds": s, "floats_up": s,
             "clip_frac": 0.0, "clip_frac_mean": 0.0, "test_acc": 0.9, "valid_ppl": 100.0, "epsilon": 1.0,
             "wall_s": 0.0} for s in steps]
    summary = {"last_clip_step": 5, "privacy": {"noise_multiplier": 1.0}, "total_s": 0.0}
    return RunResult(cfg, rows, summary, torch.zeros(1), label=label)


@pytest.mark.parametrize("name", sorted(SUITES))
def test_every_suite_loads_expands_and_words_its_claims(name, tmp_path):
    suite = SUITES[name]
    path = [f"problem.path={tmp_path}"] if suite.needs_path else []
    for quick in (False, True):
        runs = expand(suite.config(quick, path))
        assert runs and len({label for label, _ in runs}) == len(runs)
    assert suite.title and suite.claims
    ctx = Context.of([_fabricated(cfg, label) for label, cfg in expand(suite.config(True, path))], suite.names)
    claims = [c for spec in suite.claims for c in evaluate(spec, ctx)]
    assert claims
    for c in claims:  # every run found, every name in the templates known
        assert not c.evidence.startswith("cannot check") and "?" not in c.text + c.evidence, c
    from distclip.reproduce import special

    if suite.table:
        assert special.TABLES[suite.table](ctx)


def test_suite_files_keep_their_runs():
    from distclip.data.cifar10 import DOWNLOAD, FOLDER

    assert FOLDER in SUITES["celgc-cifar10"].needs_path and DOWNLOAD in SUITES["celgc-cifar10"].needs_path
    toy = SUITES["clip21-toy"]
    assert toy.config().run.steps == 1000 and toy.config(quick=True).run.steps == 200
    assert toy.config(True, ["run.steps=60"]).run.steps == 60  # --set after the quick overrides
    assert "suite" not in toy.config().raw and "claim" not in toy.config().raw
    # distclip run on a suite file: its full version
    assert load_config(suite_path("clip21-toy"), ["run.steps=7"]).run.steps == 7
    wt2 = expand(SUITES["celgc-wt2"].config(True, ["problem.path=x"]))[0][1]  # a member: its problem resolved
    assert (wt2.run.steps, wt2.run.batch_size, wt2.problem.dropouth, wt2.problem.hidden) == (200, 4, 0.0, [64])


def test_a_suite_file(tmp_path):
    from distclip.reproduce import load_suite

    path = tmp_path / "mine.toml"
    body = ('[problem]\nkind = "quadratic"\ncentres = [3.0, -3.0]\n[algorithm]\nname = "clip21"\nlr = 0.5\n'
            'tau = 1.0\n[run]\nsteps = 100\n\n[[claim]]\ntext = "converges to {below:sci}"\ntype = "final"\n'
            'run = {}\nmetric = "grad_norm_sq"\nbelow = 1e-12\n')
    path.write_text('[suite]\ntitle = "mine"\nquick = ["run.steps=10", "algorithm.tau=inf"]\n' + body)
    suite = load_suite(path)
    assert (suite.name, suite.title, len(suite.claims)) == ("mine", "mine", 1)
    quick = suite.config(quick=True)
    assert quick.run.steps == 10 and quick.algorithm.tau == math.inf and suite.config().run.steps == 100
    for head, message in [('[suite]\nquick = []\n', "title"), ('[suite]\ntitle = "t"\ncolour = 1\n', "unknown"),
                          ('[suite]\ntitle = "t"\ntable = "nosuch"\n', "table = 'nosuch'"),
                          ('[suite]\ntitle = "t"\nquick = ["run.steps"]\n', "must look like section.key=value")]:
        path.write_text(head + body)
        with pytest.raises(DistclipError, match=message):
            load_suite(path)
    path.write_text('[suite]\ntitle = "t"\n' + body.replace('type = "final"', 'type = "finale"'))
    with pytest.raises(DistclipError, match="suite mine, claim 1: unknown type 'finale'"):
        load_suite(path)


def test_default_evidence_of_every_type():
    runs = [_run("a", name="clip21", tau=1.0, loss=[2.0, 1.0], grad_norm_sq=[1.0, 0.5], clip_frac=[1.0, 0.0],
                 summary={"last_clip_step": 0}),
            _run("b", name="clip21", tau=0.5, loss=[2.0, 1.5], grad_norm_sq=[1.0, 0.5], clip_frac=[1.0, 0.0])]
    one = {"algorithm.tau": 1.0}
    specs = [{"type": "final", "run": one, "metric": "loss", "below": 2}, {"type": "at_step", "run": one,
             "metric": "loss", "step": 1, "below": 2}, {"type": "always", "run": one, "metric": "loss", "at_most": 2},
             {"type": "ratio", "a": one, "b": {"algorithm.tau": 0.5}, "metric": "loss"},
             {"type": "rounds_to", "a": one, "target": 1.0}, {"type": "clipping_stops", "run": one},
             {"type": "monotone", "param": "algorithm.tau", "metric": "loss", "trend": "falls"}]
    for spec in specs:
        (claim,) = _check({"text": "t", **spec}, runs)
        assert claim.holds and claim.evidence and "?" not in claim.evidence, (spec, claim)
