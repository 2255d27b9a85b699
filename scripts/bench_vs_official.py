"""One training step of each task's paper-size model: the official implementation against ours.

    python scripts/bench_vs_official.py --official /path/to/Sandwich-Batch-Normalization
    python scripts/bench_vs_official.py --official PATH --tasks sngan32 adv --rounds 5

The official classes are imported from a checkout of VITA-Group/Sandwich-Batch-Normalization that
the user supplies (nothing of it is copied here); a task whose files are missing is skipped with a
message. The official training loops are CUDA-only, so the official step is its loop body written
out (functions.py / DARTS-V1.py / train.py of each sub-project, including its host syncs such as
``loss.item()``) with ``.cuda()`` made a no-op on a CPU; ours is the task's ``train_step`` at
default settings, from the same preset the paper rows use. Same sizes, batches and optimizer
settings (read from our preset); weights are initialised independently (the time of a step does not
depend on their values). Steps of the two run interleaved in one process per task; the table
reports medians and the ratio official / ours (> 1: ours is faster). Writes
results/bench/vs_official.json.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

# task -> (our preset, our norm, official sub-project, extra overrides for our preset)
TASKS = {
    "sngan32": ("gan/paper_sngan", "sabn", "GAN", []),
    "autogan32": ("gan/paper_autogan", "sabn", "GAN", []),
    "nas": ("nas/paper_cifar100", "sabn", "NAS", ["data=cifar10", "task.benchmark.dataset=cifar10"]),
    "adv": ("adv/paper", "saauxbn", "Adv", []),
    # ours in memory: the official time excludes data loading, and the paper preset streams from disk
    "nst": ("nst/paper", "saadain", "NST", ["task.data=memory", "task.require_encoder_file=false", "task.encoder_path=null",
                                            "task.content_dirs=[style_transfer/content]",
                                            "task.style_dirs=[style_transfer/style]",
                                            "task.val_content_dirs=[]", "task.val_style_dirs=[]"]),
}


SEED = 0   # the global stream before either model is built (weights and batches draw from it)


@contextlib.contextmanager
def cpu_cuda_shim(device: torch.device):
    """Make the official code's ``.cuda()`` calls follow ``device`` (a no-op on a CPU)."""
    if device.type == "cuda":
        yield
        return
    saved = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = saved


def ours(preset: str, norm: str, overrides, device: torch.device):
    """Our task at the preset's settings: (cfg, function running one iteration), as bench_step times it."""
    from bench_step import compose, iteration
    from tasks.common.distributed import DistInfo
    from tasks.common.logging import MetricsLogger
    from tasks.common.task import RunContext, get_task
    task_name, scale = preset.split("/")
    cfg = compose(task_name, scale, norm, [f"trainer.device={device.type}", *overrides])
    task = get_task(task_name)
    tmp = Path(tempfile.mkdtemp())   # the logger is disabled: nothing is written there
    ctx = RunContext(cfg, device, DistInfo(), MetricsLogger(tmp, enabled=False), tmp)
    _, step = iteration(task, task.build(ctx), ctx)
    return cfg, step


def official_gan(root: Path, cfg, device, generator: str):
    sys.path.insert(0, str(root / "GAN"))
    import models  # the official GAN/models package
    t = cfg.task
    args = SimpleNamespace(bottom_width=4, gf_dim=t.g_ch, df_dim=t.d_ch, latent_dim=t.z_dim, n_classes=t.num_classes,
                           d_sn=True, g_sn=False, norm_module="sabn")
    gen = {"sngan32": models.SnganGen32, "autogan32": models.AutoganGen32}[generator](args).to(device)
    dis = models.SnganDis32(args).to(device)
    g_opt = torch.optim.Adam(gen.parameters(), t.lr, betas=tuple(t.betas))
    d_opt = torch.optim.Adam(dis.parameters(), t.lr, betas=tuple(t.betas))
    avg = [p.detach().clone() for p in gen.parameters()]
    real = torch.rand(t.d_batch_size, 3, 32, 32, device=device) * 2 - 1
    labels = torch.randint(0, t.num_classes, (t.d_batch_size,), device=device)

    def step():   # GAN/functions.py train_conditional: n_critic D steps, one G step, the moving average
        for i in range(t.n_dis):
            z = torch.randn(t.d_batch_size, t.z_dim).to(device)
            d_opt.zero_grad()
            real_v = dis(real, labels)
            fake_y = torch.randint(0, t.num_classes, (t.d_batch_size,), device=device)
            fake = gen(z, fake_y).detach()
            fake_v = dis(fake, fake_y)
            d_loss = torch.mean(F.relu(1.0 - real_v)) + torch.mean(F.relu(1.0 + fake_v))
            d_loss.backward()
            d_opt.step()
        g_opt.zero_grad()
        gz = torch.randn(t.g_batch_size, t.z_dim).to(device)
        gy = torch.randint(0, t.num_classes, (t.g_batch_size,), device=device)
        g_loss = -torch.mean(dis(gen(gz, gy), gy))
        g_loss.backward()
        g_opt.step()
        for p, a in zip(gen.parameters(), avg):
            a.mul_(0.999).add_(p.data, alpha=0.001)
        d_loss.item(), g_loss.item()   # the official loop logs both every iteration
    return step


