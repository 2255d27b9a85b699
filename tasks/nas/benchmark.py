"""NAS-Bench-201 ground truth behind one interface: ``query(arch_str, dataset, metric)``.

Backends: the compact CSV table (columns in ../shared/data/README.md), the official
NAS-Bench-201 / NATS-Bench API file (optional), or none (every query answers None, shown as n/a).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, Optional

import torch

from .space import arch_str_to_genotype, genotype_to_arch_str

# (dataset, metric) -> CSV column. Metrics: 'test' (the NAS-Bench-201 paper's number: ori-test for
# CIFAR-10 trained on 50k, x-test for CIFAR-100 and ImageNet16-120) and 'valid'.
COLUMNS = {
    ("cifar10", "test"): "c10_oritest_200ep",
    ("cifar10", "valid"): "c10valid_xvalid_200ep",
    ("cifar10-valid", "test"): "c10valid_oritest_200ep",
    ("cifar100", "test"): "c100_xtest_200ep",
    ("ImageNet16-120", "test"): "in16_xtest_200ep",
    ("cifar10", "test_12ep"): "c10_oritest_12ep",
    ("cifar100", "valid_12ep"): "c100_xvalid_12ep",
    ("cifar100", "test_12ep"): "c100_xtest_12ep",
    ("ImageNet16-120", "valid_12ep"): "in16_xvalid_12ep",
    ("ImageNet16-120", "test_12ep"): "in16_xtest_12ep",
}
REQUIRED = {"index", "arch_str", "c10_oritest_200ep", "c100_xtest_200ep", "in16_xtest_200ep"}
# The same (dataset, metric) pairs through the official API's get_more_info: (its data set name, hp,
# key). Its 'test-accuracy' is ori-test for cifar10 / cifar10-valid and x-test for the other two; the
# CIFAR-10 validation number exists only for the 'cifar10-valid' training (train on 25k).
API_QUERIES = {
    ("cifar10", "test"): ("cifar10", "200", "test-accuracy"),
    ("cifar10", "valid"): ("cifar10-valid", "200", "valid-accuracy"),
    ("cifar10-valid", "test"): ("cifar10-valid", "200", "test-accuracy"),
    ("cifar100", "test"): ("cifar100", "200", "test-accuracy"),
    ("ImageNet16-120", "test"): ("ImageNet16-120", "200", "test-accuracy"),
    ("cifar10", "test_12ep"): ("cifar10", "12", "test-accuracy"),
    ("cifar100", "valid_12ep"): ("cifar100", "12", "valid-accuracy"),
    ("cifar100", "test_12ep"): ("cifar100", "12", "test-accuracy"),
    ("ImageNet16-120", "valid_12ep"): ("ImageNet16-120", "12", "valid-accuracy"),
    ("ImageNet16-120", "test_12ep"): ("ImageNet16-120", "12", "test-accuracy"),
}


def _check_row(path: Path, line: int, row: Dict[str, Optional[str]]) -> None:
    """A cut or garbled row (a truncated download) is refused, never read as missing ground truth."""
    if None in row or any(value is None for value in row.values()):
        raise ValueError(f"{path} line {line} does not have the header's number of fields: the table is "
                         "truncated or corrupt; replace it with a complete copy")
    for column in REQUIRED - {"arch_str"}:
        try:
            value = float(row[column])
        except ValueError:
            value = float("nan")
        if not 0 <= value <= (15625 if column == "index" else 100):
            raise ValueError(f"{path} line {line}: {column}={row[column]!r} is not a valid "
                             f"{'index' if column == 'index' else 'accuracy in percent'}; the table is corrupt")


class Benchmark:
    """Ground-truth accuracies (percent) of NAS-Bench-201 cells."""

    source = "none"

    def query(self, arch_str: str, dataset: str, metric: str = "test") -> Optional[float]:
        arch_str_to_genotype(arch_str)  # validates
        return None


class TableBenchmark(Benchmark):
    """The 15 625-row CSV table; arch strings are canonicalised before lookup."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        try:
            self.rows = self._read(path)
        except (csv.Error, UnicodeDecodeError) as error:   # a binary or garbled file
            raise ValueError(f"{path} is not a readable CSV table ({type(error).__name__}: {str(error)[:120]}); "
                             "replace it with the NAS-Bench-201 accuracy table") from None
        # Small tables (<= 100 rows) are test fixtures; anything larger must be the whole benchmark.
        if 100 < len(self.rows) != 15625:
            raise ValueError(f"{path} has {len(self.rows)} architectures; NAS-Bench-201 has 15625. "
                             "Is it a different benchmark version?")
        self.source = f"table:{path.name}"

    @staticmethod
    def _read(path: Path) -> Dict[str, Dict[str, str]]:
        rows: Dict[str, Dict[str, str]] = {}
        first_line: Dict[str, int] = {}
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = REQUIRED - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path} is not a NAS-Bench-201 accuracy table: columns {sorted(missing)} "
                                 "are missing (see the table format in shared/data/README.md)")
            for row in reader:
                _check_row(path, reader.line_num, row)
                arch = row["arch_str"]
                if arch in rows:   # the last row would silently win: refuse, naming both
                    raise ValueError(f"{path} lists architecture {arch} twice (lines {first_line[arch]} and "
                                     f"{reader.line_num}); the table is corrupt: replace it with a clean copy")
                rows[arch], first_line[arch] = row, reader.line_num
        return rows

    def query(self, arch_str: str, dataset: str, metric: str = "test") -> Optional[float]:
        canonical = genotype_to_arch_str(arch_str_to_genotype(arch_str))
        column = COLUMNS.get((dataset, metric))
        if column is None:
            raise ValueError(f"no ground truth for dataset '{dataset}' metric '{metric}'; available: "
                             + ", ".join(f"{d}/{m}" for d, m in COLUMNS))
        row = self.rows.get(canonical)
        if row is None:
            return None
        value = row.get(column, "")
        return float(value) if value not in ("", None) else None


