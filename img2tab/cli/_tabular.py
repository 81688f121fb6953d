"""``img2tab fit | relevance | concepts | debug``: the tabular half of Img2Tab from the shell.

Datasets are Ψ dataset directories written by :meth:`img2tab.tabular.PsiDataset.save`.
``img2tab fit`` writes an :class:`img2tab.Img2Tab` folder (``Img2Tab.save``: the classifier in
``classifier/``, the training Ψ statistics and W1, and a reference to the training Ψ); every
command that reads a classifier also takes a folder written by :meth:`ConceptClassifier.save`
(e.g. by ``img2tab debug`` or an older ``img2tab fit``) or an XGBoost ``.json`` file (e.g. the
official ``Final_gender_XGBoost.json``).

``--classes 3,8`` (fit, relevance, debug) keeps only the rows whose label is one of those
classes; the labels keep their values (3 and 8, not 0 and 1), so classifiers, W1 columns and
reports name the classes as the dataset does.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from img2tab._atomic import atomic_savefig, atomic_write_text
from img2tab.errors import Img2TabInputError

from ._common import add_cluster, add_overwrite, check_device, check_output, cluster_client

__all__ = ["parse_indices", "parse_params", "register"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- parsing helpers
def parse_indices(text: str | None) -> list[int]:
    """Parse ``"4614,512,10-12"`` into ``[4614, 512, 10, 11, 12]`` (ranges inclusive)."""
    if text is None:
        return []
    out: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        rng = re.fullmatch(r"(\d+)-(\d+)", part)
        try:
            if rng:
                a, b = int(rng.group(1)), int(rng.group(2))
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise Img2TabInputError(
                f"bad concept index {part!r} in {text!r}; use e.g. 4614,512,10-12"
            ) from None
    return out


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """Parse ``["max_depth=6", "learning_rate=0.1", "tree_method=hist"]`` into a dict.

    Values are read as JSON when possible (numbers, ``true``/``false``/``null``, lists), else
    kept as strings.
    """
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise Img2TabInputError(f"--param expects key=value, got {item!r}")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


def _param_error(exc: Exception, params: dict[str, Any], model: str) -> Exception:
    """A one-line error naming the ``--param`` that ``exc`` complains about (``exc`` itself when
    no --param was given: then it is not the user's parameter that failed)."""
    if not params:
        return exc
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()] or [type(exc).__name__]
    named = [k for k in params if re.search(rf"(?<![A-Za-z0-9_]){re.escape(k)}(?![A-Za-z0-9_])", text)]
    detail = next((ln for ln in lines if any(k in ln for k in named)), lines[0]) if named else lines[0]
    detail = re.sub(r"^\[[^\]]*\]\s*\S+:\s*", "", detail)  # XGBoost's "[time] file:line: " prefix
    if named:
        shown = ", ".join(f"--param {k}={params[k]!r}" for k in named)
        return Img2TabInputError(f"{shown} rejected by the {model} model: {detail}")
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return Img2TabInputError(f"fitting {model} failed with --param {shown}: {detail}")


def _load_dataset(path: str, *, need_labels: bool = True) -> Any:
    from img2tab.tabular import PsiDataset

    ds = PsiDataset.load(path)
    if need_labels and ds.labels is None:
        raise Img2TabInputError(f"dataset {path} has no labels; save it with labels=...")
    return ds


def parse_classes(text: str | None, labels: np.ndarray, what: str = "--classes") -> np.ndarray | None:
    """``"3,8"`` -> a boolean row mask keeping the labels 3 and 8 (None when ``text`` is None).

    Tokens are matched against the labels as text (``"3"`` matches the integer label 3).

    Raises:
        Img2TabInputError: fewer than two classes, a repeated class, or a class not in the labels.
    """
    if text is None:
        return None
    tokens = [t.strip() for t in str(text).split(",") if t.strip()]
    as_text = np.asarray([str(v) for v in np.asarray(labels).reshape(-1).tolist()])
    present = set(as_text.tolist())
    missing = [t for t in tokens if t not in present]
    if missing:
        shown = sorted(present, key=lambda v: (len(v), v))[:20]
        raise Img2TabInputError(f"{what} {text!r}: class {missing[0]!r} is not a label of the "
                                f"dataset (labels: {', '.join(shown)})")
    if len(set(tokens)) != len(tokens) or len(tokens) < 2:
        raise Img2TabInputError(f"{what} needs two or more different classes, e.g. 3,8; got {text!r}")
    return np.isin(as_text, tokens)


