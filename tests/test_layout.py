"""StyleSpace layout: sizes, 0-based index mapping at every layer boundary, flatten/unflatten."""

from __future__ import annotations

import pytest
import torch

from img2tab.networks.layout import StyleSpaceLayout

# (size, channel_multiplier) -> (layers, channels, channels without toRGB); from the reference notes
KNOWN = {
    (1024, 2): (26, 9088, 6048),
    (512, 2): (23, 8960, 5952),
    (256, 2): (20, 8704, 5760),
    (256, 1): (20, 7424, 4928),
}


@pytest.mark.parametrize(("size", "cm"), sorted(KNOWN))
def test_known_sizes(size, cm):
    lay = StyleSpaceLayout.from_generator_config(size, cm)
    assert (lay.n_layers, lay.total, lay.total_without_torgb) == KNOWN[(size, cm)]


def test_official_1024_table():
    lay = StyleSpaceLayout.from_generator_config(1024, 2)
    assert lay.dims == tuple([512] * 15 + [256] * 3 + [128] * 3 + [64] * 3 + [32] * 2)
    names = [layer.name for layer in lay.layers]
    assert names[:5] == ["conv1", "to_rgb1", "convs.0", "convs.1", "to_rgbs.0"]
    assert names[-3:] == ["convs.14", "convs.15", "to_rgbs.7"]
    # W+ rows: conv1 <- 0, to_rgb1 <- 1, convs.2t <- 1+2t, convs.2t+1 <- 2+2t, to_rgbs.t <- 3+2t
    assert [layer.w_index for layer in lay.layers[:8]] == [0, 1, 1, 2, 3, 3, 4, 5]
    assert lay.layers[-1].w_index == 17 and lay.n_latent == 18
    # table rows of the reference notes
    assert lay.layers[14].name == "convs.8" and lay.layers[14].offset == 7168
    assert lay.layers[17].offset == 8192 and lay.layers[20].offset == 8704
    assert lay.layers[23].offset == 8960
    assert lay.layers[9].resolution == 32 and not lay.layers[9].is_torgb
    assert lay.describe(4614)["layer"] == 9 and lay.describe(4614)["channel"] == 6


def test_locate_index_all_boundaries():
    lay = StyleSpaceLayout.from_generator_config(1024, 2)
    for layer, off in enumerate(lay.offsets):
        assert lay.locate(off) == (layer, 0)
        assert lay.index(layer, 0) == off
        if layer:
            # the official get_l_s_index returned (layer-1, width) here
            assert lay.locate(off - 1) == (layer - 1, lay.dims[layer - 1] - 1)
    assert lay.locate(512) == (1, 0)
    for k in range(0, lay.total, 7):
        assert lay.index(*lay.locate(k)) == k
    with pytest.raises(IndexError):
        lay.locate(lay.total)
    with pytest.raises(IndexError):
        lay.locate(-1)
    with pytest.raises(IndexError):
        lay.index(0, 512)


def test_flatten_unflatten_and_serialisation():
    lay = StyleSpaceLayout.from_generator_config(32, 1)
    styles = [torch.randn(3, c) for c in lay.dims]
    psi = lay.flatten(styles)
    assert psi.shape == (3, lay.total)
    back = lay.unflatten(psi)
    assert all(torch.equal(a, b) for a, b in zip(styles, back))
    assert StyleSpaceLayout.from_dict(lay.to_dict()) == lay
    with pytest.raises(ValueError, match="expected"):
        lay.flatten(styles[:-1])
    with pytest.raises(ValueError, match="psi has shape"):
        lay.unflatten(torch.zeros(2, lay.total + 1))
    assert lay.torgb_mask.sum() == lay.total - lay.total_without_torgb
    assert lay.label(lay.offsets[1]) == "L1c0@4rgb"


def test_layout_is_immutable():
    lay = StyleSpaceLayout.from_generator_config(64, 2)
    with pytest.raises(AttributeError):
        lay.layers = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        lay.layers[0].offset = 3  # type: ignore[misc]
