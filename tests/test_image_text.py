"""Image–text models for FALCON (img2tab.explainers.image_text): vocabulary, truth captioner,
shipped WorldCLIP weights, the OpenCLIP adapter on a tiny random model, threshold calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from img2tab.errors import CheckpointError, Img2TabInputError
from img2tab.explainers.image_text import (
    WORLD_ATOMS,
    OpenCLIPModel,
    TruthCaptioner,
    WorldCLIP,
    WorldCLIPConfig,
    _WorldCLIPNet,
    calibrate_coherence_threshold,
    crop_resize,
    evaluate_worldclip,
    factor_masks,
    load_worldclip,
    mean_pairwise_cosine,
    tokenize,
    visible_atoms,
    word_factor,
    world_caption_bank_texts,
)
from img2tab.world import FACTOR_NAMES, render, sample_factors

#: Bar for the shipped WorldCLIP: mean zero-shot accuracy of visible factors' states on held-out
#: crops (chance is 1/2 to 1/4 per factor). Measured value: pretrained_models/worldclip/metrics.json.
WORLDCLIP_FACTOR_ACCURACY_BAR = 0.7


def test_every_atom_has_a_word_naming_its_factor():
    for atom in WORLD_ATOMS:
        for phrase in atom.phrases:
            named = {word_factor(w) for w in tokenize(phrase)} - {None}
            assert named == {atom.factor}, (atom.key, phrase)
    assert word_factor("cartoon") is None and word_factor("ginger hair") == "hair_color"


def test_visible_atoms_whole_image_and_corner():
    f = sample_factors(2, 3, glasses=1, hair_color=3, smile=0.9)
    masks = factor_masks(f, 64)
    full = visible_atoms(f, masks, np.array([[0, 0, 64, 64]] * 2))
    assert all(len(keys) == len(FACTOR_NAMES) for keys in full)
    assert "hair_color=red" in full[0] and "smile=smile" in full[0] and "glasses=glasses" in full[0]
    corner = visible_atoms(f, masks, np.array([[0, 0, 8, 8]] * 2))
    assert corner == [[], []]


def test_truth_captioner_round_trip_and_unknown_images():
    f = sample_factors(3, 4, hair_color=2, glasses=1)
    x = torch.from_numpy(render(f, 64)).permute(0, 3, 1, 2).float() / 127.5 - 1
    tc = TruthCaptioner(f, x)
    emb = tc.encode_images(x)
    caps, scores = tc.caption(emb, k=5)
    assert scores.shape == (3, 5) and (scores == 1).all()
    assert any("blond hair" in c for c in caps[0]) and any("round glasses" in c for c in caps[0])
    # the text embedding of its own caption is the image embedding
    t = tc.encode_texts([caps[i][0] for i in range(3)])
    np.testing.assert_allclose((emb * t).sum(1).numpy(), 1.0, atol=1e-6)
    with pytest.raises(Img2TabInputError, match="not one the TruthCaptioner knows"):
        tc.encode_images(torch.zeros(1, 3, 64, 64))


def test_crop_resize_identity_and_quadrant():
    x = torch.arange(4.0).view(1, 1, 2, 2).repeat(1, 3, 1, 1).repeat_interleave(8, 2).repeat_interleave(8, 3)
    np.testing.assert_allclose(crop_resize(x, np.array([[0, 0, 16, 16]]), 16).numpy(), x.numpy(), atol=1e-5)
    q = crop_resize(x, np.array([[8, 0, 16, 8]]), 4)  # top-right quadrant has value 1
    np.testing.assert_allclose(q.numpy(), 1.0, atol=1e-5)


def test_shipped_worldclip_retrieval_above_bar():
    model = load_worldclip()
    m = evaluate_worldclip(model, n=150, seed=777)
    assert m["factor_accuracy"] >= WORLDCLIP_FACTOR_ACCURACY_BAR, m
    card = json.loads((load_worldclip.__globals__["_default_worldclip_dir"]() / "metrics.json").read_text())
    assert card["factor_accuracy"] >= WORLDCLIP_FACTOR_ACCURACY_BAR
    assert 1.0 < model.logit_scale <= 100.0


def test_worldclip_save_load_round_trip(tmp_path):
    cfg = WorldCLIPConfig(widths=(8, 16), dim=16)
    model = WorldCLIP(_WorldCLIPNet(cfg), cfg)
    model.save(tmp_path)
    again = load_worldclip(tmp_path)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(model.encode_images(x), again.encode_images(x))
    torch.testing.assert_close(model.encode_texts(["ginger hair"]), again.encode_texts(["ginger hair"]))
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError):
        load_worldclip(tmp_path)


def test_openclip_adapter_on_a_tiny_random_model(tmp_path, monkeypatch):
    open_clip = pytest.importorskip("open_clip")  # the optional extra (in the dev extra)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "img2tab-tiny-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "img2tab-tiny-clip.json")
    torch.manual_seed(0)
    ref = open_clip.create_model("img2tab-tiny-clip", pretrained=None).eval()
    torch.save(ref.state_dict(), tmp_path / "tiny.pt")
    texts = ["ginger hair", "blue background", "round glasses"]
    model = OpenCLIPModel("img2tab-tiny-clip", tmp_path / "tiny.pt", texts=texts)
    tok = open_clip.get_tokenizer("img2tab-tiny-clip")
    with torch.no_grad():
        expect = F.normalize(ref.encode_text(tok(texts)).float(), dim=1)
    torch.testing.assert_close(model.encode_texts(texts), expect)  # the local weights were loaded
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    emb = model.encode_crops(x, np.array([[0, 0, 32, 32]] * 3))
    assert emb.shape == (3, 16)
    caps, scores = model.caption(emb, k=2)
    assert all(c in texts for row in caps for c in row)
    np.testing.assert_array_less(scores[:, 1], scores[:, 0] + 1e-12)
    with pytest.raises(CheckpointError, match="not a local file"):
        OpenCLIPModel("img2tab-tiny-clip", tmp_path / "missing.pt")


def test_calibrated_threshold_separates_a_coherent_group():
    rng = np.random.default_rng(0)
    a = torch.tensor([1.0, 0.0, 0.0]) + 0.05 * torch.from_numpy(rng.normal(size=(50, 3))).float()
    b = torch.tensor([0.0, 1.0, 0.0]) + 0.05 * torch.from_numpy(rng.normal(size=(50, 3))).float()
    pool = F.normalize(torch.cat([a, b]), dim=1)
    thr = calibrate_coherence_threshold(pool, 20, quantile=0.9)
    assert mean_pairwise_cosine(pool[:20]) > thr  # one cluster
    assert mean_pairwise_cosine(pool[::5]) < thr  # half and half


def test_caption_bank_is_deterministic_and_covers_every_phrase():
    texts = world_caption_bank_texts()
    assert texts == world_caption_bank_texts() and len(texts) == len(set(texts))
    for atom in WORLD_ATOMS:
        for phrase in atom.phrases:
            assert phrase in texts
