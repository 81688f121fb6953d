"""Known-answer tests of the correspondence classifiers (kNN, EMD-Corr, CHM-Corr-style)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from img2tab.explainers._face_geometry import head_to_image, points_to_cells
from img2tab.explainers._sinkhorn import cross_correlation_maps, emd_pair_scores, sinkhorn
from img2tab.explainers.correspondence import (
    CHMCorrClassifier,
    CorrespondenceExplainer,
    EMDCorrClassifier,
    FaceGeometry,
    KNNClassifier,
    majority_vote,
    oracle_transfer,
    plot_correspondences,
    rank_by_cosine,
    read_geometry,
)
from img2tab.world import render, sample_factors
from img2tab.world._world import _EYE_R, _EYE_X, _EYE_Y, _FACE_RX, _FACE_RY

torch.set_num_threads(1)


# ------------------------------------------------------------------ Sinkhorn / EMD
def _random_problem(seed: int, b: int = 3, p: int = 6, q: int = 5):
    rng = np.random.default_rng(seed)
    cost = rng.uniform(0, 1, size=(b, p, q))
    u = rng.uniform(0.2, 1, size=(b, p))
    v = rng.uniform(0.2, 1, size=(b, q))
    return cost, u / u.sum(1, keepdims=True), v / v.sum(1, keepdims=True)


def test_sinkhorn_plan_matches_pot_and_is_within_entropic_gap_of_exact_emd():
    ot = pytest.importorskip("ot")
    reg = 0.05
    cost, u, v = _random_problem(0)
    plan, conv = sinkhorn(torch.exp(-torch.from_numpy(cost) / reg), torch.from_numpy(u), torch.from_numpy(v),
                          max_iter=5000, tol=1e-13)
    assert bool(conv.all())
    for b in range(len(cost)):
        ref = ot.sinkhorn(u[b], v[b], cost[b], reg, numItermax=5000, stopThr=1e-13)
        np.testing.assert_allclose(plan[b].numpy(), ref, atol=1e-9)
        exact = ot.emd(u[b], v[b], cost[b])
        gap = float((plan[b].numpy() * cost[b]).sum() - (exact * cost[b]).sum())
        assert -1e-9 <= gap <= reg * np.log(cost.shape[1] * cost.shape[2])


def test_sinkhorn_recovers_a_planted_permutation_with_the_official_rule():
    p = 9
    perm = np.random.default_rng(1).permutation(p)
    cos = np.zeros((1, p, p))
    cos[0, np.arange(p), perm] = 1.0
    kernel = torch.exp(-(1 - torch.from_numpy(cos)) / 0.05)
    u = torch.full((1, p), 1 / p, dtype=torch.float64)
    plan, conv = sinkhorn(kernel, u, u.clone())  # official: 100 iterations, tol 0.1
    assert bool(conv.all())
    np.testing.assert_array_equal(plan[0].argmax(1).numpy(), perm)
    np.testing.assert_allclose(plan[0].sum(1).numpy(), 1 / p, atol=1e-2)
    np.testing.assert_allclose(plan[0].sum(0).numpy(), 1 / p, atol=1e-2)


def test_sinkhorn_warns_when_it_does_not_converge():
    cost, u, v = _random_problem(2)
    with pytest.warns(RuntimeWarning, match="did not converge for 3 of 3"):
        _, conv = sinkhorn(torch.exp(-torch.from_numpy(cost) / 0.05), torch.from_numpy(u),
                           torch.from_numpy(v), max_iter=1, tol=0.0)
    assert not bool(conv.any())


def test_sinkhorn_stops_each_pair_on_its_own():
    cost, u, v = _random_problem(3, b=4)
    k = torch.exp(-torch.from_numpy(cost) / 0.05)
    batch, _ = sinkhorn(k, torch.from_numpy(u), torch.from_numpy(v), tol=1e-3, warn=False)
    for b in range(4):
        alone, _ = sinkhorn(k[b : b + 1], torch.from_numpy(u[b : b + 1]), torch.from_numpy(v[b : b + 1]),
                            tol=1e-3, warn=False)
        torch.testing.assert_close(batch[b : b + 1], alone, rtol=0, atol=0)


def test_cross_correlation_maps_match_the_patch_by_patch_definition():
    rng = np.random.default_rng(4)
    q, g = rng.uniform(0, 1, size=(16, 9)), rng.uniform(0, 1, size=(16, 9))
    qn = q / np.linalg.norm(q.mean(1)) / 9
    gn = g / np.linalg.norm(g.mean(1)) / 9
    s = qn.T @ gn  # [query patch, candidate patch]
    qm, gm = cross_correlation_maps(torch.from_numpy(q)[None], torch.from_numpy(g)[None])
    np.testing.assert_allclose(qm[0].numpy(), s.sum(1), rtol=1e-12)
    np.testing.assert_allclose(gm[0].numpy(), s.sum(0), rtol=1e-12)


def test_emd_score_prefers_the_planted_exemplar_and_matches_its_patches():
    rng = np.random.default_rng(5)
    c, p = 16, 9  # 3x3x16 maps
    query = rng.uniform(0, 1, size=(c, p)) ** 4
    perm = rng.permutation(p)
    planted = query[:, perm]  # the query's patches, rearranged: patch perm[j] of query is at j
    others = [rng.uniform(0, 1, size=(c, p)) ** 4 for _ in range(4)]
    gal = torch.from_numpy(np.stack([others[0], planted, *others[1:]]))
    out = emd_pair_scores(torch.from_numpy(query)[None].expand(5, -1, -1), gal)
    assert int(out["score"].argmax()) == 1
    inv = np.argsort(perm)  # query patch i sits at candidate patch inv[i]
    for qi, gj in out["pairs"][1].numpy():
        assert gj == inv[qi]


# ------------------------------------------------------------------ kNN vote and ties
def test_rank_by_cosine_breaks_ties_by_lower_index_and_honours_exclusions():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    idx, sim = rank_by_cosine(np.array([[3.0, 0.0]]), gallery, 4)
    np.testing.assert_array_equal(idx[0], [0, 2, 3, 4])
    np.testing.assert_allclose(sim[0], [1, 1, 1, np.sqrt(0.5)])
    idx, _ = rank_by_cosine(np.array([[3.0, 0.0]]), gallery, 3, exclude=np.array([2]), drop=[0])
    np.testing.assert_array_equal(idx[0], [3, 4, 1])


def test_majority_vote_ties_go_to_the_lowest_class():
    pred, counts = majority_vote(np.array([[1, 0, 1, 0], [2, 2, 1, 1], [1, 1, 1, 0]]), 3)
    np.testing.assert_array_equal(pred, [0, 1, 1])
    np.testing.assert_array_equal(counts[1], [0, 2, 2])


def _id_images(n: int) -> torch.Tensor:
    """Tiny images whose first pixel encodes their id (ids < 150)."""
    x = torch.zeros(n, 3, 4, 4)
    x[:, 0, 0, 0] = torch.arange(n) / 100.0 - 0.5
    return x


class _TableModel(torch.nn.Module):
    """features(x) = a stored map per image id (first pixel)."""

    def __init__(self, maps: np.ndarray) -> None:
        super().__init__()
        self.maps = torch.from_numpy(maps).float()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        ids = torch.round((x[:, 0, 0, 0] + 0.5) * 100).long()
        return self.maps[ids]

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))


def test_knn_classifier_votes_over_the_top_n_vote_of_its_shortlist():
    emb = np.array([[1, 0], [1, 0.1], [1, 0.2], [0, 1], [0.1, 1], [1, 0.3]], dtype=float)
    y = np.array([1, 1, 0, 0, 0, 0])
    table = {i: e for i, e in enumerate(emb)}
    table[6] = np.array([1.0, 0.0])  # the query

    def embed(x: torch.Tensor) -> np.ndarray:
        ids = torch.round((x[:, 0, 0, 0] + 0.5) * 100).long().tolist()
        return np.stack([table[i] for i in ids])

    x = _id_images(7)
    clf = KNNClassifier(embed, n_shortlist=4, n_vote=2).fit(x[:6], y)
    res = clf.classify(x[6:])
    np.testing.assert_array_equal(res.shortlist[0], [0, 1, 2, 5])
    assert res.prediction[0] == 1 and list(res.counts[0]) == [0, 2]
    clf4 = KNNClassifier(embed, n_shortlist=4, n_vote=4).fit(x[:6], y)  # 2 vs 2: tie -> class 0
    assert clf4.predict(x[6:])[0] == 0
    assert clf4.vote_margin(x[6:])[0] == 0.0
    assert clf.vote_margin(x[6:], drop=[0])[0] == 0.0  # voters 1 (class 1) and 2 (class 0)


def test_emd_re_ranking_changes_the_vote():
    """Class-0 candidates share the query's pooled vector but not its patches; class-1 candidates
    hold the query's patches rearranged with a little extra mass, so kNN votes 0 and EMD-Corr 1."""
    rng = np.random.default_rng(6)
    c, g = 16, 3
    query = (rng.uniform(0, 1, size=(c, g * g)) ** 4).astype(np.float64)
    maps = []
    for i in range(5):  # class 0: every patch = the query's mean vector (pooled cosine 1)
        maps.append(np.repeat(query.mean(1, keepdims=True), g * g, 1) * (1 + 0.1 * i))
    for _ in range(5):  # class 1: permuted patches plus one perturbed patch
        m = query[:, rng.permutation(g * g)].copy()
        m[:, 0] += rng.uniform(0, 0.5, size=c)
        maps.append(m)
    maps.append(query)
    model = _TableModel(np.stack(maps).reshape(11, c, g, g))
    y = np.array([0] * 5 + [1] * 5)
    x = _id_images(11)
    knn = KNNClassifier(model.pooled, n_shortlist=10, n_vote=5).fit(x[:10], y)
    emd = EMDCorrClassifier(model, n_shortlist=10, n_vote=5).fit(x[:10], y)
    assert knn.predict(x[10:])[0] == 0
    assert emd.predict(x[10:])[0] == 1
    assert set(emd.classify(x[10:]).ranked()[0, :5].tolist()) == set(range(5, 10))


