"""A smoke search on real CIFAR-10 looks its genotype up in a generated full-size table."""
import csv
import itertools
import json

from tasks.common.runner import train
from tasks.nas.space import genotype_from_choices, genotype_to_arch_str
from tests.conftest import compose


def _accuracy(arch: str) -> float:
    return round(sum(ord(ch) for ch in arch) % 1000 / 10, 2)   # any deterministic function of the cell


def test_smoke_search_reports_ground_truth(tmp_path, cifar10):
    table = tmp_path / "table.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch_str", "c10valid_xvalid_200ep", "c10_oritest_200ep", "c100_xtest_200ep", "in16_xtest_200ep"])
        for i, choice in enumerate(itertools.product(range(5), repeat=6)):
            arch = genotype_to_arch_str(genotype_from_choices(choice))
            w.writerow([i, arch, _accuracy(arch) / 2, _accuracy(arch), 0, 0])
    cfg = compose("experiment=nas/smoke", f"paths.run_dir={tmp_path / 'run'}", f"task.benchmark.path={table}",
                  "results.write=true", f"paths.results_dir={tmp_path / 'results'}", "logger.tensorboard=false")
    out = train(cfg)
    final = out["metrics"]
    assert final["gt_test"] == _accuracy(final["arch_str"])
    assert final["gt_valid"] == _accuracy(final["arch_str"]) / 2
    assert len(final["gt_test_per_epoch"]) == 2
    result = json.loads((tmp_path / "results" / "nas" / "smoke_sabn" / "seed0.json").read_text())
    assert "seeded 50/50 split" in result["protocol"]["split"] or "nb201" in result["protocol"]["split"]
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval/epoch"] for r in rows if "eval/epoch" in r] == [1]
