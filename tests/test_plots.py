"""Plot functions return Figures, draw on a passed ax and leave no pyplot state behind."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from img2tab.errors import Img2TabInputError  # noqa: E402
from img2tab.tabular._classifier import ConceptClassifier  # noqa: E402
from img2tab.tabular._debugging import debug_classifier  # noqa: E402
from img2tab.tabular._importance import global_importance  # noqa: E402
from img2tab.tabular._plots import (  # noqa: E402
    plot_classifier_comparison,
    plot_concept_density,
    plot_debug_report,
    plot_importance,
    plot_importance_vs_relevance,
    plot_relevance,
)
from img2tab.tabular._selection import compare_classifiers  # noqa: E402
from img2tab.tabular._wasserstein import wasserstein_relevance  # noqa: E402


@pytest.fixture(scope="module")
def stuff():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 12)).astype(np.float32)
    y = (rng.random(300) < 0.5).astype(np.int64)
    g = (rng.random(300) < 0.5).astype(np.int64)
    X[y == 1, 7] += 2.0
    xgb = ConceptClassifier(params={"n_estimators": 20, "max_depth": 3, "n_jobs": 1}).fit(X, y)
    lr = ConceptClassifier("logreg").fit(X, y)
    w1 = wasserstein_relevance(X, y)
    report = debug_classifier(xgb, X[:200], y[:200], X[200:], y[200:], [7], protected_eval=g[200:])
    table = compare_classifiers({"xgb": xgb, "lr": lr}, X[200:], y[200:], w1, k=3)
    return {"X": X, "y": y, "xgb": xgb, "lr": lr, "w1": w1, "report": report, "table": table}


def _calls(s):
    return {
        "importance": lambda ax: plot_importance(global_importance(s["xgb"]), top_k=5, ax=ax),
        "importance_clf": lambda ax: plot_importance(s["lr"], top_k=4, ax=ax),
        "relevance": lambda ax: plot_relevance(s["w1"], top_k=6, ax=ax),
        "vs": lambda ax: plot_importance_vs_relevance(
            {"xgb": s["xgb"], "raw": s["lr"].feature_importances_}, s["w1"], ax=ax
        ),
        "density": lambda ax: plot_concept_density(s["X"], s["y"], 7, ax=ax),
        "debug": lambda ax: plot_debug_report(s["report"], ax=ax),
        "comparison": lambda ax: plot_classifier_comparison(s["table"], ax=ax),
    }


@pytest.mark.parametrize(
    "name", ["importance", "importance_clf", "relevance", "vs", "density", "debug", "comparison"]
)
def test_plot_returns_figure_and_uses_given_ax(stuff, name):
    call = _calls(stuff)[name]
    before = plt.get_fignums()
    fig = call(None)
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == before  # no pyplot figure was opened
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"

    own = Figure()
    ax = own.add_subplot()
    out = call(ax)
    assert out is own
    assert ax.has_data()
    assert ax.get_title()


def test_labels_and_titles(stuff):
    fig = plot_relevance(stuff["w1"], top_k=3)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "f7"
    fig = plot_concept_density(stuff["X"], stuff["y"], 7)
    assert "W1 = " in fig.axes[0].get_title() and "feature 7" in fig.axes[0].get_title()
    fig = plot_importance(global_importance(stuff["xgb"]), top_k=3)
    assert fig.axes[0].get_yticklabels()[0].get_text() == "f7"


def test_plot_bad_input(stuff):
    with pytest.raises(Img2TabInputError, match="out of range"):
        plot_concept_density(stuff["X"], stuff["y"], 99)
    with pytest.raises(Img2TabInputError, match="lacks column"):
        plot_classifier_comparison(global_importance(stuff["xgb"]))