def official_nas(root: Path, cfg, device):
    sys.path.insert(0, str(root / "NAS" / "lib"))
    from models import get_cell_based_tiny_net, get_search_spaces
    t = cfg.task
    net = get_cell_based_tiny_net({
        "name": "DARTS-V1-sabn", "C": t.channels, "N": t.cells, "max_nodes": 4, "num_classes": 10,
        "space": get_search_spaces("cell", "nas-bench-201"), "affine": True, "track_running_stats": True,
    }).to(device)
    w_opt = torch.optim.SGD(net.get_weights(), t.w_lr, momentum=t.w_momentum, weight_decay=t.w_weight_decay,
                            nesterov=t.nesterov)
    a_opt = torch.optim.Adam(net.get_alphas(), t.a_lr, betas=tuple(t.a_betas), weight_decay=t.a_weight_decay)
    crit = nn.CrossEntropyLoss()
    b = t.batch_size
    xs = [torch.rand(b, 3, 32, 32, device=device) for _ in range(2)]
    ys = [torch.randint(0, 10, (b,), device=device) for _ in range(2)]

    def step():   # NAS/DARTS-V1.py search_func: a weight step, then an architecture step
        w_opt.zero_grad()
        _, logits = net(xs[0])
        loss = crit(logits, ys[0])
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), t.grad_clip)
        w_opt.step()
        (logits.argmax(1) == ys[0]).float().mean().item(), loss.item()
        a_opt.zero_grad()
        _, logits = net(xs[1])
        arch_loss = crit(logits, ys[1])
        arch_loss.backward()
        a_opt.step()
        (logits.argmax(1) == ys[1]).float().mean().item(), arch_loss.item()
    return step