def _select(ds: Any, text: str | None, path: str) -> Any:
    """``ds`` restricted to the ``--classes`` rows (``ds`` itself when not given)."""
    mask = parse_classes(text, ds.labels)
    if mask is None:
        return ds
    logger.info("--classes %s: keeping %d of %d rows of %s", text, int(mask.sum()), len(ds), path)
    return ds.subset(mask)


def _no_cluster_with_classes(args: argparse.Namespace) -> None:
    if getattr(args, "classes", None) and (args.scheduler is not None or args.workers is not None):
        raise Img2TabInputError("--classes cannot be combined with --scheduler / --workers; "
                                "save the selected rows as their own dataset first")


def _load_array(path: str, n: int, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no {what} file at {p}")
    arr = np.load(p, allow_pickle=False) if p.suffix == ".npy" else np.loadtxt(p, dtype=str)
    arr = np.asarray(arr).reshape(-1)
    if arr.shape[0] != n:
        raise Img2TabInputError(f"{what} file {p} has {arr.shape[0]} entries, expected {n}")
    return arr


def _write_text(text: str, output: str | None) -> None:
    if output in (None, "-"):
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output, text)
        logger.info("wrote %s", output)


def _relevance_columns(
    psi: Any, labels: Any, args: argparse.Namespace, standardize: bool = True, client: Any = None,
    source: Any = None,
) -> tuple[str, dict[str, np.ndarray]]:
    """Named W1 columns (see :func:`img2tab.tabular.relevance_columns`) for ``--pair`` /
    ``--mode`` / ``--aggregate``, and the column to rank by."""
    from img2tab.tabular import relevance_columns

    pair = _parse_pair(args.pair)
    kw = dict(pair=pair, mode=args.mode, aggregate=args.aggregate, standardize=standardize,
              progress=not args.no_progress)
    if client is not None:  # one task per column block on the cluster
        from img2tab.distributed import dataset_as_dask, wasserstein_relevance_dask

        if pair is not None:
            raise Img2TabInputError("--pair cannot be combined with --scheduler / --workers")
        x = dataset_as_dask(source, chunk_rows=len(psi), chunk_cols=256).psi  # each task reads its columns
        mode = "pairwise" if args.mode == "pairwise" else "ovr"
        scores = wasserstein_relevance_dask(x, labels, standardize, client=client, multiclass=mode)
        return relevance_columns(None, labels, scores=scores, **kw)
    return relevance_columns(psi, labels, **kw)


