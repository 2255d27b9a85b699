"""Each task describes itself (tasks/<name>/report.py); the generic scripts read only that."""
import importlib.util

import pytest

from sabn.registry import get_norm_spec, list_norms
from tasks.common.report_spec import deviations, task_reports
from tests.conftest import ROOT


def _make_tables():
    spec = importlib.util.spec_from_file_location("make_tables", ROOT / "scripts" / "make_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,report", sorted(task_reports().items()))
def test_every_task_report_is_consistent_with_its_configs_and_norms(name, report):
    keys = {r.key for r in report.rows}
    assert report.rows and report.panels and report.title
    assert all(key.split(":", 1)[1] in report.series for key, _ in report.panels if key.startswith("series:"))
    assert all(r.better in ("max", "min", None) for r in report.rows)
    assert {key for key, _ in report.paper} <= keys, "paper numbers only for rows the table shows"
    assert {norm for _, norm in report.paper} <= set(list_norms())
    for scale, crit in report.criteria.items():
        assert crit.metric in keys and crit.kind in ("paired_t", "mann_whitney", "gap_closes")
        assert get_norm_spec(crit.variant).sandwich and not get_norm_spec(crit.baseline).sandwich
        assert (ROOT / "configs" / "experiment" / name / f"{scale}.yaml").is_file()
    for scale in [report.paper_scale, *report.deviations]:
        assert (ROOT / "configs" / "experiment" / name / f"{scale}.yaml").is_file(), scale
    assert report.bench_norm in list_norms()


def test_deviations_are_per_preset_and_empty_for_an_unknown_task():
    assert any("3000 iterations" in d for d in deviations("nst", "cpu_long"))
    assert not any("3000 iterations" in d for d in deviations("nst", "cpu"))
    assert deviations("no_such_task", "cpu") == [] and deviations("nst", "no_such_scale") == []


def _run(norm, seed, style_by_step):
    curves = [{"step": t, "eval/val/style": v} for t, v in style_by_step.items()]
    last = max(style_by_step)
    curves[-1] = {"step": last, "final/val/style": style_by_step[last]}
    return {"norm": norm, "seed": seed, "scale": "cpu_long", "metrics": {"val/style": style_by_step[last]},
            "curves": curves}


@pytest.mark.parametrize("later,verdict", [((40.0, 41.0), "the gap closes in every seed, and saadain overtakes"),
                                           ((44.0, 45.0), "the gap closes in every seed; saadain does not overtake"),
                                           ((44.0, 47.0), "does not close in every seed (1 of 2)")])
def test_gap_criterion_outcome_follows_the_numbers(later, verdict):
    mt = _make_tables()
    runs = {("cpu_long", "adain"): [_run("adain", 0, {500: 50.0, 3000: 42.0}), _run("adain", 1, {500: 50.0, 3000: 42.0})],
            ("cpu_long", "saadain"): [_run("saadain", 0, {500: 53.0, 3000: later[0]}),
                                      _run("saadain", 1, {500: 54.0, 3000: later[1]})]}
    text = mt.gap_table("nst", "cpu_long", runs)
    assert verdict in text
    assert "| 500 | +3.00 | +4.00 | +3.50 |" in text


def test_a_run_with_only_one_validation_reports_no_outcome():
    mt = _make_tables()
    runs = {("cpu_long", "adain"): [_run("adain", 0, {500: 50.0})], ("cpu_long", "saadain"): [_run("saadain", 0, {500: 53.0})]}
    assert "not enough paired runs yet" in mt.gap_table("nst", "cpu_long", runs)


def test_nst_drift_section_averages_the_shared_affine_drift_over_seeds():
    from tasks.nst.report import drift_section
    curve = lambda g: [{"step": 500, "eval/shared_affine/relu4_1/gamma_drift": g},  # noqa: E731
                       {"step": 3000, "final/shared_affine/relu4_1/gamma_drift": 2 * g}]
    runs = {("cpu_long", "saadain"): [{"seed": 0, "curves": curve(0.01)}, {"seed": 1, "curves": curve(0.03)}],
            ("cpu_long", "adain"): [{"seed": 0, "curves": []}]}
    text = drift_section("cpu_long", runs)
    assert "| relu4_1/gamma_drift | 0.0200 | 0.0400 |" in text
    assert drift_section("cpu", runs) == ""