def official_adv(root: Path, cfg, device):
    sys.path.insert(0, str(root / "Adv"))
    from attack_algo import PGD
    from models.network import saaux_resnet18
    t = cfg.task
    net = saaux_resnet18().to(device)
    opt = torch.optim.SGD(net.parameters(), t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    crit = nn.CrossEntropyLoss()
    x = torch.rand(t.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (t.batch_size,), device=device)
    a = t.train_attack

    def step():   # Adv/functions.py train: PGD-7 on the adversarial branch, both branches, one SGD step
        x_adv = PGD(x, crit, y=y, eps=a.eps, model=net, steps=a.steps, gamma=a.step_size, randinit=True, flag=1)
        out_clean, out_adv = net(x=x, flag=0), net(x=x_adv, flag=1)
        loss = (crit(out_clean, y) + crit(out_adv, y)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        (out_adv.argmax(1) == y).float().mean().item(), loss.item()
    return step


def official_nst(root: Path, cfg, device):
    sys.path.insert(0, str(root / "NST"))
    from models import SaAdaINNet, decoder, vgg
    t = cfg.task
    net = SaAdaINNet(nn.Sequential(*list(vgg.children())[:31]), decoder).to(device).train()
    opt = torch.optim.Adam(list(net.decoder.parameters()) + list(net.style_norm.parameters()), lr=t.lr)
    content = torch.rand(t.batch_size, 3, t.crop_size, t.crop_size, device=device)
    style = torch.rand(t.batch_size, 3, t.crop_size, t.crop_size, device=device)
    count = [0]

    def step():   # NST/functions.py train_func
        for group in opt.param_groups:
            group["lr"] = t.lr / (1.0 + t.lr_decay * count[0])
        loss_c, loss_s = net(content, style)
        loss = t.content_weight * loss_c + t.style_weight * loss_s
        opt.zero_grad()
        loss.backward()
        opt.step()
        count[0] += 1
    return step


LAYOUTS = {"nchw": False, "channels_last": True}


def worker(name: str, official: Path, rounds: int, warmup: int, extra=(), layouts=tuple(LAYOUTS)) -> dict:
    """One task in this process: the official step and ours in each of ``layouts``, interleaved."""
    from tasks.common.provenance import hardware
    preset, norm, _, overrides = TASKS[name]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    steps = {}
    for layout in layouts:
        torch.manual_seed(SEED)
        cfg, steps[f"ours_{layout}"] = ours(preset, norm, [*overrides, *extra,
                                                           f"trainer.channels_last={LAYOUTS[layout]}"], device)
    with cpu_cuda_shim(device):
        build = {"sngan32": lambda: official_gan(official, cfg, device, "sngan32"),
                 "autogan32": lambda: official_gan(official, cfg, device, "autogan32"),
                 "nas": lambda: official_nas(official, cfg, device), "adv": lambda: official_adv(official, cfg, device),
                 "nst": lambda: official_nst(official, cfg, device)}[name]
        steps = {"official": build(), **steps}
        times = {k: [] for k in steps}
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        keys = list(steps)
        for r in range(warmup + rounds):
            for key in keys[r % len(keys):] + keys[:r % len(keys)]:   # each variant first in turn
                sync()
                start = time.perf_counter()
                steps[key]()
                sync()
                if r >= warmup:
                    times[key].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"task": name, "preset": preset, "norm": norm, "device": device.type, "rounds": rounds, "overrides": list(extra),
            "official_s": round(med["official"], 4),
            "ours_s_by_layout": {lay: round(med[f"ours_{lay}"], 4) for lay in layouts},
            "speedup_by_layout": {lay: round(med["official"] / med[f"ours_{lay}"], 3) for lay in layouts},
            "ours_settings": {"amp": bool(cfg.trainer.amp), "compile": bool(cfg.trainer.compile)},
            "threads": torch.get_num_threads(), "seed": SEED, "hardware": hardware()}


def default_layout(row: dict) -> str:
    """The layout ``trainer.channels_last=null`` gives the row's task on the row's device now."""
    from tasks.common.task import get_task
    return "channels_last" if get_task(row["preset"].split("/")[0]).channels_last_on.get(row["device"]) else "nchw"


def timed_layouts(row: dict) -> dict:
    """Our seconds per memory layout timed in ``row`` (rows from before both were timed hold one)."""
    if "ours_s_by_layout" in row:
        return row["ours_s_by_layout"]
    return {"channels_last" if row["ours_settings"].get("channels_last") else "nchw": row["ours_s"]}


def at_default(row: dict) -> tuple:
    """(our seconds, speed-up) of a row at its task's default layout; older rows timed one layout only."""
    if "ours_s_by_layout" not in row:
        return row["ours_s"], row["speedup"]
    layout = default_layout(row)
    return row["ours_s_by_layout"][layout], row["speedup_by_layout"][layout]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", type=Path, required=True, help="checkout of VITA-Group/Sandwich-Batch-Normalization")
    p.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "vs_official.json")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra overrides of our preset, which the official model follows (e.g. task.g_ch=32 for a quick check)")
    p.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS),
                   help="our memory layouts to time (each interleaved with the official step)")
    p.add_argument("--worker", choices=list(TASKS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:   # one task per process: the official sub-projects each have a top-level 'models'
        print("RESULT" + json.dumps(worker(args.worker, args.official.resolve(), args.rounds, args.warmup, args.set,
                                           args.layouts)))
        return
    from tasks.common.provenance import provenance
    prov = provenance()
    rows, skipped = [], {}
    start = time.perf_counter()
    for name in args.tasks:
        sub = TASKS[name][2]
        if not (args.official / sub).is_dir():
            skipped[name] = f"{args.official / sub} not found"
            print(f"skip {name}: {skipped[name]}", file=sys.stderr)
            continue
        proc = subprocess.run([sys.executable, __file__, "--official", str(args.official), "--worker", name,
                               "--rounds", str(args.rounds), "--warmup", str(args.warmup), "--layouts", *args.layouts,
                               "--set", *args.set],
                              capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
        if proc.returncode or line is None:
            skipped[name] = f"failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
            print(f"{name}: {skipped[name]}", file=sys.stderr)
            continue
        rows.append(json.loads(line[len("RESULT"):]))
        r = rows[-1]
        print(f"{name:10s} official {r['official_s']:.3f} s  " + "  ".join(
            f"ours {lay} {r['ours_s_by_layout'][lay]:.3f} s ({r['speedup_by_layout'][lay]:.2f}x)" for lay in args.layouts),
            flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "rows": rows, "skipped": skipped, "official_commit": _official_commit(args.official),
        "provenance": {k: prov[k] for k in ("commit", "dirty", "hardware")},
        "wall_time_s": round(time.perf_counter() - start, 1),
        "command": "scripts/bench_vs_official.py --official <checkout> " + " ".join(
            f"--{k} {v}" for k, v in (("rounds", args.rounds), ("warmup", args.warmup))) + \
            " --layouts " + " ".join(args.layouts) + "".join(
            f" --set {x}" for x in args.set),
        "note": "speedup = official median / ours median of one training iteration (GAN: n_dis D steps + 1 G step); "
                "ours at the preset's settings in each memory layout; the default layout is the task's "
                "Task.channels_last_on, which follows these rows (tests/test_bench_layout.py); "
                "interleaved in one process per task"}, indent=2) + "\n")
    print(f"wrote {args.out}")


def _official_commit(path: Path):
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or None


if __name__ == "__main__":
    main()