class ApiBenchmark(Benchmark):
    """The official NAS-Bench-201 (or NATS-Bench topology) API file, read with ``weights_only`` and
    handed to the ``nas_201_api`` / ``nats_bench`` package as a dict."""

    def __init__(self, path: Path) -> None:
        try:
            from nas_201_api import NASBench201API as API  # type: ignore
        except ImportError:
            try:
                from nats_bench import create  # type: ignore
                API = lambda p, verbose=False: create(p, "tss", fast_mode=True, verbose=verbose)  # noqa: E731
            except ImportError:
                raise ValueError("benchmark.backend=api needs the nas-bench-201 or nats_bench package; "
                                 "pip install nas-bench-201, or use the CSV table backend") from None
        try:   # read here with weights_only (plain dicts, as the official files are), not by the package
            content = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"cannot read the NAS-Bench-201 API file {path} as a weights-only file "
                             f"({type(error).__name__}: {str(error).splitlines()[0][:150] if str(error) else ''}); "
                             "use the CSV table backend (task.benchmark.backend=table)") from None
        self.api, self.source = API(content, verbose=False), f"api:{Path(path).name}"

    def query(self, arch_str: str, dataset: str, metric: str = "test") -> Optional[float]:
        if (dataset, metric) not in API_QUERIES:
            raise ValueError(f"no ground truth for dataset '{dataset}' metric '{metric}'; available: "
                             + ", ".join(f"{d}/{m}" for d, m in API_QUERIES))
        arch_str_to_genotype(arch_str)
        index = self.api.query_index_by_arch(arch_str)
        if index < 0:
            return None
        api_dataset, hp, key = API_QUERIES[(dataset, metric)]
        info = self.api.get_more_info(index, api_dataset, hp=hp, is_random=False)
        value = info.get(key)
        return None if value is None else float(value)


def open_benchmark(backend: str, path: Optional[str], search_roots) -> Benchmark:
    """``backend`` in table | api | none. A relative ``path`` is looked up on the data search path."""
    if backend == "none":
        return Benchmark()
    if backend not in ("table", "api"):
        raise ValueError(f"unknown benchmark backend '{backend}'; use table, api or none")
    candidates = [Path(path)] if path and Path(path).is_absolute() else \
        [root / (path or "nasbench201/nb201_accuracy_table.csv") for root in search_roots]
    for candidate in candidates:
        if candidate.is_file():
            return TableBenchmark(candidate) if backend == "table" else ApiBenchmark(candidate)
    raise ValueError("NAS-Bench-201 ground truth not found; looked for " +
                     ", ".join(str(c) for c in candidates) + ". Set task.benchmark.path, or "
                     "task.benchmark.backend=none to search without ground truth")
