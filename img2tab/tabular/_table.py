"""Concept tables and the one ranking helper of the tabular half.

:func:`rank_descending` is the only ranking rule in img2tab: a stable descending argsort, so
tied scores (thousands of zeros in a real XGBoost model) give distinct indices in ascending index
order (the official code looks values up with ``list.index`` and maps every tie to the first
index); NaN ranks last.

:class:`ConceptTable` is a minimal column table (numpy arrays, no pandas dependency) whose rows
are concepts: ``feature`` (flat Ψ index, 0-based), ``layer``, ``channel``, ``module``,
``resolution``, ``is_torgb``, ``label`` (e.g. ``"L9c6@32"``; ``"f12"`` for a flat layout) and
value columns (``importance``, ``w1``, ``contribution``, ...).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from img2tab._atomic import atomic_write_text
from img2tab.errors import Img2TabInputError
from img2tab.networks.layout import StyleSpaceLayout

__all__ = [
    "ConceptTable",
    "Table",
    "concept_table",
    "rank_descending",
    "resolve_layout",
]

# --------------------------------------------------------------------------- ranking
def rank_descending(values: Any) -> np.ndarray:
    """Indices sorting ``values`` from largest to smallest; ties keep ascending index order.

    The one ranking rule of img2tab (importances, W1 relevance, contributions, tables).

    Args:
        values: ``(D,)`` scores, or ``(R, D)`` ranked along the last axis. NaN ranks last.

    Returns:
        int64 indices of the same shape.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    nan = np.isnan(arr)
    # primary key: NaN last; secondary: descending value; np.lexsort is stable (ties by index)
    return np.lexsort((np.where(nan, 0.0, -arr), nan), axis=-1).astype(np.int64)


# --------------------------------------------------------------------------- tables
def _fmt(value: Any, floatfmt: str) -> str:
    if isinstance(value, float | np.floating):
        return format(float(value), floatfmt)
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    return str(value)


