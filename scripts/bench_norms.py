"""Layer benchmark: SaBN / CCBN (fused and reference composition) against nn.BatchNorm2d.

Each variant runs interleaved with nn.BatchNorm2d in the same process, forward + backward, and the
table reports medians over rounds and the ratio to BN measured in the same rounds. Also reports the
bytes saved for backward (CPU) or the peak memory (CUDA) next to BN's.

    python scripts/bench_norms.py --quick            # < 1 minute on 2 CPU cores
    python scripts/bench_norms.py --device cuda      # full grid on a GPU

``<variant>_fused`` is the default eager path: on CPU, the C++ kernels when they can be built
(``sabn.enable_cpu_kernels()``, compiled once; ``make install`` does it); ``<variant>_python`` is the
same layer forced onto the Python path (``--no-cpu-kernel`` times only that, as ``_fused``). Compiled layers
start from a fresh dynamo cache per shape (one compiled frame per layer, as in a whole-model compile;
otherwise the cache limit sends later shapes back to eager).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sabn  # noqa: E402
from sabn import build_norm  # noqa: E402
from tasks.common.provenance import hardware, provenance  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _make(name, c, k, device, fused):
    if name == "bn":
        return torch.nn.BatchNorm2d(c).to(device)
    return build_norm(name, c, k, fused=fused).to(device)


def _call(layer, x, y):
    plain = isinstance(getattr(layer, "_orig_mod", layer), torch.nn.BatchNorm2d) and \
        type(getattr(layer, "_orig_mod", layer)) is torch.nn.BatchNorm2d
    return layer(x) if plain else layer(x, y)


def _step(layer, x, y, grad):
    _call(layer, x, y).backward(grad)


def _saved_bytes(layer, x, y):
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _call(layer, x, y)
    return total[0]


def _peak(layer, x, y, grad, device):
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    _step(layer, x, y, grad)
    return torch.cuda.max_memory_allocated() - base


def _with_kernel(on: bool, fn):
    def run():
        sabn.enable_cpu_kernels() if on else sabn.disable_cpu_kernels()
        fn()
    return run


def _with_triton(on: bool, fn):
    """The fused layer with its CUDA Triton kernels (default) or forced onto the ATen composition."""
    def run():
        os.environ["SABN_TRITON"] = "1" if on else "0"
        fn()
    return run


def bench_shape(n, c, h, k, channels_last, device, rounds, reps, variants, compiled, kernel=False):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(n, c, h, h, device=device).contiguous(memory_format=fmt).requires_grad_()
    grad = torch.randn(n, c, h, h, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, k, (n,), device=device)
    layers = {"bn": _make("bn", c, k, device, True)}
    for name in variants:
        layers[f"{name}_fused"] = _make(name, c, k, device, True)
        layers[f"{name}_reference"] = _make(name, c, k, device, False)
    if compiled:
        torch._dynamo.reset()
        layers["bn_compiled"] = torch.compile(_make("bn", c, k, device, True))
        for name in variants:
            layers[f"{name}_compiled"] = torch.compile(_make(name, c, k, device, True))
    fns = {key: (lambda l=layer: _step(l, x, y, grad)) for key, layer in layers.items()}
    for name in variants:   # the same fused layers, with and without the C++ kernels
        if kernel:
            fns[f"{name}_python"] = _with_kernel(False, fns[f"{name}_fused"])
        fns[f"{name}_fused"] = _with_kernel(kernel, fns[f"{name}_fused"])
        if str(device).startswith("cuda"):   # Triton kernels (the default there) vs the ATen composition
            fns[f"{name}_aten"] = _with_triton(False, fns[f"{name}_fused"])
            fns[f"{name}_fused"] = _with_triton(True, fns[f"{name}_fused"])
    for fn in fns.values():
        for _ in range(3):
            fn()
    _sync(device)
    times = {key: [] for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():  # interleaved: every variant sees the same machine state
            _sync(device)
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            _sync(device)
            times[key].append((time.perf_counter() - start) / reps * 1e3)
    med = {key: statistics.median(v) for key, v in times.items()}
    row = {"N": n, "C": c, "H": h, "K": k, "format": "channels_last" if channels_last else "NCHW",
           "ms": {key: round(v, 4) for key, v in med.items()}}
    ratios = {}
    for key, value in med.items():
        if key == "bn":
            continue
        base = med["bn_compiled"] if key.endswith("_compiled") else med["bn"]
        ratios[key] = round(value / base, 3)
    row["ratio_to_bn"] = ratios
    row["saved_bytes"] = {key: _saved_bytes(layer, x, y) for key, layer in layers.items()
                          if not key.endswith("_compiled")}
    peaks = {key: _peak(layer, x, y, grad, device) for key, layer in layers.items()}
    if device.type == "cuda":
        row["peak_bytes"] = peaks
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three shapes, K=10, fewer rounds (< 1 min on CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-cpu-kernel", action="store_true", help="time the Python path only (as _fused)")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench" / "norms.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    variants = ["sabn", "ccbn"]
    if args.quick:
        shapes = [(64, 64, 32), (64, 128, 16), (64, 256, 8)]
        ks, rounds, reps = [10], 7, 3
        compile_shapes = {(64, 128, 16)}
    else:
        shapes = [(64, c, h) for c, h in itertools.product((64, 128, 256), (8, 16, 32))]
        ks, rounds, reps = [2, 10, 100], 11, 5
        compile_shapes = set(shapes)
    if args.no_compile:
        compile_shapes = set()
    kernel = device.type == "cpu" and not args.no_cpu_kernel and sabn.enable_cpu_kernels()
    sabn.disable_cpu_kernels()
    rows = []
    wall = time.perf_counter()
    for (n, c, h), k, cl in itertools.product(shapes, ks, (False, True)):
        row = bench_shape(n, c, h, k, cl, device, rounds, reps, variants, (n, c, h) in compile_shapes and k == ks[0],
                          kernel=kernel)
        rows.append(row)
        r = row["ratio_to_bn"]
        print(f"N{n} C{c:3d} H{h:2d} K{k:3d} {row['format']:13s} bn {row['ms']['bn']:7.3f} ms | "
              + " ".join(f"{key} {r[key]:.2f}x" for key in sorted(r)), flush=True)
    report = {"hardware": hardware(), "provenance": provenance(args.device), "device": args.device,
              "cpu_kernel": sabn.cpu_kernels_status() | {"timed": bool(kernel)},
              "quick": args.quick, "rounds": rounds, "reps_per_round": reps, "rows": rows,
              "wall_time_s": round(time.perf_counter() - wall, 1),
              "note": "ratio_to_bn: median ms / median ms of nn.BatchNorm2d (compiled variants: of "
                      "compiled BN), forward+backward, interleaved in the same rounds"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    fused = "C++ kernels" if kernel else "Python path"
    for label, fmt, suffix in ((f"fused eager ({fused}), NCHW", "NCHW", "_fused"),
                               (f"fused eager ({fused}), channels_last", "channels_last", "_fused"),
                               ("fused eager forced onto the Python path, NCHW", "NCHW", "_python"),
                               ("fused eager forced onto the Python path, channels_last", "channels_last", "_python"),
                               ("compiled", None, "_compiled")):
        vals = [v for row in rows if fmt in (None, row["format"]) for key, v in row["ratio_to_bn"].items()
                if key.endswith(suffix) and not key.startswith("bn")]
        if vals:
            print(f"{label}: ratio to BN max {max(vals):.2f}, median {statistics.median(vals):.2f}")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
