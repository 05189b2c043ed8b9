"""The atlas families (nads/models.py) and what the atlas page (nads/atlas.py) computes about them."""

import numpy as np
import pytest
import torch

from nads import atlas
from nads.directions import fourier_directions
from nads.models import get_model
from nads.spectral import radial_frequency

SHAPE = (1, 32, 32)


@pytest.mark.parametrize(
    "arch, p",
    [
        ("vit_p4", 4),
        ("mixer_p4", 4),
        ("convnext_cifar", 4),
        ("lenet", None),
        ("logreg", None),
        ("resnet18", None),
        ("vgg11_bn", None),
    ],
)
def test_patchify_stems_are_found_by_their_first_convolution(arch, p):
    assert atlas.patch_stride(arch, SHAPE) == p


def test_aliased_directions_are_those_every_patch_sees_alike():
    freqs, dirs = fourier_directions(SHAPE, 4)
    on = atlas.aliased(freqs, SHAPE, 4)
    images = dirs.reshape(-1, 32, 32)
    periodic = np.array(
        [
            np.allclose(np.roll(v, (4, 4), (0, 1)), v)
            and np.allclose(np.roll(v, 4, 0), v)
            and np.allclose(np.roll(v, 4, 1), v)
            for v in images
        ]
    )
    constant = np.array([np.ptp(v) < 1e-9 for v in images])
    assert np.array_equal(on, periodic & ~constant)
    assert on.sum() == 9 and constant.sum() == 1  # (0, 0) is the one constant direction


def test_patch_claim_is_supported_only_when_the_aliased_directions_fail():
    freqs, _ = fourier_directions(SHAPE, 4)
    on = atlas.aliased(freqs, SHAPE, 4)
    fails = np.where(on, 0.5, 0.95)
    assert atlas.patch_claim("vit_p4", freqs, fails, SHAPE, 4)[2] is True
    text, evidence, ok = atlas.patch_claim("vit_p4", freqs, 1.45 - fails, SHAPE, 4)
    assert not ok and "multiples of 8" in text
    assert (
        evidence == f"mean test accuracy 0.950 at the 9 such directions of the grid, 0.500 at the other {len(on) - 9}"
    )


def _patches_permuted(x, perm, p=4):
    """x with its p x p patches (row-major) moved to the positions `perm`."""
    n, c, h, w = x.shape
    tiles = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, c, p, p)
    tiles = tiles[:, perm].reshape(n, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return tiles.reshape(n, c, h, w)


def test_vision_transformer_sees_patch_order_only_through_position_embeddings():
    torch.manual_seed(0)
    vit, mixer = get_model("vit_p4").eval(), get_model("mixer_p4").eval()
    x = torch.randn(3, *SHAPE)
    y = _patches_permuted(x, torch.randperm(64))
    with torch.no_grad():
        assert not torch.allclose(vit(x), vit(y), atol=1e-4)
        vit.pos.zero_()  # attention and the mean over tokens are permutation-invariant
        torch.testing.assert_close(vit(x), vit(y), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(mixer(x), mixer(y), atol=1e-4)  # its token MLP has one weight per position


def test_convnext_blocks_start_near_identity_through_layer_scale():
    torch.manual_seed(0)
    net = get_model("convnext_cifar").eval()
    blocks = [m for m in net.modules() if type(m).__name__ == "ConvNeXtBlock"]
    assert len(blocks) == 2
    for block in blocks:
        x = torch.randn(2, block.dw.in_channels, 8, 8)
        with torch.no_grad():
            change = (block(x) - x).abs().max() / x.abs().max()
        assert 0 < change < 1e-5


def test_radial_profile_is_block_means_of_radial_frequency():
    rng = np.random.default_rng(0)
    u = np.linalg.qr(rng.standard_normal((1024, 1024)))[0].T
    prof = atlas.radial_profile(u, SHAPE)
    assert prof.shape == (atlas.GROUPS,)
    np.testing.assert_allclose(prof[1], radial_frequency(u[atlas.GROUP : 2 * atlas.GROUP], SHAPE).mean())


def test_aliased_energy_is_one_for_patch_periodic_patterns_and_small_for_noise():
    rng = np.random.default_rng(0)
    tile = rng.standard_normal((4, 4))
    periodic = np.tile(tile - tile.mean(), (8, 8)).reshape(1, -1)  # no DC: all energy at multiples of 8
    assert atlas.aliased_energy(periodic, SHAPE, 4) == pytest.approx(1.0)
    noise = rng.standard_normal((200, 1024))
    assert atlas.aliased_energy(noise, SHAPE, 4) == pytest.approx(15 / 1024, rel=0.1)


def test_spectral_gap_finds_the_cliff_within_the_rank():
    vals = np.concatenate([np.linspace(2.0, 1.0, 16), np.linspace(1e-4, 1e-5, 1000), [1e-30] * 8])
    assert atlas.spectral_gap(vals, rank=1016) == (16, pytest.approx(1.0 / 1e-4))
    flat = np.linspace(2.0, 1.0, 1024)
    k, drop = atlas.spectral_gap(np.concatenate([flat[:1016], [1e-30] * 8]), rank=1016)
    assert drop < 1.01  # the rounding-noise tail beyond the rank is not searched


def test_gap_claim_needs_learned_above_and_chance_below():
    idx = np.array([0, 1, 5, 10, 20, 50, 100])
    assert atlas.gap_claim(idx, np.array([0.99, 0.99, 0.98, 0.99, 0.5, 0.49, 0.5]), 16)[2] is True
    text, evidence, ok = atlas.gap_claim(idx, np.array([0.99, 0.99, 0.98, 0.99, 0.9, 0.49, 0.5]), 16)
    assert not ok and evidence == "test accuracy 0.980 to 0.990 at the 4 swept i < 16, 0.490 to 0.900 at the 3 others"
