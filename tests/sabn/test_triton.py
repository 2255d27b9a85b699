"""The Triton kernels of the CUDA path, run on the CPU by Triton's interpreter (TRITON_INTERPRET=1, in
a subprocess: the variable must be set before Triton compiles anything): each kernel against torch,
and whole SaBN / CCBN layers (forward, input and parameter gradients, running statistics) against the
reference composition, in NCHW and channels_last, training and evaluation."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

SCRIPT = textwrap.dedent("""
    import json, sys, torch, sabn
    from sabn import build_norm, triton_kernels as tk
    torch.set_default_device(sys.argv[1])
    out = {}
    torch.manual_seed(0)
    for fmt_name, fmt in (("nchw", torch.contiguous_format), ("nhwc", torch.channels_last)):
        x = torch.randn(3, 5, 4, 6).contiguous(memory_format=fmt)
        g = torch.randn(3, 5, 4, 6).contiguous(memory_format=fmt)
        s, t, a = torch.randn(3, 5), torch.randn(3, 5), torch.randn(3, 5)
        b, d = torch.randn(5), torch.randn(5)
        y = tk.affine(x, s, t)
        out[f"affine_{fmt_name}"] = [float((y - (s[:, :, None, None] * x + t[:, :, None, None])).abs().max()),
                                     y.is_contiguous(memory_format=fmt)]
        sg, sgx = tk.nc_sums(g, x)
        out[f"sums_{fmt_name}"] = float(max((sg - g.sum((2, 3))).abs().max(), (sgx - (g * x).sum((2, 3))).abs().max()))
        gi = tk.grad_input(g, x, a, b, d)
        ref = a[:, :, None, None] * g + b[None, :, None, None] * x + d[None, :, None, None]
        out[f"grad_input_{fmt_name}"] = float((gi - ref).abs().max())
        for name in ("sabn", "ccbn"):
            for training in (True, False):
                torch.manual_seed(1)
                fused, plain = build_norm(name, 5, 4), build_norm(name, 5, 4, fused=False)
                with torch.no_grad():
                    fused.condition_bias.normal_(); fused.running_var.uniform_(0.5, 2)
                plain.load_state_dict(fused.state_dict())
                fused.train(training), plain.train(training)
                xs = [x.clone().requires_grad_(True) for _ in range(2)]
                cond = torch.tensor([0, 3, 1])
                fused.to(sys.argv[1]), plain.to(sys.argv[1])
                ys = [fused(xs[0], cond), plain(xs[1], cond)]
                for yy, xx in zip(ys, xs):
                    (yy * g).sum().backward()
                diffs = [float((ys[0] - ys[1]).abs().max()), float((xs[0].grad - xs[1].grad).abs().max())]
                diffs += [float((p.grad - q.grad).abs().max()) for p, q in zip(fused.parameters(), plain.parameters())]
                diffs.append(float((fused.running_mean - plain.running_mean).abs().max()))
                out[f"{name}_{fmt_name}_{'train' if training else 'eval'}"] = max(diffs)
    # Double backward (an R1-style penalty): the input gradient's graph through the fused layer.
    torch.manual_seed(2)
    fused, plain = build_norm("sabn", 5, 4), build_norm("sabn", 5, 4, fused=False)
    plain.load_state_dict(fused.state_dict())
    fused.to(sys.argv[1]), plain.to(sys.argv[1])
    pens, pgrads = [], []
    for layer in (fused, plain):
        xx = torch.randn(3, 5, 4, 6, generator=torch.Generator().manual_seed(4)).to(sys.argv[1]).requires_grad_(True)
        (gx,) = torch.autograd.grad((layer(xx, torch.tensor([0, 3, 1])) * g).sum(), xx, create_graph=True)
        pen = gx.pow(2).sum()
        pens.append(pen)
        grads = torch.autograd.grad(pen, list(layer.parameters()), allow_unused=True)   # shifts: unused
        pgrads.append([torch.zeros_like(p) if q is None else q for p, q in zip(layer.parameters(), grads)])
    out["double_backward"] = max([float((pens[0] - pens[1]).abs() / pens[1].abs())] +
                                 [float((a - b).abs().max() / b.abs().max().clamp_min(1))
                                  for a, b in zip(*pgrads)])
    x = torch.randn(4, 6, 3, 3).to(torch.bfloat16)
    out["bf16_affine"] = float((tk.affine(x, torch.ones(4, 6), torch.zeros(4, 6)).float() - x.float()).abs().max())
    print("RESULT" + json.dumps(out))
""")


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_triton_kernels_match_the_reference(device):
    """cpu: under Triton's interpreter (CI); cuda: compiled for the GPU (scripts/gpu_check.sh)."""
    pytest.importorskip("triton")
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    env = {**os.environ, "SABN_CPU_KERNELS": "0"}
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    done = subprocess.run([sys.executable, "-c", SCRIPT, device], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.split("RESULT", 1)[1])
    for key, value in out.items():
        if key.startswith("affine"):
            assert value[0] < 1e-5 and value[1], key
        else:
            assert value < 2e-5, (key, value)
