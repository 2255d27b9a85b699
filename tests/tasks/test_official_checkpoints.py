"""Official checkpoints (VITA-Group/Sandwich-Batch-Normalization layout) convert onto our models: the
state dicts here are written in the official key layout by hand (from its model code), converted,
and checked tensor by tensor and against the official layers' formulas; then through
scripts/convert_official.py and evaluate.py."""
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import compose


def _bn(prefix, c, affine=True):
    out = {f"{prefix}.running_mean": torch.randn(c), f"{prefix}.running_var": torch.rand(c) + 0.5,
           f"{prefix}.num_batches_tracked": torch.tensor(7)}
    if affine:
        out.update({f"{prefix}.weight": torch.randn(c), f"{prefix}.bias": torch.randn(c)})
    return out


def _conv(prefix, c_out, c_in, k, bias=True, sn=False):
    w = torch.randn(c_out, c_in, k, k)
    out = {f"{prefix}.weight_orig" if sn else f"{prefix}.weight": w}
    if sn:
        out.update({f"{prefix}.weight_u": F.normalize(torch.randn(c_out), dim=0),
                    f"{prefix}.weight_v": F.normalize(torch.randn(c_in * k * k), dim=0)})
    if bias:
        out[f"{prefix}.bias"] = torch.randn(c_out)
    return out


def official_sngan32(ch=16, k=10, z=8, norm="sabn"):
    g = {"l1.weight": torch.randn(16 * ch, z), "l1.bias": torch.randn(16 * ch)}
    for i in (2, 3, 4):
        for j in (1, 2):
            g.update(_bn(f"block{i}.b{j}.bn", ch, affine=norm == "sabn"))
            g[f"block{i}.b{j}.embed.weight"] = torch.randn(k, 2 * ch)
        g.update(_conv(f"block{i}.c1", ch, ch, 3) | _conv(f"block{i}.c2", ch, ch, 3) | _conv(f"block{i}.c_sc", ch, ch, 1))
    g.update(_bn("b5", ch) | _conv("c5", 3, ch, 3))
    d = _conv("block1.c1", ch, 3, 3, sn=True) | _conv("block1.c2", ch, ch, 3, sn=True) | _conv("block1.c_sc", ch, 3, 1, sn=True)
    d |= _conv("block2.c1", ch, ch, 3, sn=True) | _conv("block2.c2", ch, ch, 3, sn=True) | _conv("block2.c_sc", ch, ch, 1, sn=True)
    for i in (3, 4):
        d |= _conv(f"block{i}.c1", ch, ch, 3, sn=True) | _conv(f"block{i}.c2", ch, ch, 3, sn=True)
    d |= {"l5.weight_orig": torch.randn(1, ch), "l5.weight_u": torch.ones(1), "l5.weight_v": F.normalize(torch.randn(ch), dim=0),
          "l_y.weight_orig": torch.randn(k, ch), "l_y.weight_u": F.normalize(torch.randn(k), dim=0),
          "l_y.weight_v": F.normalize(torch.randn(ch), dim=0)}
    return g, d


GAN_OVERRIDES = ("experiment=gan/smoke", "task.z_dim=8", "task.g_ch=16", "task.d_ch=16")


@pytest.mark.parametrize("norm", ["sabn", "ccbn"])
def test_official_gan_training_checkpoint_converts(norm):
    from tasks.gan import official
    torch.manual_seed(0)
    g, d = official_sngan32(norm=norm)
    cfg = compose(*GAN_OVERRIDES, f"norm={norm}")
    modules, notes = official.convert({"gen_state_dict": g, "avg_gen_state_dict": g, "dis_state_dict": d}, official.targets(cfg))
    ours = modules["generator"]
    assert torch.equal(ours["blocks.0.b1.condition_weight"], g["block2.b1.embed.weight"][:, :16])
    assert torch.equal(ours["blocks.2.b2.condition_bias"], g["block4.b2.embed.weight"][:, 16:])
    assert torch.equal(ours["to_rgb.2.weight"], g["c5.weight"]) and torch.equal(ours["to_rgb.0.running_var"], g["b5.running_var"])
    assert torch.equal(modules["discriminator"]["blocks.3.c2.parametrizations.weight.original"], d["block4.c2.weight_orig"])
    assert torch.equal(modules["discriminator"]["l_y.parametrizations.weight.0._u"], d["l_y.weight_u"])
    assert notes["not_in_official_file"] == []
    # The official conditional norm: gamma_y * BN(x) + beta_y, BN affine for SaBN (eval mode).
    from sabn import norm_layer
    from tasks.gan.models.registry import build_gan
    generator, _ = build_gan("sngan32", norm_layer(norm, num_conditions=10), 10, 16, 16, 8)
    generator.load_state_dict(ours)
    generator.eval()
    x, y = torch.randn(4, 16, 8, 8), torch.tensor([0, 3, 9, 3])
    p = "block2.b1"
    bn = F.batch_norm(x, g[f"{p}.bn.running_mean"], g[f"{p}.bn.running_var"], g.get(f"{p}.bn.weight"),
                      g.get(f"{p}.bn.bias"), False, 0.0, 1e-5)
    gamma, beta = g[f"{p}.embed.weight"][y].chunk(2, 1)
    expected = gamma[:, :, None, None] * bn + beta[:, :, None, None]
    torch.testing.assert_close(generator.blocks[0].b1(x, y), expected)