def test_nas_alpha_traces_are_the_skip_connect_share_and_the_smallest_margin_per_epoch():
    series = task_reports()["nas"].series
    run = {"metrics": {"search_history": [
        {"epoch": 1, "alphas_softmax": [[0.2, 0.2, 0.2, 0.2, 0.2]] * 6, "margins": [0.0] * 6},
        {"epoch": 2, "alphas_softmax": [[0.1, 0.5, 0.2, 0.1, 0.1]] * 3 + [[0.1, 0.2, 0.5, 0.1, 0.1]] * 3,
         "margins": [0.3, 0.3, 0.3, 0.3, 0.3, 0.04]}]}}
    assert series["skip_connect"](run) == ([1, 2], [pytest.approx(0.2), pytest.approx(0.35)])
    assert series["min_margin"](run) == ([1, 2], [0.0, 0.04])
    assert series["skip_connect"]({"metrics": {}}) == ([], []), "runs from before the history: no series"


def test_nas_criterion_waits_for_the_runs_its_preset_asks_for_then_decides():
    """nas/long_matched asks for 4 runs an arm: 4 vs 3 gives no outcome; 4 vs 4 with SaBN ahead in every
    pair gives p = 1/70 (the smallest a one-sided Mann-Whitney test of 4 vs 4 can give)."""
    mt = _make_tables()
    crit = task_reports()["nas"].criteria["long_matched"]
    arm = lambda norm, values: [{"norm": norm, "seed": s, "metrics": {"gt_test": v}} for s, v in enumerate(values)]  # noqa: E731
    runs = {("long_matched", "bn"): arm("bn", [80.0, 81.0, 82.0]), ("long_matched", "sabn"): arm("sabn", [90, 91, 92, 93])}
    assert "not enough runs yet (4 sabn and 3 bn; the preset asks for 4 per arm)" in mt.mann_whitney("nas", "long_matched", runs, crit)
    runs[("long_matched", "bn")] = arm("bn", [80.0, 81.0, 82.0, 83.0])
    text = mt.mann_whitney("nas", "long_matched", runs, crit)
    assert "Outcome on 4 vs 4 runs" in text and "p = 0.014" in text and "is supported" in text


def _gan_run(norm, seed, fid_by_step):
    curves = [{"step": t, "eval/fid": v, "eval/kid": v / 1000} for t, v in fid_by_step.items()]
    last = max(fid_by_step)
    curves[-1] = {"step": last, "final/fid": fid_by_step[last], "final/kid": fid_by_step[last] / 1000}
    return {"norm": norm, "seed": seed, "scale": "long", "metrics": {"fid": fid_by_step[last]}, "curves": curves}


def test_gan_criterion_counts_the_paired_seeds_it_has_then_decides_on_three():
    mt = _make_tables()
    runs = {("long", "ccbn"): [_gan_run("ccbn", 0, {1000: 200.0, 2000: 90.0})],
            ("long", "sabn"): [_gan_run("sabn", 0, {1000: 210.0, 2000: 88.0}), _gan_run("sabn", 1, {1000: 1.0, 2000: 0.5})]}
    assert "not enough paired seeds yet (1 of the 3" in mt.criterion("gan", "long", runs), "seed 1 has no CCBN pair"
    runs[("long", "ccbn")] += [_gan_run("ccbn", 1, {1000: 5.0, 2000: 3.0}), _gan_run("ccbn", 2, {1000: 5.0, 2000: 4.0})]
    runs[("long", "sabn")].append(_gan_run("sabn", 2, {1000: 5.0, 2000: 2.0}))
    text = mt.criterion("gan", "long", runs)
    assert "Outcome on 3 seeds: mean difference -2.17" in text and "is supported" in text, text
    runs[("long", "sabn")][2] = _gan_run("sabn", 2, {1000: 5.0, 2000: 9.0})
    assert "is not supported" in mt.criterion("gan", "long", runs)


