"""The research loop of issue #29: sweeps over any key get their own run dirs, a finished command is
not run again, the run's log lands in train.log, a mistyped data.root is an error."""
import json
import os
import subprocess
import sys

import pytest

from tasks.common.variant import variant_name
from tests.conftest import ROOT

RUN_DIR = "paths.run_dir={tmp}/${{results.experiment}}/seed${{trainer.seed}}"


def _train(*args, tmp):
    env = {**os.environ, "SABN_OFFLINE": "1"}
    return subprocess.run([sys.executable, "train.py", *args, RUN_DIR.format(tmp=tmp), "logger.tensorboard=false"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_variant_names():
    # the commands of the committed sweeps (scripts/reproduce.sh): no variant, so their paths are unchanged
    assert variant_name(["experiment=nas/long_matched", "norm=bn", "trainer.seed=0", "trainer.progress=false",
                         "results.skip_existing=true", "trainer.num_threads=1"]) == ""
    assert variant_name(["experiment=adv/cpu", "norm=saauxbn", "trainer.seed=1", "paths.run_dir=/x"]) == ""
    assert variant_name(["experiment=adv/smoke", "task.lr=0.05", "trainer.seed=7"]) == "+lr=0.05"
    assert variant_name(["experiment=adv/smoke", "task.lr=5e-2"]) == variant_name(["experiment=adv/smoke", "task.lr=0.05"])
    assert variant_name(["trainer.seed=3"]) == "+bare", "a run without a preset never shares a preset's folder"
    assert variant_name(["experiment=adv/smoke", "+norm.options.eps=1e-3", "trainer.amp=true"]) == \
        "+norm.options.eps=0.001,trainer.amp=true"
    long = variant_name(["experiment=gan/smoke"] + [f"task.key{i}=value{i}" for i in range(12)])
    assert len(long) <= 61 and long == variant_name(["experiment=gan/smoke"] + [f"task.key{i}=value{i}" for i in range(12)])
    assert long != variant_name(["experiment=gan/smoke"] + [f"task.key{i}=value{i}" for i in range(11)] + ["task.key11=x"])


def test_lr_multirun_gets_two_run_dirs_and_a_rerun_trains_nothing(tmp_path, cifar10):
    args = ("-m", "experiment=adv/smoke", "task.lr=0.1,0.05", "trainer.seed=7")
    first = _train(*args, tmp=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    dirs = sorted(p.name for p in tmp_path.iterdir())
    assert dirs == ["smoke_bn+lr=0.05", "smoke_bn+lr=0.1"]
    before = {d: ((tmp_path / d / "seed7" / "metrics.jsonl").read_text(), (tmp_path / d / "seed7" / "provenance.json").read_text())
              for d in dirs}
    configs = {d: (tmp_path / d / "seed7" / "config.yaml").read_text() for d in dirs}
    assert "lr: 0.1\n" in configs["smoke_bn+lr=0.1"] and "lr: 0.05\n" in configs["smoke_bn+lr=0.05"]
    again = _train(*args, tmp=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("finished earlier at step 4: nothing to do") == 2
    after = {d: ((tmp_path / d / "seed7" / "metrics.jsonl").read_text(), (tmp_path / d / "seed7" / "provenance.json").read_text())
             for d in dirs}
    assert after == before, "nothing is evaluated, appended or rewritten"
    log = (tmp_path / "smoke_bn+lr=0.1" / "seed7" / "train.log").read_text()
    assert "starting smoke_bn+lr=0.1 at step 0 of 4" in log and "step 4 final/" in log


def test_a_data_root_that_does_not_exist_is_an_error_naming_it(tmp_path):
    done = _train("experiment=adv/smoke", f"data.root={tmp_path}/nope", tmp=tmp_path)
    assert done.returncode == 2 and f"data.root={tmp_path}/nope is not a directory" in done.stderr


def _compare(*args):
    import importlib.util
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts" / "compare_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(args))


def test_compare_runs_on_a_norm_sweep_gives_the_reports_paired_differences(tmp_path, cifar10):
    """Two norms x two seeds of adv smoke in one multirun; the table groups by norm, and --baseline
    norm=bn gives exactly make_tables.paired's numbers for the same runs' result files."""
    import importlib.util
    done = _train("-m", "experiment=adv/smoke", "norm=bn,saauxbn", "trainer.seed=0,1", "results.write=true",
                  f"paths.results_dir={tmp_path}/results", tmp=tmp_path / "runs")
    assert done.returncode == 0, done.stderr[-2000:]
    text = _compare(str(tmp_path / "runs"), "--baseline", "norm.name=bn", "--csv", str(tmp_path / "t.csv"),
                    "--plot", str(tmp_path / "curves.png"))
    assert "4 runs in 2 groups (by norm.name)" in text
    assert (tmp_path / "t.csv").read_text().count("\n") == 3 and (tmp_path / "curves.png").stat().st_size > 1000
    spec = importlib.util.spec_from_file_location("make_tables", ROOT / "scripts" / "make_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    runs = {("smoke", n): [json.loads(p.read_text()) for p in sorted((tmp_path / "results" / "adv" / f"smoke_{n}").glob("seed*.json"))]
            for n in ("bn", "saauxbn")}
    checked = 0
    from tasks.common.report_spec import task_report
    for key in [row.key for row in task_report("adv").rows]:
        if not all(key in r["metrics"] for rs in runs.values() for r in rs):
            continue
        ref = tables.paired("adv", "smoke", runs, key, "bn", "saauxbn")
        if ref is None:
            continue
        row = next(line for line in text.splitlines() if line.startswith(f"| norm.name=saauxbn | {key} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == ", ".join(f"{d:+.4g}" for d in ref["diffs"])
        assert cells[3] == f"{ref['mean']:+.4g}" and cells[4] == f"[{ref['ci'][0]:+.4g}, {ref['ci'][1]:+.4g}]"
        assert cells[5] == ("n/a" if ref["p"] is None else f"{ref['p']:.3f}")
        checked += 1
    assert checked >= 1


def test_compare_runs_one_row_per_lr_and_clear_errors(tmp_path, cifar10):
    done = _train("-m", "experiment=adv/smoke", "task.lr=0.1,0.05", "trainer.seed=3", tmp=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    text = _compare(str(tmp_path / "*"))
    rows = [line for line in text.splitlines() if line.startswith("| lr=")]
    assert sorted(r.split("|")[1].strip() for r in rows) == ["lr=0.05", "lr=0.1"]
    with pytest.raises(SystemExit, match="'seed' is not a key that differs"):
        _compare(str(tmp_path), "--baseline", "seed=3")
    with pytest.raises(SystemExit, match="no run directories"):
        _compare(str(tmp_path / "smoke_bn+lr=0.1" / "seed3" / "checkpoints"))


@pytest.mark.parametrize("args,message", [
    (("trainer.stepz=3",), "unknown key 'trainer.stepz' (from trainer.stepz=3); allowed keys under trainer: "),
    (("experiment=gan/smok",), "experiment=gan/smok is not an option of the 'experiment' group; choose one of: "),
    (("experiment=adv/smoke", "task.lrr=0.1"), "unknown key 'task.lrr' (from task.lrr=0.1); allowed keys under task (adv)"),
    (("trainer=bse",), "trainer=bse is not an option of the 'trainer' group"),
])
def test_config_mistakes_are_one_message_with_the_choices_and_exit_2(args, message):
    done = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-1500:]
    assert message in done.stderr and "Traceback" not in done.stderr and "+trainer" not in done.stderr
    choices = done.stderr.split("choose one of: ")[-1] if "choose one of" in done.stderr else ""
    assert "base" not in choices.split(", ")
    if "experiment" in message:
        assert "gan/smoke" in choices and "gan/long" in choices


def test_gan_samples_export_as_png_files_and_evaluate_help(tmp_path, cifar10):
    from PIL import Image
    done = _train("experiment=gan/smoke", "task.fid.enabled=false", "trainer.steps=2", tmp=tmp_path / "runs")
    assert done.returncode == 0, done.stderr[-2000:]
    ckpt = next((tmp_path / "runs").rglob("last.pt"))
    out = tmp_path / "samples"
    run = subprocess.run([sys.executable, "scripts/export_samples.py", f"ckpt={ckpt}", f"out={out}", "n=12", "batch=5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    import re
    assert [int(f[:6]) for f in files] == list(range(12))
    assert all(re.fullmatch(r"\d{6}_class\d\.png", f) for f in files)
    assert Image.open(out / files[3]).size == (32, 32)
    again = subprocess.run([sys.executable, "scripts/export_samples.py", f"ckpt={ckpt}", f"out={out}", "n=12"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "not an empty folder" in again.stderr and len(list(out.iterdir())) == 12
    helped = subprocess.run([sys.executable, "evaluate.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "usage: python evaluate.py ckpt=<path>" in helped.stdout


def test_demo_prints_the_paired_studys_caveat_beside_its_table(tmp_path):
    """scripts/demo.sh's report (its here-document, on two stand-in runs): the one-seed table is followed by
    the caveat with the paired study's numbers, computed from the committed result files."""
    script = (ROOT / "scripts" / "demo.sh").read_text()
    body = script.split("<<'PY'\n", 1)[1].rsplit("\nPY", 1)[0].replace("runs/demo/", f"{tmp_path}/")
    for norm, acc in (("bn", 40.0), ("saauxbn", 42.0)):
        (tmp_path / norm).mkdir()
        (tmp_path / norm / "metrics.jsonl").write_text(json.dumps(
            {"step": 1, "final/test/adv/clean": acc, "final/test/adv/pgd10": acc / 2}) + "\n")
    done = subprocess.run([sys.executable, "-c", body], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "saauxbn       42.00    21.00" in done.stdout
    assert "not evidence" in done.stdout and "SaAuxBN - AuxBN = +0.09 PGD-20 points (95 % CI [-0.38, +0.56]" in done.stdout


def test_tensorboard_gets_hparams_with_the_arm_and_nas_alphas_and_genotype(tmp_path, cifar10):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    env = {**os.environ, "SABN_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "train.py", "experiment=nas/smoke", "task.a_lr=0.001", f"paths.run_dir={tmp_path}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    alphas = [t for t in events.Tags()["scalars"] if t.startswith("alpha/")]
    assert len(alphas) == 6 * 5 and "alpha/edge3<-0/skip_connect" in alphas
    assert "genotype/text_summary" in events.Tags()["tensors"]
    starts = [plugin_data_pb2.HParamsPluginData.FromString(d) for d in events.PluginTagToContent("hparams").values()]
    hp = next(p.session_start_info.hparams for p in starts if p.HasField("session_start_info"))
    assert hp["norm"].string_value == "sabn" and hp["a_lr"].string_value == "0.001" and hp["seed"].number_value == 0


def test_packaging_library_needs_torch_only_and_the_docs_match_the_files():
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0].split("=")[0] for d in project["dependencies"]] == ["torch"]
    assert "hydra-core>=1.3.2" in project["optional-dependencies"]["tasks"]
    assert '".[tasks,dev]"' in (ROOT / "Makefile").read_text()
    # an SPDX expression (PEP 639): the table form is deprecated by setuptools and warns at every install
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert project["scripts"]["stylize"] == "sabn._cli:stylize"
    readme = (ROOT / "README.md").read_text()
    launchers = [p.stem for p in (ROOT / "configs" / "hydra" / "launcher").glob("*.yaml")]
    named = [n for n in ("slurm", "submitit_slurm") if f"hydra/launcher={n}`" in readme or f"hydra/launcher={n} " in readme]
    assert named and all(n in launchers for n in named)
    assert "stylize --content" in readme
    library = [p for p in (ROOT / "sabn").glob("*.py")]
    imports = {line.split()[1].split(".")[0] for p in library for line in p.read_text().splitlines()
               if line.startswith(("import ", "from ")) and not line.startswith("from .")}
    assert imports <= {"torch", "__future__", "typing", "os", "sys", "math", "warnings", "dataclasses", "contextlib",
                       "functools", "itertools", "hashlib", "pathlib", "re", "platform", "threading", "logging",
                       "inspect", "collections", "enum", "json", "time", "subprocess", "importlib", "copy"}, imports


def test_stylize_console_script_runs_from_the_checkout():
    import shutil
    exe = shutil.which("stylize", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("the stylize console script is not installed in this environment (make install installs it)")
    done = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--content" in done.stdout


def test_fid_extraction_shows_a_progress_bar_on_a_terminal_only(monkeypatch):
    import io
    import torch
    from tasks.gan.metrics import fid

    class Net(torch.nn.Module):
        def forward(self, x):
            return {"features": x.flatten(1)[:, :4]}

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    batches = [torch.rand(3, 3, 4, 4) for _ in range(2)]
    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        out = fid.extract(Net(), iter(batches), torch.device("cpu"), desc="FID samples (step 7)", total=6)
        assert out["features"].shape == (6, 4)
        assert ("FID samples (step 7)" in stream.getvalue()) is shown


def test_no_cuda_runtime_note_is_silenced_in_cpu_processes():
    """torch's extension builder logs "No CUDA runtime is found" in every CPU-only process that loads the
    C++ kernels: noise, dropped by sabn (other messages of that logger still pass)."""
    import logging
    from sabn.cpu_kernels import _NoCudaRuntimeNote
    done = subprocess.run([sys.executable, "-c", "import sabn; sabn.enable_cpu_kernels()"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1000:]
    assert "No CUDA runtime" not in done.stderr
    keep = logging.LogRecord("torch.utils.cpp_extension", logging.WARNING, "", 0, "another message", (), None)
    drop = logging.LogRecord("torch.utils.cpp_extension", logging.WARNING, "", 0, "No CUDA runtime is found, using %s",
                             ("/usr/local",), None)
    assert _NoCudaRuntimeNote().filter(keep) and not _NoCudaRuntimeNote().filter(drop)
