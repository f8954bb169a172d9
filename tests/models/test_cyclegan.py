"""CycleGAN: the default ResNet translator depends on its input at initialisation; the dihedral
translator is exactly the square's 8 symmetries; the cycle term's gradient reaches both
generators (both translators); a short run with the dihedral translator preserves labels on
digits ↔ rotated digits (slow; the default run on bold digits: tests/cli/test_cli_translate.py)."""

import pytest
import torch

from pyrogen.data import load_dataset
from pyrogen.data.dataset import Dataset
from pyrogen.data.translation import rotate90, rotated_domains
from pyrogen.evaluate.fid import train_feature_classifier
from pyrogen.evaluate.translation import label_preservation
from pyrogen.infer.translation import SiteL1
from pyrogen.models.translation import CycleGAN, DihedralTranslator, ResnetTranslator
from pyrogen.nn.conv import ConvCritic
from pyrogen.train import Trainer
from pyrogen.train.steps.cycle import CycleGANStep


def _one_hot(net: DihedralTranslator, transform: tuple[int, bool]) -> None:
    with torch.no_grad():
        net.logits.fill_(-10.0)
        net.logits[net.TRANSFORMS.index(transform)] = 10.0


def test_dihedral_translator_is_the_eight_symmetries_of_the_square():
    x = torch.rand(3, 64)
    net = DihedralTranslator((8, 8))
    outputs = []
    for k, transposed in net.TRANSFORMS:
        _one_hot(net, (k, transposed))
        image = x.reshape(3, 8, 8)
        want = torch.rot90(image.transpose(1, 2) if transposed else image, k, dims=(1, 2))
        torch.testing.assert_close(net(x), want.reshape(3, 64))
        outputs.append(net(x))
    assert len({tuple(o[0].tolist()) for o in outputs}) == 8  # all distinct
    _one_hot(net, (1, False))
    torch.testing.assert_close(net(x), rotate90(x, (8, 8)))
    # untrained: nearly the uniform mixture, which depends on the input
    fresh = DihedralTranslator((8, 8))
    assert torch.allclose(fresh.weights(), torch.full((8,), 1 / 8), atol=0.05)
    with pytest.raises(ValueError, match="square"):
        DihedralTranslator((8, 4))
    with pytest.raises(ValueError, match="Unknown translator"):
        CycleGAN((8, 8), translator="mlp")


def test_resnet_translator_depends_on_its_input_at_initialisation():
    # the U-Net TranslatorNet (8 layers, default init) varied by 1e-5 over inputs when untrained
    torch.manual_seed(0)
    net = ResnetTranslator((8, 8))
    x = torch.rand(64, 64)
    out = net(x)
    assert out.shape == (64, 64) and 0 < out.min() and out.max() < 1
    assert out.std(0).mean() > 0.1  # the output follows the input (near the identity)
    # and Δ itself, not only the skip, responds to the input
    skip = torch.sigmoid(torch.logit(x.clamp(net.skip_eps, 1 - net.skip_eps)))
    delta_effect = (out - skip).std(0).mean()
    assert delta_effect > 1e-3, delta_effect
    with torch.no_grad():  # out_scale 0: the clamped identity exactly
        assert torch.allclose(ResnetTranslator((8, 8), out_scale=0.0)(x), skip, atol=1e-6)
    with pytest.raises(ValueError, match="odd block_kernel"):
        ResnetTranslator((8, 8), block_kernel=2)
    with pytest.raises(ValueError, match="skip_eps"):
        ResnetTranslator((8, 8), skip_eps=0.0)


@pytest.mark.parametrize("site", ["rec_a", "rec_b"])
def test_cycle_term_gradient_reaches_both_resnet_generators(site):
    torch.manual_seed(0)
    model = CycleGAN((8, 8))  # the default translator
    assert isinstance(model.g_ab, ResnetTranslator)
    x_a, x_b = torch.rand(16, 64), torch.rand(16, 64)
    target = (lambda a, b: a) if site == "rec_a" else (lambda a, b: b)
    SiteL1(site, target=target)(model, None, x_a, x_b).backward()
    g = sum(p.grad.abs().sum() for p in model.g_ab.parameters())
    f = sum(p.grad.abs().sum() for p in model.g_ba.parameters())
    assert g > 0.1 * f and f > 0.1 * g, (g, f)
    first = model.g_ab.delta[0].weight.grad  # the first layer of the first generator applied
    assert first.abs().sum() > 1e-3 * g


@pytest.mark.parametrize("site", ["rec_a", "rec_b"])
def test_cycle_term_gradient_reaches_both_generators(site):
    # measured on the conv translator (skip=False, global bottleneck) before the dihedral one:
    # the rec_a term's gradient on G was 1e-5 of F's (G's output hardly depended on its input)
    torch.manual_seed(0)
    model = CycleGAN((8, 8), translator="dihedral")
    x_a, x_b = torch.rand(16, 64), torch.rand(16, 64)
    target = (lambda a, b: a) if site == "rec_a" else (lambda a, b: b)
    SiteL1(site, target=target)(model, None, x_a, x_b).backward()
    g, f = model.g_ab.logits.grad.abs().sum(), model.g_ba.logits.grad.abs().sum()
    assert g > 0.1 * f and f > 0.1 * g, (g, f)
    # and the cycle is exact when F inverts G
    _one_hot(model.g_ab, (1, False))
    _one_hot(model.g_ba, (3, False))
    assert SiteL1(site, target=target)(model, None, x_a, x_b) < 1e-6


@pytest.mark.slow  # ~60-95 s on the loaded 2-core machine
def test_cyclegan_picks_the_rotation_and_preserves_labels():
    data = load_dataset("digits")
    train = rotated_domains(data.train_x, (8, 8), data.train_y)
    test = rotated_domains(data.test_x, (8, 8), data.test_y)
    torch.manual_seed(0)
    model = CycleGAN((8, 8), translator="dihedral")
    step = CycleGANStep(model, ConvCritic((8, 8), 8), ConvCritic((8, 8), 8), lr=1e-3)
    history = Trainer(step, batch_size=64, steps=400, seed=0, progress=False).fit(
        train["a"], train["b"]
    )
    cycle = history.column("cycle_loss")
    assert sum(cycle[-40:]) / 40 < 0.2 * sum(cycle[:40]) / 40
    g = model.g_ab.TRANSFORMS[int(model.g_ab.weights().argmax())]
    f = model.g_ba.TRANSFORMS[int(model.g_ba.weights().argmax())]
    assert (g, f) == ((1, False), (3, False))  # G rotates by 90°, F by 270° (= -90°)
    clf_b = train_feature_classifier(
        Dataset("B", train["b"], train["b_labels"], test["b"], test["b_labels"], (8, 8))
    )
    # measured 0.93 after 400 steps (seeds 0-4: 0.92-0.95; chance 0.1; clf accuracy ~0.93)
    assert label_preservation(clf_b, model.a_to_b(test["a"]), test["a_labels"]) > 0.85
