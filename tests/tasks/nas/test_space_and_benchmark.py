"""Search-space strings and the NAS-Bench-201 ground-truth adapter."""
import csv
import itertools

import pytest

from tasks.common.data import data_search_path
from tasks.nas.benchmark import Benchmark, TableBenchmark, open_benchmark
from tasks.nas.space import arch_str_to_genotype, genotype_from_choices, genotype_to_arch_str

ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


def test_arch_str_round_trip_and_edge_order():
    g = genotype_from_choices([3, 2, 1, 0, 4, 3])
    s = genotype_to_arch_str(g)
    assert s == "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    assert arch_str_to_genotype(s) == g


@pytest.mark.parametrize("bad, message", [
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
    ("|none~0|+|none~0|none~1|", "malformed"),
    ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", "input 1 where 0"),
    ("none~0+none~0", "malformed"),
])
def test_malformed_arch_strings(bad, message):
    with pytest.raises(ValueError, match=message):
        arch_str_to_genotype(bad)


def _table_path():
    for root in data_search_path():
        path = root / "nasbench201" / "nb201_accuracy_table.csv"
        if path.is_file():
            return path
    pytest.skip("nasbench201/nb201_accuracy_table.csv is not on the data search path")


def test_known_rows_from_the_mirror_table():
    bench = TableBenchmark(_table_path())
    assert bench.query(ALL_SKIP, "cifar10", "test") == pytest.approx(54.30, abs=0.01)
    assert bench.query(ALL_SKIP, "cifar100", "test") == pytest.approx(15.61, abs=0.01)
    assert bench.query(ALL_SKIP, "ImageNet16-120", "test") == pytest.approx(16.32, abs=0.01)
    assert bench.query(ALL_SKIP, "cifar10", "valid") == pytest.approx(39.77, abs=0.01)
    best = max(bench.query(genotype_to_arch_str(genotype_from_choices(c)), "cifar100", "test")
               for c in itertools.islice(itertools.product(range(5), repeat=6), 0, 15625, 7))
    assert 70 < best <= 73.51 + 1e-6


def test_wrong_table_format_and_unknown_metric(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,acc\n1,2\n")
    with pytest.raises(ValueError, match="not a NAS-Bench-201 accuracy table"):
        TableBenchmark(bad)
    big = tmp_path / "big.csv"
    with open(big, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch_str", "c10_oritest_200ep", "c100_xtest_200ep", "in16_xtest_200ep"])
        for i, choice in enumerate(itertools.islice(itertools.product(range(5), repeat=6), 200)):
            w.writerow([i, genotype_to_arch_str(genotype_from_choices(choice)), 1, 2, 3])
    with pytest.raises(ValueError, match="different benchmark version"):
        TableBenchmark(big)
    with pytest.raises(ValueError, match="no ground truth for dataset 'cifar10' metric 'x'"):
        TableBenchmark(_table_path()).query(ALL_SKIP, "cifar10", "x")


def test_none_backend_answers_none_and_still_validates():
    assert open_benchmark("none", None, []).query(ALL_SKIP, "cifar10") is None
    with pytest.raises(ValueError):
        Benchmark().query("|x~0|", "cifar10")
    with pytest.raises(ValueError, match="not found"):
        open_benchmark("table", None, [])


def test_cell_classes_and_margins():
    from tasks.nas.space import classify_cell, edge_margins
    assert classify_cell("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|") == "disconnected"
    assert classify_cell("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|") == "disconnected"
    assert classify_cell("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|") == "mixed"
    assert classify_cell("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|") == "skip-heavy"
    assert classify_cell("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|") == "conv-rich"
    assert edge_margins([[0.2, 0.21, 0.19, 0.2, 0.2], [0.9, 0.05, 0.05, 0, 0]]) == [0.01, 0.85]


def test_a_duplicated_architecture_row_is_refused_naming_both_lines(tmp_path):
    """The issue's case: a row repeated with other accuracies (93.66 then 11.11) would silently win."""
    lines = _table_path().read_text().splitlines()[:4]
    fields = lines[2].split(",")
    dup = ",".join([fields[0], fields[1]] + ["11.11"] * (len(fields) - 2))
    table = tmp_path / "dup.csv"
    table.write_text("\n".join(lines + [dup]) + "\n")
    with pytest.raises(ValueError, match=r"dup.csv lists architecture .* twice \(lines 3 and 5\)"):
        TableBenchmark(table)


def test_a_garbage_table_is_refused_naming_the_file(tmp_path):
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="garbage.csv"):
        TableBenchmark(garbage)