# ------------------------------------------------------------------ planted task: where do matches land?
class _ColourModel(torch.nn.Module):
    """Non-negative 'colour excess' channels per 8x8 cell plus a small constant channel."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        ch = torch.stack([torch.relu(r - torch.maximum(g, b)), torch.relu(g - torch.maximum(r, b)),
                          torch.relu(b - torch.maximum(r, g)), torch.full_like(r, 0.05)], 1)
        return torch.nn.functional.avg_pool2d(ch, 8)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))


def _planted_task(n: int, seed: int):
    """Grey 64 px images; a 16 px square decides the class (red = 1, blue = 0); a dim green
    16 px distractor sits elsewhere in every image. Returns images, labels, class-square masks."""
    rng = np.random.default_rng(seed)
    x = torch.zeros(n, 3, 64, 64)
    y = rng.integers(0, 2, size=n)
    mask = np.zeros((n, 64, 64), dtype=bool)
    for i in range(n):
        a, b = rng.choice(16, size=2, replace=False)  # 4x4 grid of 16 px slots
        ar, ac, br, bc = 16 * (a // 4), 16 * (a % 4), 16 * (b // 4), 16 * (b % 4)
        colour = torch.tensor([0.9, -0.9, -0.9]) if y[i] == 1 else torch.tensor([-0.9, -0.9, 0.9])
        x[i, :, ar : ar + 16, ac : ac + 16] = colour[:, None, None]
        x[i, :, br : br + 16, bc : bc + 16] = torch.tensor([-0.3, 0.3, -0.3])[:, None, None]
        mask[i, ar : ar + 16, ac : ac + 16] = True
    return x, y, mask


@pytest.mark.parametrize("make", [
    lambda m: EMDCorrClassifier(m, n_shortlist=20, n_vote=9),
    lambda m: CHMCorrClassifier(m, n_shortlist=20, n_vote=9),
    lambda m: KNNClassifier(m.pooled, maps=m.features, n_shortlist=20, n_vote=9),
], ids=["emd", "chm-mnn", "knn-cc"])
def test_matched_patches_concentrate_on_the_class_factor(make):
    model = _ColourModel()
    x, y, _ = _planted_task(60, seed=7)
    xq, yq, mq = _planted_task(12, seed=8)
    clf = make(model).fit(x, y)
    assert clf.score(xq, yq) == 1.0
    ex = CorrespondenceExplainer(clf, n_concepts=5, n_probe=30).fit(x, y)
    ev = ex.evidence(xq)
    inside = (ev * mq).sum() / ev.sum()
    chance = mq.mean()  # 1/16 of the image
    assert inside > 0.5 > 4 * chance
    # greying out the evidence removes the class square, so the vote swings away from the class
    # the intervention greys out exactly the evidence cells of the chosen exemplars
    chosen = [0, 1]
    iv = ex.intervene(xq, chosen)
    changed = (iv.images_after != xq).any(1).numpy()
    union = sum(ex.evidence(xq, c) for c in chosen) > 0
    non_grey = (xq != 0).any(1).numpy()
    assert changed.any()
    np.testing.assert_array_equal(changed, union & non_grey)
    assert float(iv.images_after[torch.from_numpy(union)[:, None].expand_as(xq)].abs().max()) == 0.0


# ------------------------------------------------------------------ oracle geometry
def test_oracle_maps_eye_centres_exactly_and_pupils_to_pupils():
    f = sample_factors(12, seed=9)
    src = {k: v[:6] for k, v in f.items()}
    dst = {k: v[6:] for k, v in f.items()}
    for side in (-1, 1):
        a = head_to_image(np.array([side * _EYE_X]), np.array([_EYE_Y]), src["head_tilt"])[:, 0]
        out = np.concatenate([
            oracle_transfer(a[i : i + 1], src["head_tilt"][i], src["face_width"][i], dst["head_tilt"][i],
                            dst["face_width"][i])[0]
            for i in range(6)
        ])
        exp = head_to_image(np.array([side * _EYE_X]), np.array([_EYE_Y]), dst["head_tilt"])[:, 0]
        np.testing.assert_allclose(out, exp, atol=1e-12)
    # every pixel deep inside a source pupil lands on pupil-coloured pixels of the destination
    size = 128
    imgs_d = render(dst, size).astype(float) / 255
    for i in range(6):
        er = _EYE_R[0] + (_EYE_R[1] - _EYE_R[0]) * src["eye_size"][i]
        er_d = _EYE_R[0] + (_EYE_R[1] - _EYE_R[0]) * dst["eye_size"][i]
        r = 0.4 * min(er, er_d)
        pts = head_to_image(np.array([_EYE_X - r, _EYE_X, _EYE_X + r, -_EYE_X]),
                            np.array([_EYE_Y, _EYE_Y + r, _EYE_Y, _EYE_Y]), src["head_tilt"][i : i + 1])[0]
        out = oracle_transfer(pts, src["head_tilt"][i], src["face_width"][i], dst["head_tilt"][i],
                              dst["face_width"][i])[0]
        px = np.clip(np.floor((out + 1) / 2 * size).astype(int), 0, size - 1)
        colours = imgs_d[i, px[:, 1], px[:, 0]]
        assert np.all(colours.max(1) < 0.25), colours  # pupils are (0.12, 0.10, 0.16)


def test_oracle_maps_the_face_edge_onto_the_face_edge_and_keeps_the_background():
    tilt_s, width_s, tilt_d, width_d = np.array([0.7]), np.array([0.0]), np.array([-0.4]), np.array([1.0])
    v = 0.1
    t = np.sqrt(1 - (v / _FACE_RY) ** 2)
    w_s = (_FACE_RX[0] + (_FACE_RX[1] - _FACE_RX[0]) * width_s[0]) * t  # face half-width at height v
    w_d = (_FACE_RX[0] + (_FACE_RX[1] - _FACE_RX[0]) * width_d[0]) * t
    a = min(0.407, 0.8 * min(w_s, w_d))
    for u in (w_s, 0.97 * w_s, 1.03 * w_s, 0.3):
        p = head_to_image(np.array([u]), np.array([v]), tilt_s)[0]
        out = oracle_transfer(p, tilt_s, width_s, tilt_d, width_d)[0, 0]
        u2 = u if u <= a else (a + (u - a) * (w_d - a) / (w_s - a) if u <= w_s else u - w_s + w_d)
        exp = head_to_image(np.array([u2]), np.array([v]), tilt_d)[0, 0]
        np.testing.assert_allclose(out, exp, atol=1e-12)
    edge = head_to_image(np.array([w_s]), np.array([v]), tilt_s)[0]
    np.testing.assert_allclose(oracle_transfer(edge, tilt_s, width_s, tilt_d, width_d)[0, 0],
                               head_to_image(np.array([w_d]), np.array([v]), tilt_d)[0, 0], atol=1e-12)
    corner = np.array([[-0.95, -0.95]])
    np.testing.assert_allclose(oracle_transfer(corner, tilt_s, width_s, tilt_d, width_d)[0], corner)
    assert points_to_cells(np.array([[-1.0, -1.0], [0.99, 0.99], [0.0, -0.3]]), 8).tolist() == [0, 63, 20]


def test_face_geometry_is_exact_for_registered_images_and_close_otherwise():
    f = sample_factors(80, seed=10)
    imgs = render(f, 64)
    geo = FaceGeometry().register(imgs[:40], {k: v[:40] for k, v in f.items()})
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    tilt, width = geo(x)
    np.testing.assert_allclose(tilt[:40], f["head_tilt"][:40], atol=1e-12)
    np.testing.assert_allclose(width[:40], f["face_width"][:40], atol=1e-12)
    t2, w2 = read_geometry(imgs[40:])
    np.testing.assert_allclose(tilt[40:], t2)
    assert np.mean(np.abs(t2 - f["head_tilt"][40:])) < 0.1  # 1.5 degrees
    assert np.mean(np.abs(w2 - f["face_width"][40:])) < 0.08


def test_oracle_chm_prefers_the_same_face_over_a_shifted_copy():
    """With the oracle, a candidate that is the query re-rendered at another tilt matches cell for
    cell; the mutual-NN matcher and the oracle agree on an identical candidate."""
    f = sample_factors(3, seed=11)
    f["head_tilt"] = np.array([0.0, 0.0, 0.0])
    imgs = render(f, 64)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    geo = FaceGeometry().register(imgs, f)
    model = _ColourModel()
    for matcher in ("oracle", "mutual-nn"):
        clf = CHMCorrClassifier(model, matcher=matcher, geometry=geo, n_shortlist=3, n_vote=1)
        clf.fit(x, np.array([0, 1, 1]))
        s = clf.pair_scores(x[:1], np.array([0, 1, 2]))["score"][0]
        assert s[0] == pytest.approx(1.0) and s[0] >= s.max()


# ------------------------------------------------------------------ adapter and figures
def test_adapter_protocol_for_psi_knn_and_figures():
    rng = np.random.default_rng(12)
    x = torch.from_numpy(rng.uniform(-1, 1, size=(30, 3, 8, 8))).float()
    y = (x[:, 0].mean((1, 2)) > 0).long().numpy()
    clf = KNNClassifier(lambda t: t.flatten(1), standardize=True, n_shortlist=10, n_vote=5)
    ex = CorrespondenceExplainer(clf, n_concepts=4, n_probe=20).fit(x, y)
    imp = ex.importances()
    assert len(ex.concepts_) == 4 and np.all(np.diff(imp) <= 0)
    assert ex.concept_scores(x[:3]).shape == (3, 4)
    assert ex.evidence(x[:3]) is None
    iv = ex.intervene(x[:3], [0, 1])
    assert iv.images_after is None
    np.testing.assert_allclose(iv.logit_before, ex.model_logit(x[:3]))
    assert np.array_equal(ex.predict(x[:3]), (ex.model_logit(x[:3]) > 0).astype(int))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = _ColourModel()
    xs, ys, _ = _planted_task(20, seed=13)
    emd = EMDCorrClassifier(model, n_shortlist=10, n_vote=5).fit(xs, ys)
    fig = plot_correspondences(emd, xs[0], xs, k=2)
    assert len(fig.axes) == 2
    fig2, ax = plt.subplots()
    assert plot_correspondences(emd, xs[0], xs, ax=ax) is fig2
    plt.close("all")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converges within the official budget on these inputs
        emd.classify(xs[:2])


def test_restrict_factor_keeps_labels_and_other_factors():
    from img2tab.explainers._correspondence_eval import _LookupEmbed, restrict_factor
    from img2tab.world import make_task

    split = make_task(20, seed=14, spurious=None)
    shifted = restrict_factor(split, "hair_color", (2, 3), seed=1)
    assert set(np.unique(shifted.factors["hair_color"])) <= {2, 3}
    np.testing.assert_array_equal(shifted.y, split.y)
    for k in split.factors:
        if k != "hair_color":
            np.testing.assert_array_equal(shifted.factors[k], split.factors[k])
    np.testing.assert_array_equal(shifted.images, render(shifted.factors, 64))
    with pytest.raises(Exception, match="class factor"):
        restrict_factor(split, "smile", (0.0, 1.0))
    stored = np.arange(10.0).reshape(5, 2)
    table = _LookupEmbed(lambda x: np.full((len(x), 2), -1.0), [split.images[:5]], [stored])
    out = table(split.to_tensor()[3:7])
    np.testing.assert_array_equal(out, [[6, 7], [8, 9], [-1, -1], [-1, -1]])


def test_face_geometry_asks_its_lookup_before_reading_pixels():
    f = sample_factors(4, seed=15)
    imgs = render(f, 64)

    class Lookup:
        def get(self, images):
            found = np.array([True, False, True, False])[: len(images)]
            return {"head_tilt": np.full(len(images), 0.5), "face_width": np.full(len(images), 0.25)}, found

    tilt, width = FaceGeometry(lookup=Lookup())(imgs)
    np.testing.assert_allclose(tilt[[0, 2]], 0.5)
    np.testing.assert_allclose(width[[0, 2]], 0.25)
    np.testing.assert_allclose(tilt[[1, 3]], read_geometry(imgs[[1, 3]])[0])


def test_top_entries_orders_by_value_then_index():
    from img2tab.explainers._sinkhorn import top_entries

    v = torch.tensor([[[0.0, 3.0, 1.0], [3.0, 0.0, 1.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    assert top_entries(v, 3).tolist() == [[1, 3, 2], [0, 1, 2]]
    rng = np.random.default_rng(16)
    w = torch.from_numpy(rng.integers(0, 5, size=(4, 8, 8)).astype(float))
    full = np.argsort(-w.reshape(4, -1).numpy(), axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(top_entries(w, 7).numpy(), full)
