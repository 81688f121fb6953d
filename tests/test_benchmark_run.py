"""The benchmark end to end on tiny sizes, and the Img2Tab adapter's documented rules."""

import json

import numpy as np
import pytest
import torch

from img2tab.errors import Img2TabInputError
from img2tab.explainers import Img2TabExplainer
from img2tab.world import FACTOR_NAMES
from img2tab.world.benchmark import BenchmarkSizes, default_explainers, make_context, run

TINY = BenchmarkSizes(n_train=120, n_test=40, n_eval=4, n_values=2, oracle_n=200, oracle_epochs=1,
                      cnn_epochs=1)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    torch.set_num_threads(1)
    return make_context("biased", seed=0, sizes=TINY, progress=False,
                        cache_dir=str(tmp_path_factory.mktemp("cache")))


def test_context_contents(ctx):
    assert ctx.psi_train.shape == (120, ctx.inverter.layout.total)
    assert ctx.psi_test.shape[0] == 40 and ctx.w_test.shape[0] == 40
    assert abs(ctx.train.spurious_agreement - 0.9) < 0.08
    np.testing.assert_array_equal(ctx.psi_classifier.classes_, [0, 1])
    _, found = ctx.lookup.get(ctx.test.to_tensor()[:5])
    assert found.all()


def test_img2tab_adapter_rules(ctx):
    from img2tab.edits import render_psi

    exp = Img2TabExplainer(ctx.inverter, ctx.psi_classifier, prefitted=True, n_concepts=4, strength=2.0)
    exp.fit_psi(ctx.psi_train, ctx.train.y)
    x = ctx.test.to_tensor()[:3]
    psi = exp._encode(x)
    z = exp.concept_scores(x)
    cols = exp.columns_
    np.testing.assert_allclose(z, (psi[:, cols] - exp.mean_[cols]) / exp.scale_[cols])
    dec = ctx.psi_classifier.decision_function
    np.testing.assert_allclose(exp.model_logit(x), dec(psi.astype(np.float32)))
    # intervention: ±k sd towards the other class, scored on the edited Ψ without re-encoding
    iv = exp.intervene(x, [0, 2])
    before = exp.model_logit(x)
    edited = psi.copy()
    for i in (0, 2):
        c = cols[i]
        edited[:, c] -= np.where(before > 0, 1.0, -1.0) * 2.0 * exp.scale_[c] * exp.direction_[c]
    np.testing.assert_allclose(iv.logit_after, dec(edited.astype(np.float32)))
    assert iv.images_after.shape == x.shape
    # evidence of one concept = |G(Ψ + k sd e_c) - G(Ψ)| summed over RGB
    ev = exp.evidence(x, 1)
    plus = psi.copy()
    plus[:, cols[1]] += 2.0 * exp.scale_[cols[1]]
    both = torch.as_tensor(np.concatenate([psi, plus]), dtype=torch.float32)
    imgs = render_psi(ctx.inverter.generator, both)
    imgs = imgs.clamp(-1, 1).double()
    np.testing.assert_allclose(ev, (imgs[3:] - imgs[:3]).abs().sum(1).numpy(), atol=1e-5)
    # the Ψ memo notices in-place changes of the same tensor
    x2 = x.clone()
    s1 = exp.concept_scores(x2)
    x2.mul_(0.5)
    np.testing.assert_allclose(exp.concept_scores(x2), exp.concept_scores(x2.clone()))
    assert not np.allclose(s1, exp.concept_scores(x2))
    # importance ranking: XGBoost total_gain in decreasing order
    imp = Img2TabExplainer(ctx.inverter, ctx.psi_classifier, ranking="importance", prefitted=True)
    imp.fit_psi(ctx.psi_train, ctx.train.y)
    gains = ctx.psi_classifier.estimator_.get_booster().get_score(importance_type="total_gain")
    best = max(gains, key=gains.get)
    assert imp.columns_[0] == ctx.psi_classifier.kept_features_[int(best[1:])]
    assert np.all(np.diff(imp.importances()) <= 0)
    with pytest.raises(Img2TabInputError):
        Img2TabExplainer(ctx.inverter, ranking="nope").fit_psi(ctx.psi_train, ctx.train.y)