def _parse_pair(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    parts = [t.strip() for t in str(text).split(",")]
    if len(parts) != 2 or not all(parts):
        raise Img2TabInputError(f"--pair expects two classes A,B (e.g. 3,8), got {text!r}")
    return parts[0], parts[1]


# --------------------------------------------------------------------------- commands
def _cmd_fit(args: argparse.Namespace) -> int:
    from img2tab.tabular import ConceptClassifier, classification_metrics

    check_output(args.output, "dir", args.overwrite)
    check_device(args.device)
    _no_cluster_with_classes(args)
    params = parse_params(args.param)
    ds = _select(_load_dataset(args.dataset), args.classes, args.dataset)
    clf = ConceptClassifier(
        model=args.model,
        preset=args.preset,
        params=params or None,
        masked_features=parse_indices(args.exclude) or None,
        mask_strategy=args.mask_strategy,
        random_state=args.random_state,
        device=args.device,
        early_stopping_rounds=args.early_stopping_rounds,
    )
    on_cluster = args.scheduler is not None or args.workers is not None
    if not on_cluster and (args.dask_engine is not None or args.external_memory is not None):
        raise Img2TabInputError("--dask-engine / --external-memory need --scheduler or --workers")
    engine = args.dask_engine or "streaming"
    if on_cluster and args.model != "xgboost":
        raise Img2TabInputError(f"--scheduler / --workers fit --model xgboost only, not {args.model}")
    if engine == "xgboost.dask" and args.external_memory is not None:
        raise Img2TabInputError("--external-memory applies to --dask-engine streaming only")
    logger.info("fitting %s on %d rows x %d features", args.model, len(ds), ds.n_features)
    with cluster_client(args) as client:
        try:
            if client is None:
                clf.fit(ds.psi, ds.labels, progress=not args.no_progress)
            else:  # workers read the memory-mapped Ψ in place
                from img2tab.distributed import dataset_as_dask, fit_classifier_dask

                x = dataset_as_dask(args.dataset, chunk_rows=16384, chunk_cols=256).psi
                if engine == "streaming":  # bounded memory: cuts by column blocks, rows streamed
                    ext = {None: "auto", "auto": "auto", "yes": True, "no": False}[args.external_memory]
                    fit_classifier_dask(clf, x, ds.labels, client=client, external_memory=ext)
                else:  # xgboost.dask: partitions of whole rows held in worker memory
                    fit_classifier_dask(clf, x.rechunk({0: 2048, 1: -1}), ds.labels, client=client,
                                        streaming=False)
        except (ValueError, TypeError) as exc:
            raise _param_error(exc, params, args.model) from exc
    from img2tab import Img2Tab

    # One format: an Img2Tab folder (its classifier in classifier/), read by Img2Tab.load,
    # load_classifier and every command that takes a classifier.
    model = Img2Tab.from_fitted(clf, ds, progress=not args.no_progress)
    out = model.save(args.output, overwrite=True)
    summary: dict[str, Any] = {
        "output": str(out),
        "model": args.model,
        "classes": np.asarray(clf.classes_).tolist(),
        "n_train": len(ds),
        "n_features": ds.n_features,
        "masked": clf.masked_features_.tolist(),
        "best_iteration": clf.best_iteration_,
        "train": classification_metrics(clf, ds.psi, ds.labels),
    }
    if args.eval:
        ev = _select(_load_dataset(args.eval), args.classes, args.eval)
        summary["eval"] = classification_metrics(clf, ev.psi, ev.labels)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_relevance(args: argparse.Namespace) -> int:
    from img2tab.tabular import concept_table, rank_descending

    check_output(args.output, "file", args.overwrite)
    _no_cluster_with_classes(args)
    ds = _load_dataset(args.dataset, need_labels=args.by == "labels" or args.classes is not None)
    ds = _select(ds, args.classes, args.dataset)
    target = ds.labels if args.by == "labels" else ds.protected
    if target is None:
        raise Img2TabInputError(f"dataset {args.dataset} has no protected attribute")
    with cluster_client(args) as client:
        rank_col, cols = _relevance_columns(ds.psi, target, args, not args.no_standardize, client,
                                            args.dataset)
    order = rank_descending(cols[rank_col])
    if args.top:
        order = order[: args.top]
    table = concept_table(order, ds.layout, ds.n_features,
                          **{k: v[order] for k, v in cols.items()}).select(
        "rank", "feature", "layer", "channel", "resolution", "is_torgb", *cols
    )
    text = table.to_markdown() if args.format == "markdown" else table.to_csv()
    _write_text(text, args.output)
    return 0


def _cmd_concepts(args: argparse.Namespace) -> int:
    from img2tab.tabular import global_importance, load_classifier

    check_output(args.output, "file", args.overwrite)
    clf = load_classifier(args.classifier)
    layout, w1, X, y, rank_col = None, None, None, None, "w1"
    if args.dataset:
        ds = _load_dataset(args.dataset)
        if ds.n_features != clf.n_features_in_:
            raise Img2TabInputError(
                f"dataset has {ds.n_features} features, but the classifier is expecting "
                f"{clf.n_features_in_} features as input"
            )
        layout, X, y = ds.layout, ds.psi, ds.labels
        rank_col, cols = _relevance_columns(ds.psi, ds.labels, args)
        w1 = cols[rank_col]
    if args.importance_type == "permutation" and X is None:
        raise Img2TabInputError("--importance-type permutation needs --dataset")
    table = global_importance(
        clf,
        args.importance_type,
        layout,
        X=X,
        y=y,
        all_trees=args.all_trees,
        w1=w1,
    )
    if args.top:
        table = table.head(args.top)
    if w1 is not None and rank_col != "w1":  # say which W1 it is: w1[3 vs 8], w1[max of ...]
        names = [rank_col if n == "w1" else n for n in table.column_names]
        table = type(table)({n: table[o] for n, o in zip(names, table.column_names)})
    text = table.to_markdown() if args.format == "markdown" else table.to_csv()
    _write_text(text, args.output)
    return 0


def _cmd_debug(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from img2tab.tabular import debug_classifier, load_classifier, plot_debug_report, suggest_exclusions

    if not args.exclude and not args.suggest:
        raise Img2TabInputError("give --exclude INDICES or --suggest N")
    check_output(args.output, "dir", args.overwrite)
    steps = tqdm(total=4, desc="debug", unit="step", disable=args.no_progress)
    clf = load_classifier(args.classifier)
    train = _load_dataset(args.train)
    train_prot = _load_array(args.protected, len(train), "protected") if args.protected else train.protected
    keep = parse_classes(args.classes, train.labels)
    if keep is not None:
        logger.info("--classes %s: keeping %d of %d training rows", args.classes, int(keep.sum()), len(train))
        train = train.subset(keep)
        train_prot = None if train_prot is None else np.asarray(train_prot)[keep]
    refit = False
    if args.eval:
        ev = _load_dataset(args.eval)
        eval_prot = (
            _load_array(args.eval_protected, len(ev), "protected") if args.eval_protected else ev.protected
        )
        keep_ev = parse_classes(args.classes, ev.labels)
        if keep_ev is not None:
            ev = ev.subset(keep_ev)
            eval_prot = None if eval_prot is None else np.asarray(eval_prot)[keep_ev]
        # a classifier fitted on other classes cannot be the "before" model: refit it here
        refit = keep is not None and not np.array_equal(
            np.asarray(clf.classes_).astype(str), np.unique(train.labels).astype(str))
        X_tr, y_tr, p_tr = train.psi, train.labels, train_prot
        X_ev, y_ev = ev.psi, ev.labels
    else:  # hold out part of the training set; refit the baseline on the same rows
        from sklearn.model_selection import train_test_split

        idx = np.arange(len(train))
        tr, te = train_test_split(
            idx, test_size=args.test_size, stratify=train.labels, random_state=args.seed
        )
        tr, te = np.sort(tr), np.sort(te)
        X_tr, y_tr = np.asarray(train.psi[tr]), train.labels[tr]
        X_ev, y_ev = np.asarray(train.psi[te]), train.labels[te]
        p_tr = None if train_prot is None else train_prot[tr]
        eval_prot = None if train_prot is None else train_prot[te]
        refit = True
    steps.update(1)

    exclude: list[int] = parse_indices(args.exclude)
    suggestions = None
    if args.suggest:
        if p_tr is None:
            raise Img2TabInputError(
                "--suggest needs a protected attribute: save the training dataset with "
                "protected=... or pass --protected FILE.npy"
            )
        suggestions = suggest_exclusions(
            clf, X_tr, p_tr, k_important=args.k_important, n=args.suggest, layout=train.layout
        )
        exclude = sorted(set(exclude) | set(suggestions.features.tolist()))
    steps.update(1)
    report = debug_classifier(
        clf,
        X_tr,
        y_tr,
        X_ev,
        y_ev,
        exclude,
        protected_eval=eval_prot,
        strategy=args.strategy,
        layout=train.layout,
        refit_baseline=refit,
    )
    steps.update(1)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    data = report.to_dict()
    if suggestions is not None:
        data["suggested"] = suggestions.to_dicts()
    atomic_write_text(out / "report.json", json.dumps(data, indent=2) + "\n")
    fig = plot_debug_report(report)
    atomic_savefig(fig, out / "report.png", dpi=120)
    if not args.no_save_classifier:
        report.classifier.save(out / "classifier")
    steps.update(1)
    steps.close()
    print(report.to_markdown())
    print(f"wrote {out / 'report.json'} and {out / 'report.png'}")
    return 0


# --------------------------------------------------------------------------- registration
def _add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_classes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classes", metavar="A,B,...", default=None,
                   help="keep only rows whose label is one of these classes, e.g. 3,8; labels keep "
                   "their values (default: all rows)")


def _add_multiclass(p: argparse.ArgumentParser, what: str) -> None:
    from img2tab.tabular import AGGREGATES

    g = p.add_argument_group(
        "multi-class W1", f"With two classes {what} is one W1 column. With three or more choose "
        "--pair, or --aggregate to rank by the max or mean of per-class (one-vs-rest) or per-pair "
        "W1; there is no implicit aggregation. Columns are named w1[3 vs 8], w1[3 vs rest], "
        "w1[max of one-vs-rest].")
    g.add_argument("--pair", metavar="A,B", default=None, help="W1 between class A and class B only")
    g.add_argument("--mode", choices=("one-vs-rest", "pairwise"), default="one-vs-rest",
                   help="per-class or per-pair W1 columns (with --aggregate)")
    g.add_argument("--aggregate", choices=AGGREGATES, default=None,
                   help="rank by this aggregate of the per-class / per-pair columns (default: none; "
                   "needed for 3+ classes without --pair)")


def register(subparsers: Any) -> None:
    """Add the ``fit``, ``relevance``, ``concepts`` and ``debug`` subcommands."""
    from img2tab.tabular import MODELS, PRESETS

    p = subparsers.add_parser(
        "fit",
        help="train a concept classifier on a Ψ dataset",
        description="Train a ConceptClassifier on a Ψ dataset and save it, with the training Ψ "
        "statistics and a reference to the dataset, as an Img2Tab folder (Img2Tab.load, "
        "load_classifier, concepts and debug read it).",
    )
    p.add_argument("dataset", help="Ψ dataset directory (with labels)")
    p.add_argument("-o", "--output", required=True,
                   help="output folder: an Img2Tab folder (Img2Tab.load, load_classifier and the "
                   "other commands read it)")
    p.add_argument("--model", default="xgboost", choices=MODELS, help="tabular model")
    p.add_argument(
        "--preset", default=None, choices=sorted(PRESETS),
        help="official XGBoost hyper-parameters (default: none, the library defaults)"
    )
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="inner-model parameter, repeatable (e.g. --param n_estimators=200)",
    )
    p.add_argument("--exclude", metavar="INDICES", help="concepts to mask, e.g. 4614,512,10-12")
    p.add_argument("--mask-strategy", default="drop", choices=("drop", "mean"),
                   help="drop masked columns, or set them to the training mean")
    p.add_argument("--device", default=None, help="XGBoost device (default: cuda if available)")
    p.add_argument("--random-state", type=int, default=None,
                   help="seed of the model (default: the --preset's, else none)")
    p.add_argument("--early-stopping-rounds", type=int, default=None,
                   help="stop boosting after N rounds without improvement on a held-out split "
                   "(default: the --preset's, else no early stopping)")
    p.add_argument("--eval", metavar="DATASET", help="also report metrics on this dataset (default: none)")
    _add_classes(p)
    add_cluster(p)
    p.add_argument("--dask-engine", choices=("streaming", "xgboost.dask"), default=None,
                   help="with --scheduler / --workers: the bounded-memory streaming fit, or "
                   "xgboost.dask (every worker holds its rows and XGBoost's sketch) "
                   "(default: streaming)")
    p.add_argument("--external-memory", choices=("auto", "yes", "no"), default=None,
                   help="streaming engine: page each worker's quantile matrices to its local "
                   "directory; auto pages when they would exceed a quarter of the worker's "
                   "memory limit (default: auto)")
    add_overwrite(p)
    _add_progress(p)
    p.set_defaults(func=_cmd_fit)

    p = subparsers.add_parser(
        "relevance",
        help="rank concepts by Wasserstein-1 class relevance",
        description="Rank Ψ columns by the W1 distance between classes (z-scored columns) and "
        "write a CSV: rank, feature, layer, channel, resolution, is_torgb, w1 (two classes); "
        "with more classes the W1 columns say what they compare (see --pair / --aggregate).",
    )
    p.add_argument("dataset", help="Ψ dataset directory")
    p.add_argument("-o", "--output", default=None, help="output file (default: stdout)")
    p.add_argument("--top", type=int, default=None, help="only the N most relevant concepts")
    p.add_argument(
        "--by",
        choices=("labels", "protected"),
        default="labels",
        help="relevance to the labels or to the protected attribute",
    )
    p.add_argument("--no-standardize", action="store_true", help="W1 on raw values")
    p.add_argument("--format", choices=("csv", "markdown"), default="csv", help="output format")
    _add_classes(p)
    _add_multiclass(p, "the output")
    add_cluster(p)
    add_overwrite(p)
    _add_progress(p)
    p.set_defaults(func=_cmd_relevance)

    p = subparsers.add_parser(
        "concepts",
        help="list a classifier's important concepts",
        description="Write a classifier's concept importance table (CSV or markdown). With "
        "--dataset a w1 column is added.",
    )
    p.add_argument("classifier", help="classifier directory or XGBoost .json/.ubj file")
    p.add_argument("--dataset", default=None, help="Ψ dataset for the W1 column / layout")
    p.add_argument("--top", type=int, default=20, help="number of concepts (0: all)")
    p.add_argument(
        "--importance-type",
        default=None,
        choices=("gain", "weight", "cover", "total_gain", "total_cover", "permutation"),
        help="default: the classifier's feature_importances_",
    )
    p.add_argument(
        "--all-trees",
        action="store_true",
        help="XGBoost: count trees after best_iteration too (official behaviour)",
    )
    p.add_argument("--format", choices=("csv", "markdown"), default="csv", help="output format")
    p.add_argument("-o", "--output", default=None, help="output file (default: stdout)")
    _add_multiclass(p, "the --dataset W1 column")
    add_overwrite(p)
    _add_progress(p)
    p.set_defaults(func=_cmd_concepts)

    p = subparsers.add_parser(
        "debug",
        help="exclude concepts, retrain, report accuracy and fairness",
        description="Exclude concepts from a classifier, retrain it, and write report.json, "
        "report.png and the retrained classifier to the output directory.",
    )
    p.add_argument("classifier", help="classifier directory or XGBoost .json/.ubj file")
    p.add_argument("--train", required=True, help="Ψ dataset for retraining")
    p.add_argument(
        "--eval",
        default=None,
        help="Ψ dataset for the metrics (default: a stratified split of --train)",
    )
    p.add_argument("--test-size", type=float, default=0.2, help="held-out fraction without --eval")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    p.add_argument("--exclude", metavar="INDICES", help="concepts to exclude, e.g. 4614,10-12")
    p.add_argument(
        "--suggest",
        type=int,
        default=0,
        metavar="N",
        help="also exclude the N important concepts most related to the protected attribute",
    )
    p.add_argument(
        "--k-important",
        type=int,
        default=50,
        help="how many top important concepts --suggest considers",
    )
    p.add_argument(
        "--protected",
        default=None,
        metavar="FILE",
        help=".npy/.txt protected attribute for --train rows (default: the dataset's own)",
    )
    p.add_argument(
        "--eval-protected",
        default=None,
        metavar="FILE",
        help=".npy/.txt protected attribute for --eval rows",
    )
    p.add_argument("--strategy", choices=("drop", "mean"), default="drop",
                   help="drop excluded columns, or set them to the training mean")
    p.add_argument("-o", "--output", required=True, help="output directory")
    _add_classes(p)
    p.add_argument("--no-save-classifier", action="store_true", help="do not save the retrained classifier")
    add_overwrite(p)
    _add_progress(p)
    p.set_defaults(func=_cmd_debug)