def test_wrong_model_is_refused_with_the_keys():
    from tasks.common.official import ConversionError
    from tasks.gan import official
    g, _ = official_sngan32(ch=16)
    cfg = compose(*GAN_OVERRIDES[:-2], "task.z_dim=8", "task.g_ch=32", "task.d_ch=32", "norm=sabn")
    with pytest.raises(ConversionError, match="does not fit"):
        official.convert(g, official.targets(cfg))


def official_preact(norm, widths=(8, 16), k=2):
    sd = {"normal.mean": torch.tensor([0.485, 0.456, 0.406]), "normal.std": torch.tensor([0.229, 0.224, 0.225]),
          "conv1.weight": torch.randn(widths[0], 3, 3, 3)}
    c_in = widths[0]
    for s, c in enumerate(widths, 1):
        p = f"layer{s}.0"
        for j, ch in ((1, c_in), (2, c)):
            if norm == "auxbn":
                for b in range(k):
                    sd.update(_bn(f"{p}.bn{j}.bn_list.{b}", ch))
            else:
                for b in range(k):
                    sd.update(_bn(f"{p}.bn{j}.bn_list.{b}", ch, affine=False))
                sd[f"{p}.bn{j}.embed.weight"] = torch.randn(k + 1, 2 * ch)
        sd.update(_conv(f"{p}.conv1", c, c_in, 3, bias=False) | _conv(f"{p}.conv2", c, c, 3, bias=False))
        if c != c_in or s > 1:
            sd.update(_conv(f"{p}.shortcut.0", c, c_in, 1, bias=False))
        c_in = c
    sd.update({"linear.weight": torch.randn(10, c_in), "linear.bias": torch.randn(10)})
    return sd


@pytest.mark.parametrize("norm", ["auxbn", "saauxbn"])
def test_official_adv_model_converts(norm):
    from tasks.adv import official
    torch.manual_seed(0)
    sd = official_preact(norm)
    cfg = compose("experiment=adv/smoke", f"norm={norm}")
    modules, _ = official.convert({"state_dict": sd, "epoch": 190}, official.targets(cfg), blocks=(1, 1))
    ours = modules["model"]
    assert torch.equal(ours["layers.1.norm2.running_mean"][1], sd["layer2.0.bn2.bn_list.1.running_mean"])
    assert torch.equal(ours["layers.1.shortcut.weight"], sd["layer2.0.shortcut.0.weight"])
    if norm == "saauxbn":   # rows 0, 1: the branches; row 2: the shared affine
        assert torch.equal(ours["layers.0.norm1.weight"], sd["layer1.0.bn1.embed.weight"][2, :8])
        assert torch.equal(ours["layers.0.norm1.condition_bias"], sd["layer1.0.bn1.embed.weight"][:2, 8:])
    else:
        assert torch.equal(ours["layers.0.norm1.condition_weight"][1], sd["layer1.0.bn1.bn_list.1.weight"])


def test_convert_script_then_evaluate(tmp_path, cifar10, capsys):
    """scripts/convert_official.py then evaluate.py, through their main functions (in process)."""
    from tests.conftest import evaluate_cli, script
    torch.manual_seed(0)
    torch.save(official_preact("saauxbn"), tmp_path / "official.pt")
    out = tmp_path / "ours.pt"
    convert = script("scripts/convert_official.py")
    assert convert.main(["adv", str(tmp_path / "official.pt"), str(out), "experiment=adv/smoke", "norm=saauxbn"])["norm"] == "saauxbn"
    capsys.readouterr()
    with pytest.raises(SystemExit) as again:
        convert.main(["adv", str(tmp_path / "official.pt"), str(out)])
    assert again.value.code == 2 and "exists" in capsys.readouterr().err
    metrics = evaluate_cli().main([f"ckpt={out}", "task.test_examples=32", "task.eval_steps=[1]"])["metrics"]
    assert 0 <= metrics["test/adv/pgd1"] <= 100


def test_official_adv_model_saved_in_float64_converts():
    """A float64 official state dict (issue #31: torch.allclose refused mixed dtypes with a traceback)."""
    from tasks.adv import official
    torch.manual_seed(0)
    sd = {k: v.double() if v.is_floating_point() else v for k, v in official_preact("saauxbn").items()}
    cfg = compose("experiment=adv/smoke", "norm=saauxbn")
    modules, _ = official.convert({"state_dict": sd}, official.targets(cfg), blocks=(1, 1))
    assert torch.allclose(modules["model"]["layers.0.norm1.weight"].double(), sd["layer1.0.bn1.embed.weight"][2, :8])
    sd["normal.std"] = sd["normal.std"] * 2
    from tasks.common.official import ConversionError
    with pytest.raises(ConversionError, match="normalisation std differs"):
        official.convert({"state_dict": sd}, official.targets(cfg), blocks=(1, 1))
