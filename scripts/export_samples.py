"""Write N samples of a trained GAN as PNG files, for pytorch-fid's / torch-fidelity's own CLIs:

    python scripts/export_samples.py ckpt=runs/gan/long_sabn/seed0/checkpoints/last.pt out=samples/ n=5000
    python -m pytorch_fid samples/ <reference folder or .npz>

The generator is the one the task evaluates (EMA weights when the run keeps them), labels as in its
evaluation (class-balanced when task.labels=balanced), noise from the evaluation's seed, so the files
are the sample our FID scored. Files are <index>_class<label>.png; an existing non-empty folder is
refused (nothing is overwritten).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.common.cli import friendly_errors  # noqa: E402

USAGE = "usage: python scripts/export_samples.py ckpt=<gan checkpoint> out=<new folder> [n=5000] [batch=100] [device=auto]"


@friendly_errors
def main(argv) -> Path:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return Path()
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    if "ckpt" not in args or "out" not in args:
        raise ValueError(USAGE)
    n, batch = int(args.get("n", 5000)), int(args.get("batch", 100))
    if n < 1 or batch < 1:
        raise ValueError(f"n={n} and batch={batch} must be >= 1")
    out = Path(args["out"])
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"out={out} exists and is not an empty folder; choose a new folder")
    import torch
    from torchvision.utils import save_image
    from tqdm import tqdm
    from tasks.common.evaluation import load_trained
    task, ctx, state, _ = load_trained(args["ckpt"], "gan", None, {}, args.get("device", "auto"))
    t = ctx.cfg.task
    g = task._eval_generator(state, ctx)
    gen = torch.Generator(device=ctx.device).manual_seed(2024)   # the evaluation's noise seed
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    with torch.no_grad(), tqdm(total=n, desc="samples", unit="img") as bar:
        while done < n:
            k = min(batch, n - done)
            z = torch.randn(k, t.z_dim, generator=gen, device=ctx.device)
            if t.labels == "balanced":
                y = ((torch.arange(k) + done) % t.num_classes).to(ctx.device)
            else:
                y = torch.randint(0, t.num_classes, (k,), generator=gen, device=ctx.device)
            images = ((g(z, y).float() + 1) / 2).clamp(0, 1).cpu()
            for i in range(k):
                save_image(images[i], out / f"{done + i:06d}_class{int(y[i])}.png")
            done += k
            bar.update(k)
    print(f"wrote {n} samples to {out}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
