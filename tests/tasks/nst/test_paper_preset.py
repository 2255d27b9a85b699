"""The style-transfer paper preset on a synthetic COCO / WikiArt-shaped tree of thousands of files at
paper resolution: images stream from disk (only the batches used are decoded), validation pairs val
content i with val style i until the shorter list ends, and AdaIN's encoder file is required."""
import numpy as np
import pytest
import torch
from PIL import Image

from tasks.common.runner import train
from tests.conftest import compose


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("nst-paper")
    for part, n in (("coco/train2017", 1200), ("wikiart/train_1", 1200), ("coco/val2017", 3), ("wikiart/test", 5)):
        folder = root / part
        folder.mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (640, 480), (i % 256, (7 * i) % 256, 90)).save(folder / f"{i:05d}.jpg", quality=60)
    return root


def _cfg(root, run_dir, *extra):
    return compose("experiment=nst/paper", f"data.root={root}", f"paths.run_dir={run_dir}", "results.write=false",
                   "logger.tensorboard=false", "trainer.steps=2", "trainer.eval_every=0", "task.batch_size=1", *extra)


def test_paper_preset_refuses_to_run_without_adains_encoder(tree, tmp_path):
    with pytest.raises(ValueError, match=r"vgg_normalised.pth.*no approximate default.*not found"):
        train(_cfg(tree, tmp_path))


def test_paper_preset_streams_only_what_it_uses(tree, tmp_path, monkeypatch):
    from tasks.nst import images
    from tasks.nst.vgg import vgg_layers
    torch.save(vgg_layers().state_dict(), tmp_path / "vgg_normalised.pth")
    decoded = []
    real = images.read_image
    monkeypatch.setattr(images, "read_image", lambda path, *a: decoded.append(path) or real(path, *a))
    out = train(_cfg(tree, tmp_path / "run", f"task.encoder_path={tmp_path / 'vgg_normalised.pth'}"))
    assert out["status"] == "completed"
    # 2 steps x (1 content + 1 style) + 3 validation pairs (the shorter val list) x 2, of 2400+ files
    assert len(decoded) == 2 * 2 + 3 * 2
    val = [p.parent.name for p in decoded[-6:]]
    assert sorted(val) == ["test"] * 3 + ["val2017"] * 3
    assert np.isfinite(out["metrics"]["val/style"])
