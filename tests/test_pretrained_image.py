"""The offline pretrained image encoder: checksum, a known ImageNet answer, the course's inputs, frozen."""
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as samples

from visfuse_utils import data, pretrained
from visfuse_utils.models import PretrainedImageEncoder

# ImageNet classes of scikit-image's cat photograph (281-285: tabby, tiger, Persian, Siamese, Egyptian cat)
# and of its coffee cup (967 espresso, 968 cup, 504 coffee mug).
CATS, COFFEE = set(range(281, 286)), {967, 968, 504}


@pytest.fixture(scope="module")
def lite0():
    return pretrained.load_efficientnet_lite0()


def _lite_input(name: str) -> torch.Tensor:
    """A sample photograph at 224 px, normalised as Lite models were trained: (pixel/255 - 0.5) / 0.5."""
    img = np.asarray(Image.fromarray(getattr(samples, name)()).convert("RGB").resize((224, 224)), np.float32)
    return (torch.from_numpy(img).permute(2, 0, 1)[None] / 255 - 0.5) / 0.5


def test_the_weights_recognise_a_cat_and_a_coffee_cup(lite0):
    with torch.no_grad():
        for name, classes in (("chelsea", CATS), ("coffee", COFFEE)):
            probs = lite0(_lite_input(name)).softmax(1)[0]
            assert int(probs.argmax()) in classes and float(probs[list(classes)].sum()) > 0.8, name


def test_a_wrong_checksum_is_refused():
    with pytest.raises(pretrained.ImageModelError, match="Checksum mismatch.*reinstall"):
        pretrained.efficientnet_lite0_weights(expected_sha256="0" * 64)


def test_the_encoder_takes_the_course_scans_grey_or_colour_and_stays_frozen(lite0):
    """Course-normalised input is mapped to Lite's; a grey scan equals its RGB copy; training mode changes nothing."""
    rgb = torch.from_numpy(np.asarray(Image.fromarray(samples.coffee()).convert("RGB").resize((64, 64))).copy())
    course = data.normalize_images(rgb.permute(2, 0, 1)[None])
    colour = PretrainedImageEncoder(lite0, in_channels=3)
    feats = colour(course)
    assert feats.shape == (1, 1280) and colour.feature_map(course).shape == (1, 1280, 2, 2)
    lite = (rgb.permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    assert torch.allclose(feats, lite0.extract_features(lite).mean(dim=(2, 3)), atol=1e-5)
    grey = PretrainedImageEncoder(lite0, in_channels=1)
    assert torch.allclose(grey(course[:, :1]), colour(course[:, :1].expand(-1, 3, -1, -1)), atol=1e-6)
    grey.train()
    assert not grey.training and not grey.net.training and not any(p.requires_grad for p in grey.parameters())
    assert torch.allclose(grey(course[:, :1]), colour(course[:, :1].repeat(1, 3, 1, 1)), atol=1e-6)
    with pytest.raises(ValueError, match="in_channels must be 1"):
        PretrainedImageEncoder(lite0, in_channels=2)


def test_the_command_fuses_with_the_frozen_encoder_on_the_consistency_rule(tmp_path):
    """train_cli with --image-encoder efficientnet-lite0: the ImageNet weights are untouched, the run rebuilds."""
    import subprocess
    import sys
    from pathlib import Path

    from visfuse_utils import train_cli

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "visfuse_utils.train_cli", "--profile", "smoke", "--n-samples", "120", "--no-progress",
           "--rule", "consistency", "--fusion", "bilinear", "--freeze-text", "--image-encoder", "efficientnet-lite0",
           "--epochs", "1", "--workers", "0", "--out", str(out)]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    model, names = train_cli.load_model(out)
    assert names == ["consistent", "inconsistent"]
    reference = pretrained.load_efficientnet_lite0().state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.image_encoder.net.state_dict().items())