def test_paired_differences_keep_the_precision_of_the_metric_not_of_the_difference():
    mt = _make_tables()
    runs = {("long", "ccbn"): [{"norm": "ccbn", "seed": s, "scale": "long", "metrics": {"fid": f, "kid": k}}
                               for s, f, k in [(0, 56.8, 0.0333), (1, 52.6, 0.0337)]],
            ("long", "sabn"): [{"norm": "sabn", "seed": s, "scale": "long", "metrics": {"fid": f, "kid": k}}
                               for s, f, k in [(0, 59.1, 0.0340), (1, 58.2, 0.0358)]]}
    text = mt.paired_table("gan", "long", runs)
    assert "| sabn - ccbn | +0.0007, +0.0021 | +0.0014 |" in text, "KID differences rounded to 0.00 say nothing"
    assert "| sabn - ccbn | +2.30, +5.60 | +3.95 |" in text, text


def test_gan_evaluations_section_pairs_each_seed_at_each_step_and_skips_single_evaluation_scales():
    from tasks.gan.report import evaluations_section
    runs = {("long", "ccbn"): [_gan_run("ccbn", 0, {1000: 200.0, 2000: 90.0}), _gan_run("ccbn", 1, {1000: 220.0, 2000: 100.0})],
            ("long", "sabn"): [_gan_run("sabn", 0, {1000: 210.0, 2000: 80.0}), _gan_run("sabn", 1, {1000: 200.0})]}
    text = evaluations_section("long", runs)
    assert "| 1000 | 210.00 (n=2) | 205.00 (n=2) | +10.00, -20.00 | -5.00 | 0.2100 (n=2) | 0.2050 (n=2) |" in text
    assert "| 2000 | 95.00 (n=2) | 80.00 (n=1) | -10.00 | -10.00 |" in text, "seed 1 of SaBN has not reached 2000"
    one = {k: [_gan_run(r["norm"], r["seed"], {300: 270.0})] for k, items in runs.items() for r in items[:1]}
    assert evaluations_section("long", one) == ""


def test_gan_fid_series_draws_only_runs_evaluated_more_than_once():
    series = task_reports()["gan"].series["fid"]
    assert series(_gan_run("sabn", 0, {1000: 210.0, 2000: 88.0})) == ([1000, 2000], [210.0, 88.0])
    assert series(_gan_run("sabn", 0, {300: 270.0})) == ([], [])


def test_exact_mann_whitney_matches_scipy_without_ties_and_counts_ties_as_halves():
    from tasks.common.stats import exact_mann_whitney_p
    from scipy import stats
    a, b = [3.1, 5.2, 7.7, 9.4], [1.0, 2.5, 4.4, 6.0]
    assert abs(exact_mann_whitney_p(a, b) - stats.mannwhitneyu(a, b, alternative="greater", method="exact").pvalue) < 1e-12
    # The committed NAS sweep's values (54.30 in both arms): 19 of the 70 splits reach the observed U.
    sabn, bn = [54.30, 92.26, 92.22, 93.82], [88.92, 92.89, 54.30, 83.79]
    assert round(exact_mann_whitney_p(sabn, bn), 3) == 0.271


def test_wall_time_of_runs_resumed_before_segment_history_is_marked_partial():
    import sys
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_tables import wall_time_partial
    assert wall_time_partial({"resumed_from_step": 300, "wall_time_s": 10.0})
    assert wall_time_partial({"resumed_from_step": 300, "segments": [{"recorded": False}, {"wall_time_s": 5}]})
    assert not wall_time_partial({"resumed_from_step": 300, "segments": [{"wall_time_s": 5}, {"wall_time_s": 5}]})
    assert not wall_time_partial({"resumed_from_step": 0, "wall_time_s": 10.0})


