"""The sandwich coupling, isolated (issue #13 item 4): from one trained CCBN model (GAN generator or
NAS supernet), build the SaBN model that computes the same function (shared affine exactly (1, 0), the same class affines and
statistics: sabn.analysis.sandwich_copy), take one identical optimizer step in each on the same
class-balanced batch, and compare the per-class updates of the composed affine (a_k = gamma_k gamma_sa,
b_k = gamma_k beta_sa + beta_k): spread of their norms across classes (CV) and mean pairwise cosine
(whose floor for K classes is -1/(K-1)). Trajectories play no part: both start from one state.

    python scripts/gradient_controlled.py gan --seeds 0 1 2 --checkpoints 100 200     # G steps
    python scripts/gradient_controlled.py nas --seeds 0 1 2 --checkpoints 1 2         # search epochs

The CCBN checkpoints come from short runs trained here under runs/analysis/: the gan/cpu preset with
CCBN, balanced labels and 32-channel G and D; the nas/cpu preset with CCBN (the NAS step sums the
gradients over every combination of the ops that set the conditions). The step is plain SGD (a fresh Adam's first step would
equalise every parameter's update and hide the effect). Writes results/analysis/gradient_controlled_<task>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMMON = ["norm=ccbn", "analysis.enabled=false", "results.write=false", "logger.tensorboard=false", "trainer.progress=false"]
OVERRIDES = {
    "gan": ["experiment=gan/cpu", *COMMON, "task.g_ch=32", "task.d_ch=32", "task.labels=balanced", "trainer.eval_every=0",
            "task.fid.num_samples=64", "task.fid.reference_count=64", "task.fid.kid_subset_size=32"],
    # the cpu tier's supernet and search split, cosine T = 6 as its preset; checkpoints are epochs
    "nas": ["experiment=nas/cpu", *COMMON],
}


def compose(overrides):
    from tasks.common.store import compose as store_compose
    return store_compose(*overrides)


def checkpoints(task: str, seed: int, points, run_root: Path):
    """Train (or resume) a CCBN run keeping a snapshot at each requested point (GAN: steps, NAS:
    epochs); return the config and the snapshot paths."""
    from tasks.common.runner import train
    run_dir = run_root / f"seed{seed}"
    if task == "nas":
        _, state, _ = _nas_state(compose(OVERRIDES[task] + [f"trainer.seed={seed}"]), run_dir)
        epoch = state.iterators["train"].batches_per_epoch
        steps = [p * epoch for p in points]
        length = [f"task.stop_epoch={max(points)}"]
    else:
        steps, length = list(points), [f"trainer.steps={max(points)}"]
    keep = steps[0] if all(s % steps[0] == 0 for s in steps) else 1
    cfg = compose(OVERRIDES[task] + length + [f"trainer.seed={seed}", f"trainer.keep_every={keep}", f"paths.run_dir={run_dir}"])
    out = train(cfg)
    if out["status"] != "completed":
        raise SystemExit(f"training interrupted: {out['status']}")
    return cfg, [run_dir / "checkpoints" / f"step{s:07d}.pt" for s in steps]


def _sgd(model, lr: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.sub_(lr * p.grad)


def _nas_state(cfg, run_dir: Path):
    """The NAS task's built state (supernet, search data, iterators) for a composed config."""
    from tasks.common.distributed import DistInfo
    from tasks.common.logging import MetricsLogger
    from tasks.common.task import RunContext, get_task
    task = get_task("nas")
    ctx = RunContext(cfg, torch.device("cpu"), DistInfo(), MetricsLogger(run_dir, enabled=False), run_dir)
    return task, task.build(ctx), ctx


def one_step_nas(cfg, path: Path, batch_seed: int, per_class: int, lr: float):
    """The supernet's weight step with every condition equally represented: the gradients of the same
    batch summed over all 125 op combinations on the edges that set the conditions (node 1 <- 0,
    node 2 <- 0, node 2 <- 1), so each of a layer's 5 or 25 conditions appears equally often."""
    import itertools

    from sabn.analysis import composed_affines, sandwich_copy, update_spread
    from tasks.common.checkpoint import load_checkpoint
    task, state, ctx = _nas_state(cfg, path.parent.parent)
    model = state.modules["model"]
    model.load_state_dict(load_checkpoint(path)["modules"]["model"])
    images, labels = next(state.iterators["train"])
    x = task._inputs(ctx, state, images, torch.Generator().manual_seed(batch_seed))
    combos = [torch.tensor([a, b, c, 0, 0, 0]) for a, b, c in itertools.product(range(5), repeat=3)]
    results, losses = {}, {}
    for arm, net in (("ccbn", model), ("sabn", sandwich_copy(model))):
        net.train()
        before = composed_affines(net)
        net.zero_grad(set_to_none=True)
        total = 0.0
        for sampled in combos:
            loss = torch.nn.functional.cross_entropy(net(x, "darts", sampled=sampled), labels)
            loss.backward()
            total += float(loss.detach())
        net.alphas.grad = None   # the weight step only
        _sgd(net, lr)
        results[arm] = update_spread(before, composed_affines(net))
        losses[arm] = total / len(combos)
    if abs(losses["ccbn"] - losses["sabn"]) > 1e-4 * max(1.0, abs(losses["ccbn"])):
        raise SystemExit(f"the SaBN twin computes another function: loss {losses}")
    return results, losses["ccbn"]


