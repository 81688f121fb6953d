"""Writers of official-layout files with random weights, for running the official path in CI.

* ``stylegan2-ffhq-config-f.pt``: rosinality layout, ``{"g_ema", "latent_avg"}``, a 1024 px
  config-f generator (channel multiplier 2, style_dim 512, n_mlp 8);
* ``e4e_ffhq_encode.pt``: the released e4e layout ``{"state_dict" (encoder.* + decoder.*),
  "opts" (a plain dict with the FFHQ training options), "latent_avg" [18, 512]}`` with an
  IR-SE50 ``Encoder4Editing``, every storage tagged ``cuda:0`` as in the released file (it was
  saved from a GPU), so loading must map it to the CPU;
* ``xgboost/Final_gender_XGBoost.json``: a binary:logistic XGBoost model over the 9,088 Ψ
  features, in the xgboost 1.7 layout (``version`` [1, 7, x], the scikit-learn hyper-parameters in
  the ``scikit_learn`` learner attribute, ``best_iteration`` before the last tree).

The weights are random: the files check that every step of the official flow runs on the real
layouts, not that it gives meaningful answers.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

# The FFHQ options of the released e4e file that matter for loading (plus a few that travel with it).
E4E_FFHQ_OPTS = {
    "dataset_type": "ffhq_encode",
    "encoder_type": "Encoder4Editing",
    "stylegan_size": 1024,
    "start_from_latent_avg": True,
    "train_decoder": False,
    "batch_size": 8,
    "learning_rate": 0.0001,
    "optim_name": "ranger",
    "lpips_lambda": 0.8,
    "id_lambda": 0.1,
    "l2_lambda": 1.0,
    "w_discriminator_lambda": 0.1,
    "delta_norm": 2,
    "delta_norm_lambda": 0.0002,
    "progressive_start": 20000,
    "progressive_step_every": 2000,
    "use_w_pool": True,
    "w_pool_size": 50,
    "stylegan_weights": "pretrained_models/stylegan2-ffhq-config-f.pt",
}


@contextlib.contextmanager
def storages_tagged(location: str) -> Iterator[None]:
    """Inside, ``torch.save`` records every storage's location as ``location`` (e.g. ``cuda:0``)
    whatever device it is on, the way a file saved from that GPU looks."""
    import torch.serialization as ser

    original = ser.location_tag
    ser.location_tag = lambda storage: location
    try:
        yield
    finally:
        ser.location_tag = original


def storage_locations(path: Path) -> set[str]:
    """Storage location tags recorded in a zip-format torch file (read from its pickle bytes)."""
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        raw = z.read(name)
    return {tag for tag in ("cpu", "cuda:0", "cuda:1") if tag.encode() in raw}


def write_official_files(root: Path, seed: int = 0) -> dict[str, Path]:
    """Write the three official-layout files under ``root`` (a ``pretrained_models`` folder).

    Returns:
        ``{"generator", "e4e", "xgboost"}`` paths.
    """
    from img2tab.networks.e4e import EncoderConfig, build_encoder
    from img2tab.networks.stylegan2 import Generator, GeneratorConfig

    root = Path(root)
    (root / "xgboost").mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(GeneratorConfig(1024)).eval()
        enc = build_encoder(EncoderConfig()).eval()  # IR-SE50, 18 W+ rows, 256 px input
        latent_avg = G.mean_latent(256, seed=seed)[0]  # [512]
    paths = {"generator": root / "stylegan2-ffhq-config-f.pt", "e4e": root / "e4e_ffhq_encode.pt",
             "xgboost": root / "xgboost" / "Final_gender_XGBoost.json"}
    g_sd = G.state_dict()
    torch.save({"g_ema": g_sd, "latent_avg": latent_avg}, paths["generator"])
    sd = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    sd.update({f"decoder.{k}": v for k, v in g_sd.items()})
    with storages_tagged("cuda:0"):
        torch.save({"state_dict": sd, "opts": dict(E4E_FFHQ_OPTS),
                    "latent_avg": latent_avg.expand(G.n_latent, -1).clone()}, paths["e4e"])
    write_official_xgboost(paths["xgboost"], n_features=G.layout.total, seed=seed)
    return paths


def write_official_xgboost(path: Path, n_features: int = 9088, seed: int = 0) -> Path:
    """A small binary:logistic XGBoost model over ``n_features`` columns saved in the 1.7 JSON
    layout (early stopping leaves ``best_iteration`` before the last tree)."""
    import xgboost

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, n_features)).astype(np.float32)
    y = (X[:, 4614] + 0.5 * rng.normal(size=120) > 0).astype(np.int64)
    model = xgboost.XGBClassifier(n_estimators=30, max_depth=2, learning_rate=0.3, n_jobs=1,
                                  objective="binary:logistic", tree_method="hist",
                                  early_stopping_rounds=5)
    model.fit(X[:90], y[:90], eval_set=[(X[90:], y[90:])], verbose=False)
    booster = model.get_booster().copy()
    n_rounds = booster.num_boosted_rounds()
    meta = {"n_estimators": 600, "objective": "binary:logistic", "max_depth": 6, "learning_rate": 0.1,
            "tree_method": "gpu_hist", "gpu_id": 1, "gamma": 0.3, "subsample": 0.74,
            "colsample_bytree": 0.6, "reg_alpha": 10, "reg_lambda": 0.1, "random_state": 2022,
            "early_stopping_rounds": None, "kwargs": {"eta": 0.1}, "classes_": [0.0, 1.0],
            "evals_result_": {"validation_0": {"logloss": [0.5] * n_rounds}},
            "_estimator_type": "classifier"}
    booster.set_attr(scikit_learn=json.dumps(meta), best_iteration=str(model.best_iteration),
                     best_ntree_limit=str(model.best_iteration + 1))
    booster.save_model(path)
    doc = json.loads(Path(path).read_text())
    doc["version"] = [1, 7, 3]
    Path(path).write_text(json.dumps(doc))
    return Path(path)


def write_faces(folder: Path, n: int = 3, size: int = 256, seed: int = 0) -> list[Path]:
    """``n`` synthetic face-like PNGs (128 px concept-world renders, resized to ``size`` px)."""
    from PIL import Image

    from img2tab.world import ConceptWorld

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    batch = ConceptWorld(size=128).sample(n, seed=seed)
    out = []
    for i, img in enumerate(batch.images):
        p = folder / f"face{i}.png"
        Image.fromarray(np.asarray(img)).resize((size, size), Image.Resampling.BICUBIC).save(p)
        out.append(p)
    return out