def test_nas_collapse_pilot_gate_and_sweep_outcomes():
    from tasks.nas.report import collapse_section

    def run(seed, cls, margin, gt=90.0):
        return {"seed": seed, "metrics": {"cell_class": cls, "min_margin": margin, "gt_test": gt}}
    assert "1 of the 3 pilot runs are in" in collapse_section("collapse", {("collapse", "bn"): [run(0, "skip-heavy", 0.2)]})
    early = collapse_section("collapse", {("collapse", "bn"): [run(0, "skip-heavy", 0.2), run(1, "skip-heavy", 0.7)]})
    assert "2 of 2 (1 pilot run(s) still to come cannot change that): the gate holds" in early
    lost = collapse_section("collapse", {("collapse", "bn"): [run(0, "mixed", 0.2), run(1, "skip-heavy", 0.01)]})
    assert "0 of 2 (1 pilot run(s) still to come cannot change that): the gate fails" in lost
    fail = {("collapse", "bn"): [run(0, "skip-heavy", 0.2), run(1, "skip-heavy", 0.01), run(2, "mixed", 0.3)]}
    assert "1 of 3: the gate fails" in collapse_section("collapse", fail) and "study stops" in collapse_section("collapse", fail)
    bn = [run(s, "skip-heavy", 0.2, 54.3) for s in range(6)]
    holds = {("collapse", "bn"): bn}
    assert "3 of 3: the gate holds" in collapse_section("collapse", holds)
    assert "0 of the 6 paired seeds" in collapse_section("collapse", holds)
    sweep = {("collapse", "bn"): bn, ("collapse", "sabn"): [run(s, "conv-rich", 0.2, 93.0) for s in range(6)]}
    text = collapse_section("collapse", sweep)
    assert "SaBN 0 vs BN 6 of 6, one-sided Fisher p = 0.001: 'SaBN collapses less' is supported" in text
    assert "Mann-Whitney (exact) p = 0.001 (a tie counts one half in U): 'SaBN's cells score higher' is supported" in text
    mixed = {("collapse", "bn"): bn, ("collapse", "sabn"): [run(s, "skip-heavy", 0.2, 93.0 if s else 50.0) for s in range(6)]}
    text = collapse_section("collapse", mixed)   # equal counts; ground truth ahead in 5 of 6 seeds, not all
    assert "SaBN 6 vs BN 6 of 6, one-sided Fisher p = 1.000: 'SaBN collapses less' is not supported" in text
    assert "Mann-Whitney (exact) p = 0.008 (a tie counts one half in U): 'SaBN's cells score higher' is supported" in text
    assert collapse_section("long_matched", sweep) == ""
    part = {("collapse", "bn"): bn, ("collapse", "sabn"): [run(0, "skip-heavy", 0.2), run(1, "conv-rich", 0.2)]}
    text = collapse_section("collapse", part)
    assert "2 of the 6 paired seeds an arm are in (collapsed so far: SaBN 1 of 2, BN 2 of 2); no outcome yet" in text
    assert "Fisher" not in text
    # a bound for planning: SaBN 1 of 2 can still reach p < 0.05 if seeds 2-5 go its way; 3 of 3 cannot
    assert "collapse-count test can still reach p < 0.05 (best case p = 0.008)" in text
    late = {("collapse", "bn"): bn, ("collapse", "sabn"): [run(s, "skip-heavy", 0.2, 54.3) for s in range(3)]}
    text = collapse_section("collapse", late)
    assert "collapse-count test can no longer reach p < 0.05 (best case p = 0.091)" in text
    assert "ground-truth test can still reach p < 0.05" in text
    # the collapse preset's Fisher test is stated for the full sweep: no p-value on its first seeds
    from tasks.nas.report import cells_section
    def cell(seed, cls):
        r = run(seed, cls, 0.2)
        r["metrics"]["arch_str"] = "|none~0|"
        return r
    for scale, fisher in (("collapse", False), ("long_matched", True)):
        runs = {(scale, n): [cell(0, "skip-heavy"), cell(1, "mixed")] for n in ("bn", "sabn")}
        assert ("Fisher's exact test" in cells_section(scale, runs)) == fisher


def test_table_names_every_machine_of_a_sweep_that_spans_several():
    mt = _make_tables()

    def run(seed, cpu):
        return {"seed": seed, "provenance": {"hardware": {"cpu": cpu, "gpu": None, "threads": 1}}}
    one = {("s", "bn"): [run(1, "Intel"), run(0, "Intel")], ("s", "sabn"): [run(0, "Intel")]}
    assert mt._hardware(one, "s", ["bn", "sabn"]) == "Intel (1 threads)"
    two = {("s", "bn"): [run(2, "AMD"), run(0, "Intel")], ("s", "sabn"): [run(0, "Intel"), run(2, "AMD")]}
    assert mt._hardware(two, "s", ["bn", "sabn"]) == ("Intel (1 threads): bn seed 0, sabn seed 0; "
                                                       "AMD (1 threads): bn seed 2, sabn seed 2")
