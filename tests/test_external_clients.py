"""The real external clients a user combines with sabn: timm models through convert_norms, the official
NAS-Bench-201 API package as a ground-truth backend, torchattacks through BranchSelect, and the
pytorch-fid weights file behind the Inception Score. `make install` installs timm and nas-bench-201."""
import pytest
import torch

import sabn
from tests.conftest import ROOT

TABLE = ROOT.parent / "shared" / "data" / "nasbench201" / "nb201_accuracy_table.csv"


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenetv3_small_050", "regnetx_002", "cspresnet50"])
def test_timm_models_convert_without_changing_their_function(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    with torch.no_grad():   # non-trivial statistics and affines, so a dropped activation shows
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2), m.bias.normal_(0, 0.5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    sabn.convert_norms(model, "sabn", num_conditions=3)
    model.eval()
    assert not any(type(m).__name__ == "BatchNormAct2d" for m in model.modules())
    with torch.no_grad(), sabn.route_condition(model, torch.tensor([0, 2])):
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_other_batchnorm_subclasses_are_refused_by_name():
    class Scaled(torch.nn.BatchNorm2d):
        def forward(self, x):
            return 2 * super().forward(x)
    with pytest.raises(ValueError, match="Scaled subclasses nn.BatchNorm2d"):
        sabn.convert_norms(torch.nn.Sequential(Scaled(4)), "sabn", num_conditions=2)


def test_unconverted_norms_are_named_and_a_model_without_bn_is_an_error():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.SyncBatchNorm(4),
                                torch.nn.BatchNorm1d(4))
    with pytest.warns(UserWarning, match=r"left 1 layer\(s\) unconverted .*: 3 \(BatchNorm1d\)"):
        sabn.convert_norms(model, "sabn", num_conditions=2)
    # SyncBatchNorm becomes the synchronized variant of the norm (issue #30), still a SandwichBatchNorm2d
    assert isinstance(model[2], sabn.SyncConditionalBatchNorm2d) and isinstance(model[2], sabn.SandwichBatchNorm2d)
    assert type(model[1]) is sabn.SandwichBatchNorm2d
    with pytest.raises(ValueError, match="has no nn.BatchNorm2d"):
        sabn.convert_norms(torch.nn.Linear(2, 2), "sabn", num_conditions=2)


def _api_file(path, rows):
    """An API file in the official layout, built with the nas_201_api package's own classes."""
    from nas_201_api.api_utils import ArchResults, ResultsCount
    epochs = {"less": 12, "full": 200}
    evals = {   # data set -> {eval set: (hp key, table column)}
        "cifar10-valid": {"x-valid": {"full": "c10valid_xvalid_200ep", "less": "c10valid_xvalid_12ep"},
                          "ori-test": {"full": "c10valid_oritest_200ep"}},
        "cifar10": {"ori-test": {"full": "c10_oritest_200ep", "less": "c10_oritest_12ep"}},
        "cifar100": {"x-valid": {"less": "c100_xvalid_12ep"},
                     "x-test": {"full": "c100_xtest_200ep", "less": "c100_xtest_12ep"}},
        "ImageNet16-120": {"x-valid": {"less": "in16_xvalid_12ep"},
                           "x-test": {"full": "in16_xtest_200ep", "less": "in16_xtest_12ep"}},
    }
    arch2infos = {}
    for index, row in enumerate(rows):
        infos = {}
        for hp, n in epochs.items():
            arch = ArchResults(index, row["arch_str"])
            for dataset, sets in evals.items():
                result = ResultsCount(dataset, {}, {e: 50.0 for e in range(n)}, {e: 1.0 for e in range(n)},
                                      0.1, 10.0, {"arch_str": row["arch_str"]}, 777, n, None)
                accs, losses, times = {}, {}, {}
                for set_name, columns in sets.items():
                    value = float(row[columns[hp]]) if hp in columns else 0.0
                    for e in range(n):
                        key = f"{set_name}@{e}"
                        accs[key], losses[key], times[key] = (value if e == n - 1 else 10.0), 1.0, 0.0
                result.update_eval(accs, losses, times)
                arch.update(dataset, 777, result)
            infos[hp] = arch.state_dict()
        arch2infos[index] = infos
    torch.save({"meta_archs": [r["arch_str"] for r in rows], "arch2infos": arch2infos,
                "evaluated_indexes": list(range(len(rows)))}, path)


def test_nas_bench_201_api_backend_returns_the_table_values(tmp_path):
    pytest.importorskip("nas_201_api")
    if not TABLE.is_file():
        pytest.skip(f"NAS-Bench-201 table not at {TABLE}")
    import csv
    from tasks.nas.benchmark import API_QUERIES, COLUMNS, ApiBenchmark, TableBenchmark
    with open(TABLE, newline="") as handle:
        rows = [row for _, row in zip(range(2), csv.DictReader(handle))]
    _api_file(tmp_path / "nb201.pth", rows)
    api, table = ApiBenchmark(tmp_path / "nb201.pth"), TableBenchmark(TABLE)
    assert API_QUERIES.keys() == COLUMNS.keys()
    for row in rows:
        for dataset, metric in API_QUERIES:
            expected = table.query(row["arch_str"], dataset, metric)
            assert api.query(row["arch_str"], dataset, metric) == pytest.approx(expected, abs=1e-9), (dataset, metric)


def test_branch_select_follows_the_model_mode_through_torchattacks():
    torchattacks = pytest.importorskip("torchattacks")
    from sabn import norm_layer
    from tasks.adv.attacks import BranchSelect
    from tasks.adv.preact_resnet import PreActResNet
    torch.manual_seed(0)
    model = PreActResNet(norm_layer("saauxbn", num_conditions=2), blocks=(1, 1), width=8)
    model.train()
    wrapped = BranchSelect(model, "adv")
    assert wrapped.training and model.training
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    torchattacks.PGD(wrapped, eps=8 / 255, alpha=2 / 255, steps=1)(x, y)
    assert model.training, "an attack through the wrapper must leave the model in train mode"
    model.eval()
    assert not wrapped.training
    torchattacks.PGD(wrapped, eps=8 / 255, alpha=2 / 255, steps=1)(x, y)
    assert not model.training


def test_inception_score_needs_pytorch_fids_own_classifier(tmp_path):
    from tasks.gan.metrics.fid import optional_inception_score
    from tasks.gan.metrics.inception import PT_INCEPTION, resolve_weights
    sd = {"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    fake = tmp_path / PT_INCEPTION   # the right name, the wrong content
    torch.save(sd, fake)
    weights = resolve_weights(str(fake))
    assert not weights.has_logits and "not pytorch-fid's" in weights.source
    assert optional_inception_score(None, weights.source)["is"] is None
