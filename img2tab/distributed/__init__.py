"""Img2Tab on a Dask cluster: Ψ as chunked arrays, distributed encoding, exact W1, ``xgboost.dask``.

Needs the optional extra ``img2tab[distributed]`` (dask, distributed, zarr). Every function takes
a :class:`distributed.Client`; :func:`get_client` makes one from a scheduler address or starts a
local cluster. Results equal the single-process ones: the same shards, the same per-column W1
code, and an XGBoost model saved in the same format as :meth:`ConceptClassifier.save`.

- :func:`save_zarr`, :func:`open_zarr`, :func:`zarr_to_dataset`: a Ψ dataset as a zarr store
  (row chunks, labels / ids / protected alongside) read by Dask without loading the matrix;
  :func:`dataset_as_dask` reads a :class:`~img2tab.tabular.PsiDataset` folder in place.
- :func:`encode_distributed`: one task per image shard, resumable.
- :func:`wasserstein_relevance_dask`: one task per column block, no gather of the matrix.
- :func:`fit_classifier_dask`, :func:`predict_proba_dask`: :class:`ConceptClassifier` on the
  cluster, by default with bounded memory per worker (exact quantile cuts by column blocks,
  rows streamed into each worker's ``QuantileDMatrix``, XGBoost's collective), or through
  ``xgboost.dask``.
"""

from ._client import get_client
from ._encode import encode_distributed
from ._wasserstein import wasserstein_relevance_dask
from ._xgboost import fit_classifier_dask, predict_proba_dask
from ._zarr import DaskPsi, dataset_as_dask, open_zarr, save_zarr, zarr_to_dataset

__all__ = [
    "DaskPsi",
    "dataset_as_dask",
    "encode_distributed",
    "fit_classifier_dask",
    "get_client",
    "open_zarr",
    "predict_proba_dask",
    "save_zarr",
    "wasserstein_relevance_dask",
    "zarr_to_dataset",
]