def test_score_explainer_and_report(ctx):
    """Every metric key for one (fast) explainer; the oracle's evidence is its top factor's mask."""
    from img2tab.explainers import OracleConceptExplainer
    from img2tab.world.benchmark import HEADLINE, _eval_data, report_markdown, score_explainer, summarise
    from img2tab.world.evaluation import FactorOracle

    ctx.factor_oracle = FactorOracle(ctx.size)  # untrained: readings are arbitrary but well formed
    data = _eval_data(ctx)
    assert len(data.counterfactuals) == 2 * 6 + 4 + 2  # 2 values per continuous factor, all categories
    exp = OracleConceptExplainer.from_context(ctx)
    res = score_explainer(exp, ctx, data)
    for key in HEADLINE + ("spurious@1", "semantic_flip_rate@3", "shortcut_flip_rate@3", "delta_logit@5"):
        assert key in res, key
    assert len(res["true_reliance"]) == 8 and res["concepts"][0] == res["concept_factors"][0]
    top = res["concepts"][0]
    key = {"smile": "localisation", "background_hue": "localisation_spurious"}.get(top)
    if key is not None:
        assert res[key] == pytest.approx(1.0)
    # its concepts are the factors: every top concept responds most to itself
    assert res["concepts"] == res["concept_factors"]
    res.update(task="biased", seed=0)
    mean, sd = summarise([res, {**res, "seed": 1, "accuracy": res["accuracy"] - 0.1}])
    assert mean["oracle-concepts"]["biased"]["accuracy"] == pytest.approx(res["accuracy"] - 0.05)
    assert sd["oracle-concepts"]["biased"]["accuracy"] == pytest.approx(np.std([0, 0.1], ddof=1))
    md = report_markdown({"config": {"methods": ["oracle-concepts"], "tasks": ["biased"], "seeds": [0],
                                     "quick": True, "sizes": {}, "factors": list(FACTOR_NAMES)},
                          "summary": mean, "summary_sd": sd, "runs": [res], "wall_seconds": 1.0})
    assert "| oracle-concepts |" in md


@pytest.mark.slow
def test_run_writes_report_and_results(tmp_path):
    res = run(["img2tab-w1", "random-concepts", "oracle-concepts"], tasks=("biased",), seeds=(0,),
              sizes=TINY, out=tmp_path, cache_dir=str(tmp_path / "cache"), progress=False)
    data = json.loads((tmp_path / "results.json").read_text())
    for m in ("img2tab-w1", "random-concepts", "oracle-concepts"):
        row = data["summary"][m]["biased"]
        for key in ("accuracy", "cfa@5", "spurious@5", "reliance_spearman", "reliance_top1",
                    "localisation", "flip_rate@3", "cpu_seconds"):
            assert key in row, (m, key)
        assert row["cpu_seconds"] > 0
    assert not [r for r in res["runs"] if "error" in r]
    # the oracle's evidence is the top factor's mask: all of its mass lies in that factor's mask
    oracle = [r for r in res["runs"] if r["method"] == "oracle-concepts"][0]
    top = oracle["concepts"][0]
    key = {"smile": "localisation", "background_hue": "localisation_spurious"}.get(top)
    if key is not None:
        assert oracle[key] == pytest.approx(1.0)
    report = (tmp_path / "report.md").read_text()
    assert "| oracle-concepts |" in report and "figures/gallery_biased.png" in report
    assert (tmp_path / "figures" / "cfa_at_5.png").is_file()
    assert (tmp_path / "figures" / "gallery_biased.png").is_file()
    with pytest.raises(Img2TabInputError):
        run(["nope"], tasks=("biased",), sizes=TINY)
    with pytest.raises(Img2TabInputError):
        run(["img2tab-w1"], tasks=("easy",), sizes=TINY)
    assert set(default_explainers(True)) >= {"img2tab-w1", "img2tab-importance", "random-concepts",
                                              "oracle-concepts"}


def test_cli_list_and_bad_arguments(capsys):
    from img2tab.cli import main

    assert main(["benchmark", "--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed[:4] == ["img2tab-w1", "img2tab-importance", "random-concepts", "oracle-concepts"]
    assert main(["benchmark", "--seeds", "0,x"]) == 2
    assert "--seeds must be comma-separated integers" in capsys.readouterr().err