def _py(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


@dataclass(frozen=True, eq=False)
class Table:
    """An immutable table of equally long 1-D numpy columns.

    Args:
        columns: mapping from column name to a 1-D array-like; order is kept. Columns are copied
            and made read-only.

    Indexing: ``table["importance"]`` returns a column, ``table[3]`` a row as a dict,
    ``table[1:5]`` / ``table[int_array]`` / ``table[bool_mask]`` a new table of those rows.
    """

    columns: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        cols: dict[str, np.ndarray] = {}
        n = None
        for name, values in dict(self.columns).items():
            arr = np.array(values, copy=True)
            if arr.ndim != 1:
                raise Img2TabInputError(f"table column {name!r} must be 1-D, got shape {arr.shape}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise Img2TabInputError(f"table column {name!r} has {arr.shape[0]} rows, expected {n}")
            arr.setflags(write=False)
            cols[str(name)] = arr
        object.__setattr__(self, "columns", cols)

    # ------------------------------------------------------------------ access
    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in order."""
        return tuple(self.columns)

    def __len__(self) -> int:
        for col in self.columns.values():
            return int(col.shape[0])
        return 0

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Iterate over rows as dicts of Python scalars."""
        for i in range(len(self)):
            yield self.row(i)

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as a dict of Python scalars (NaN -> None)."""
        return {k: _py(v[i]) for k, v in self.columns.items()}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return self.columns[key]
            except KeyError:
                raise KeyError(f"no column {key!r}; columns: {', '.join(self.column_names)}") from None
        if isinstance(key, int | np.integer):
            return self.row(int(key))
        if isinstance(key, slice):
            return self._take(np.arange(len(self))[key])
        idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return self._take(idx.astype(np.int64))

    def _take(self, idx: np.ndarray) -> Table:
        return type(self)({k: v[idx] for k, v in self.columns.items()})

    def head(self, k: int = 10) -> Table:
        """The first ``k`` rows."""
        return self._take(np.arange(min(max(int(k), 0), len(self))))

    def sort_by(self, column: str, descending: bool = True) -> Table:
        """Rows sorted by ``column`` (stable: ties keep their current order)."""
        values = self[column]
        if values.dtype.kind in "biuf":
            order = (
                rank_descending(values)
                if descending
                else np.argsort(values.astype(np.float64), kind="stable")
            )
        else:
            # rank of each distinct value; ties keep their current order in both directions
            inv = np.unique(values, return_inverse=True)[1].reshape(-1)
            order = np.argsort(-inv if descending else inv, kind="stable")
        return self._take(order)

    def with_columns(self, **columns: Any) -> Table:
        """A copy with columns added or replaced (each of length ``len(self)``)."""
        return type(self)({**self.columns, **columns})

    def select(self, *names: str) -> Table:
        """A copy with only the given columns, in the given order."""
        return type(self)({n: self[n] for n in names})

    # ------------------------------------------------------------------ export
    def to_records(self) -> np.ndarray:
        """The table as a numpy structured array (one record per row)."""
        dtypes = []
        for name, col in self.columns.items():
            dt = col.dtype if col.dtype != object else np.asarray(col.astype(str)).dtype
            dtypes.append((name, dt))
        out = np.empty(len(self), dtype=dtypes)
        for name, col in self.columns.items():
            out[name] = col if col.dtype != object else col.astype(str)
        return out

    def to_dicts(self) -> list[dict[str, Any]]:
        """Rows as a list of dicts of JSON-serialisable Python scalars (NaN -> None)."""
        return list(self)

    def to_csv(self, path: str | os.PathLike[str] | None = None, *, float_format: str = ".10g") -> str:
        """Write the table as CSV (header + rows) to ``path`` and return the text.

        Args:
            path: output file; None only returns the text.
            float_format: ``format`` spec for floats.
        """
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.column_names)
        for i in range(len(self)):
            writer.writerow([_fmt(col[i], float_format) for col in self.columns.values()])
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(Path(path), text)
        return text

    def to_markdown(self, max_rows: int | None = None, *, floatfmt: str = ".4g") -> str:
        """A GitHub-flavoured markdown table (first ``max_rows`` rows; None: all)."""
        n = len(self) if max_rows is None else min(len(self), max_rows)
        header = "| " + " | ".join(self.column_names) + " |"
        align = (
            "|" + "|".join("---:" if c.dtype.kind in "iuf" else "---" for c in self.columns.values()) + "|"
        )
        rows = [
            "| " + " | ".join(_fmt(col[i], floatfmt) for col in self.columns.values()) + " |"
            for i in range(n)
        ]
        if n < len(self):
            rows.append(f"| ... {len(self) - n} more rows |" + " |" * (len(self.columns) - 1))
        return "\n".join([header, align, *rows])

    def _repr_markdown_(self) -> str:
        return self.to_markdown(max_rows=20)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} rows x {len(self.columns)} columns)\n" + self.to_markdown(
            max_rows=10
        )


class ConceptTable(Table):
    """A :class:`Table` whose rows are concepts (Ψ columns).

    Usual columns: ``rank`` (1 = first), ``feature`` (flat 0-based Ψ index), ``layer``,
    ``channel``, ``module``, ``resolution``, ``is_torgb``, ``label`` and value columns such as
    ``importance``, ``w1`` or ``contribution``.
    """

    @property
    def features(self) -> np.ndarray:
        """The ``feature`` column (flat Ψ indices, int64)."""
        return np.asarray(self["feature"], dtype=np.int64)


# --------------------------------------------------------------------------- layouts
def resolve_layout(layout: StyleSpaceLayout | None, n_features: int) -> StyleSpaceLayout:
    """Return ``layout`` checked against ``n_features``, or guess one from ``n_features``.

    With ``layout=None``: 9088 -> the official 1024 px FFHQ layout (other known generator sizes
    likewise, see :func:`img2tab.tabular._dataset.default_layout`), anything else a one-layer
    ``"features"`` layout.
    """
    if layout is None:
        from ._dataset import default_layout

        return default_layout(int(n_features))
    if not isinstance(layout, StyleSpaceLayout):
        raise Img2TabInputError(f"layout must be a StyleSpaceLayout, got {type(layout).__name__}")
    if layout.total != n_features:
        raise Img2TabInputError(
            f"layout describes {layout.total} StyleSpace channels but there are {n_features} "
            "features; pass the layout of the generator that produced Ψ"
        )
    return layout


def concept_table(
    features: Any,
    layout: StyleSpaceLayout | None = None,
    n_features: int | None = None,
    *,
    rank: bool = True,
    **values: Any,
) -> ConceptTable:
    """Describe flat Ψ indices as a :class:`ConceptTable`.

    Args:
        features: ``(k,)`` flat 0-based Ψ indices, in the row order wanted.
        layout: StyleSpace layout (None: guessed from ``n_features``, see
            :func:`resolve_layout`).
        n_features: total number of Ψ columns (required when ``layout`` is None).
        rank: add a 1-based ``rank`` column first.
        **values: extra ``(k,)`` value columns (appended in the given order).

    Returns:
        A table with ``[rank,] feature, layer, channel, module, resolution, is_torgb, label``
        and the value columns.
    """
    idx = np.asarray(features).reshape(-1)
    if idx.size and idx.dtype.kind not in "iu":
        raise Img2TabInputError(f"features must be integer indices, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if layout is None and n_features is None:
        raise Img2TabInputError("concept_table needs a layout or n_features")
    lay = resolve_layout(layout, int(n_features if n_features is not None else layout.total))
    if idx.size and (idx.min() < 0 or idx.max() >= lay.total):
        bad = idx[(idx < 0) | (idx >= lay.total)][0]
        raise Img2TabInputError(f"feature index {int(bad)} out of range for {lay.total} features")
    offsets = np.asarray(lay.offsets, dtype=np.int64)
    layer = np.searchsorted(offsets, idx, side="right") - 1
    channel = idx - offsets[layer]
    specs = lay.layers
    module = np.asarray([s.name for s in specs], dtype=str)[layer] if idx.size else np.zeros(0, dtype=str)
    resolution = np.asarray([s.resolution for s in specs], dtype=np.int64)[layer]
    is_torgb = np.asarray([s.is_torgb for s in specs], dtype=bool)[layer]
    label = (
        np.asarray(
            [
                f"L{ly}c{ch}@{res}{'rgb' if rgb else ''}" if res > 0 else f"f{k}"
                for k, ly, ch, res, rgb in zip(
                    idx.tolist(),
                    layer.tolist(),
                    channel.tolist(),
                    resolution.tolist(),
                    is_torgb.tolist(),
                )
            ],
            dtype=str,
        )
        if idx.size
        else np.zeros(0, dtype=str)
    )
    cols: dict[str, Any] = {}
    if rank:
        cols["rank"] = np.arange(1, idx.size + 1, dtype=np.int64)
    cols.update(
        feature=idx,
        layer=layer.astype(np.int64),
        channel=channel.astype(np.int64),
        module=module,
        resolution=resolution,
        is_torgb=is_torgb,
        label=label,
    )
    for name, val in values.items():
        arr = np.asarray(val).reshape(-1)
        if arr.shape[0] != idx.size:
            raise Img2TabInputError(f"column {name!r} has {arr.shape[0]} values for {idx.size} features")
        cols[name] = arr
    return ConceptTable(cols)