def one_step_gan(cfg, path: Path, batch_seed: int, per_class: int, lr: float):
    """Per-layer update spreads of the CCBN generator and of its SaBN twin after one SGD step."""
    from sabn import norm_layer
    from sabn.analysis import composed_affines, sandwich_copy, update_spread
    from tasks.common.checkpoint import load_checkpoint
    from tasks.gan.models.registry import build_gan
    t = cfg.task
    payload = load_checkpoint(path)
    g, d = build_gan(t.model, norm_layer("ccbn", num_conditions=t.num_classes), t.num_classes, t.g_ch, t.d_ch,
                     t.z_dim, t.sn_update)
    g.load_state_dict(payload["modules"]["generator"])
    d.load_state_dict(payload["modules"]["discriminator"])
    d.requires_grad_(False).eval()   # stored spectral-norm vectors: the same D for both arms
    generator = torch.Generator().manual_seed(batch_seed)
    n = per_class * t.num_classes
    z = torch.randn(n, t.z_dim, generator=generator)
    y = torch.arange(t.num_classes).repeat_interleave(per_class)     # every class exactly per_class times
    results, losses = {}, {}
    for arm, model in (("ccbn", g), ("sabn", sandwich_copy(g))):
        model.train()
        before = composed_affines(model)
        loss = -d(model(z, y), y).mean()
        model.zero_grad(set_to_none=True)
        loss.backward()
        _sgd(model, lr)
        results[arm] = update_spread(before, composed_affines(model))
        losses[arm] = float(loss.detach())
    if abs(losses["ccbn"] - losses["sabn"]) > 1e-4 * max(1.0, abs(losses["ccbn"])):
        raise SystemExit(f"the SaBN twin computes another function: loss {losses}")
    return results, losses["ccbn"]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=["gan", "nas"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--checkpoints", type=int, nargs="+", default=None, help="GAN: steps (100 200); NAS: epochs (1 2)")
    p.add_argument("--batches", type=int, default=3, help="class-balanced batches per checkpoint")
    p.add_argument("--per-class", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--out", default=None, help="default results/analysis/gradient_controlled_<task>.json")
    args = p.parse_args(argv)
    args.checkpoints = args.checkpoints or ([100, 200] if args.task == "gan" else [1, 2])
    args.out = args.out or str(ROOT / "results" / "analysis" / f"gradient_controlled_{args.task}.json")
    one_step = one_step_gan if args.task == "gan" else one_step_nas
    from tasks.common.provenance import provenance
    prov = provenance("cpu")   # at the start: the code that runs is the code of this commit
    start = time.perf_counter()
    rows = []
    for seed in args.seeds:
        cfg, paths = checkpoints(args.task, seed, sorted(args.checkpoints), ROOT / "runs" / "analysis" / f"{args.task}_ccbn")
        for step, path in zip(sorted(args.checkpoints), paths):
            for b in range(args.batches):
                spreads, loss = one_step(cfg, path, 1000 * seed + b, args.per_class, args.lr)
                for layer in spreads["ccbn"]:
                    c, s = spreads["ccbn"][layer], spreads["sabn"][layer]
                    if c["cv"] is None or s["cv"] is None:
                        continue   # a layer with one condition (NAS edges from the input node): nothing to compare
                    rows.append({"seed": seed, "step": step, "batch": b, "layer": layer, "loss": loss,
                                 "cv_ccbn": c["cv"], "cv_sabn": s["cv"], "cos_ccbn": c["cos_mean"],
                                 "cos_sabn": s["cos_mean"], "cos_floor": c["cos_floor"]})
    def paired(key):
        diffs = [r[f"{key}_sabn"] - r[f"{key}_ccbn"] for r in rows]
        return {"mean_ccbn": statistics.mean(r[f"{key}_ccbn"] for r in rows),
                "mean_sabn": statistics.mean(r[f"{key}_sabn"] for r in rows),
                "mean_difference": statistics.mean(diffs), "sabn_lower_in": sum(d < 0 for d in diffs), "of": len(diffs)}
    summary = {"cv": paired("cv"), "cos": paired("cos"), "cos_floor": sorted({r["cos_floor"] for r in rows})}
    settings = {**vars(args), "overrides": OVERRIDES[args.task]}
    out_path = Path(os.path.abspath(args.out))   # not resolved: results/ may be a link in a worktree
    if out_path.is_relative_to(ROOT):   # no machine paths in result files
        settings["out"] = str(out_path.relative_to(ROOT))
    out = {"what": __doc__.split("\n\n")[0], "settings": settings,
           "summary": summary, "rows": rows,
           "provenance": {**prov, "wall_time_s": round(time.perf_counter() - start, 1)}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(json.dumps(summary, indent=2))
    return out


if __name__ == "__main__":
    main()
