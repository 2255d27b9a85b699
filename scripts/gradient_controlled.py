"""The sandwich coupling, isolated (issue #13 item 4): from one trained CCBN generator, build the SaBN
generator that computes the same function (shared affine exactly (1, 0), the same class affines and
statistics: sabn.analysis.sandwich_copy), take one identical optimizer step in each on the same
class-balanced batch, and compare the per-class updates of the composed affine (a_k = gamma_k gamma_sa,
b_k = gamma_k beta_sa + beta_k): spread of their norms across classes (CV) and mean pairwise cosine
(whose floor for K classes is -1/(K-1)). Trajectories play no part: both start from one state.

    python scripts/gradient_controlled.py gan --seeds 0 1 2 --checkpoints 100 200

The CCBN checkpoints come from short runs of the gan/cpu preset (CCBN, balanced labels, 32-channel
G and D) trained here, under runs/analysis/. The step is plain SGD (a fresh Adam's first step would
equalise every parameter's update and hide the effect). Writes results/analysis/gradient_controlled_gan.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OVERRIDES = ["experiment=gan/cpu", "norm=ccbn", "task.g_ch=32", "task.d_ch=32", "task.labels=balanced",
             "trainer.eval_every=0", "analysis.enabled=false", "results.write=false", "logger.tensorboard=false",
             "task.fid.num_samples=64", "task.fid.reference_count=64", "task.fid.kid_subset_size=32", "trainer.progress=false"]


def compose(overrides):
    from tasks.common.store import compose as store_compose
    return store_compose(*overrides)


def checkpoints(seed: int, steps, run_root: Path):
    """Train (or resume) a CCBN run keeping a snapshot at each requested step; return their paths."""
    from tasks.common.runner import train
    run_dir = run_root / f"seed{seed}"
    keep = steps[0] if all(s % steps[0] == 0 for s in steps) else 1
    cfg = compose(OVERRIDES + [f"trainer.seed={seed}", f"trainer.steps={max(steps)}", f"trainer.keep_every={keep}",
                               f"paths.run_dir={run_dir}"])
    out = train(cfg)
    if out["status"] != "completed":
        raise SystemExit(f"training interrupted: {out['status']}")
    return cfg, [run_dir / "checkpoints" / f"step{s:07d}.pt" for s in steps]


def one_step(cfg, path: Path, batch_seed: int, per_class: int, lr: float):
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
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.sub_(lr * p.grad)
        results[arm] = update_spread(before, composed_affines(model))
        losses[arm] = float(loss.detach())
    if abs(losses["ccbn"] - losses["sabn"]) > 1e-4 * max(1.0, abs(losses["ccbn"])):
        raise SystemExit(f"the SaBN twin computes another function: loss {losses}")
    return results, losses["ccbn"]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=["gan"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--checkpoints", type=int, nargs="+", default=[100, 200])
    p.add_argument("--batches", type=int, default=3, help="class-balanced batches per checkpoint")
    p.add_argument("--per-class", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--out", default=str(ROOT / "results" / "analysis" / "gradient_controlled_gan.json"))
    args = p.parse_args(argv)
    from tasks.common.provenance import provenance
    start = time.perf_counter()
    rows = []
    for seed in args.seeds:
        cfg, paths = checkpoints(seed, sorted(args.checkpoints), ROOT / "runs" / "analysis" / "gan_ccbn")
        for step, path in zip(sorted(args.checkpoints), paths):
            for b in range(args.batches):
                spreads, loss = one_step(cfg, path, 1000 * seed + b, args.per_class, args.lr)
                for layer in spreads["ccbn"]:
                    c, s = spreads["ccbn"][layer], spreads["sabn"][layer]
                    rows.append({"seed": seed, "step": step, "batch": b, "layer": layer, "g_loss": loss,
                                 "cv_ccbn": c["cv"], "cv_sabn": s["cv"], "cos_ccbn": c["cos_mean"],
                                 "cos_sabn": s["cos_mean"], "cos_floor": c["cos_floor"]})
    def paired(key):
        diffs = [r[f"{key}_sabn"] - r[f"{key}_ccbn"] for r in rows]
        return {"mean_ccbn": statistics.mean(r[f"{key}_ccbn"] for r in rows),
                "mean_sabn": statistics.mean(r[f"{key}_sabn"] for r in rows),
                "mean_difference": statistics.mean(diffs), "sabn_lower_in": sum(d < 0 for d in diffs), "of": len(diffs)}
    summary = {"cv": paired("cv"), "cos": paired("cos"), "cos_floor": rows[0]["cos_floor"]}
    out = {"what": __doc__.split("\n\n")[0], "settings": {**vars(args), "overrides": OVERRIDES},
           "summary": summary, "rows": rows,
           "provenance": {**provenance("cpu"), "wall_time_s": round(time.perf_counter() - start, 1)}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(json.dumps(summary, indent=2))
    return out


if __name__ == "__main__":
    main()
