"""Loading and saving generators and inverters.

Formats read:

* rosinality StyleGAN2 checkpoints: ``{'g_ema', 'latent_avg'}`` (the official
  ``stylegan2-ffhq-config-f.pt``), training checkpoints ``{'g', 'd', 'g_ema', 'args', ...}``, or a
  bare generator state dict;
* e4e / pSp checkpoints: ``{'state_dict': {'encoder.*', 'decoder.*'}, 'opts', 'latent_avg'}``;
* img2tab's own format: a directory with ``model.safetensors`` and ``config.json``.

Architectures (size, style_dim, n_mlp, channel widths, encoder type, trunk depth, input size) are
inferred from the weights and the stored options. ``.pt`` files are read with
``torch.load(weights_only=True)`` (``argparse.Namespace`` allowed), so no arbitrary code is ever
unpickled. Mismatching files raise :class:`~img2tab.errors.CheckpointError` naming the missing and
unexpected keys and the likely cause.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from ._device import resolve_device
from ._json import read_json
from .errors import CheckpointError, Img2TabInputError
from .networks.e4e import EncoderConfig, build_encoder
from .networks.inverter import Inverter
from .networks.layout import generator_channels
from .networks.stylegan2 import Discriminator, Generator, GeneratorConfig

__all__ = [
    "infer_encoder_config",
    "infer_generator_config",
    "load_checkpoint",
    "load_discriminator",
    "load_generator",
    "load_inverter",
    "resolve_path",
    "search_path",
    "weight_dirs",
    "save_e4e",
    "save_generator",
    "save_inverter",
    "save_rosinality",
]

logger = logging.getLogger(__name__)

_FORMAT = "img2tab"
_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------- paths and raw IO
def search_path(path: str | os.PathLike, dirs: list[Path], purpose: str, hint: str) -> Path:
    """The first existing of ``path`` under each of ``dirs`` (``Path()`` = as given).

    Raises:
        FileNotFoundError: naming the file, its purpose, every place looked in and ``hint``.
    """
    p = Path(path).expanduser()
    candidates = [p] if p.is_absolute() else [d / p for d in dirs]
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(
        f"{purpose} file {str(path)!r} not found (looked in: "
        + ", ".join(str(c) for c in candidates) + f"); {hint}"
    )


def weight_dirs(*extra: Path) -> list[Path]:
    """Folders searched for weights: ``$IMG2TAB_HOME``, then ``extra``, then ``./pretrained_models``."""
    home = os.environ.get("IMG2TAB_HOME")
    return ([Path(home)] if home else []) + list(extra) + [Path("pretrained_models")]


def resolve_path(path: str | os.PathLike, purpose: str = "checkpoint") -> Path:
    """Find a weights file: the path itself, else ``$IMG2TAB_HOME/<path>``, else
    ``pretrained_models/<path>`` under the current directory.

    Raises:
        FileNotFoundError: naming the file, its purpose and where it was looked for.
    """
    return search_path(path, [Path(), *weight_dirs()], purpose,
                       "see pretrained_models/README.md for where to get the official files")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a ``.pt`` file safely (``weights_only=True``, ``argparse.Namespace`` allowed).

    Returns:
        The top-level dict (a bare state dict is returned as is).
    """
    p = resolve_path(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, arbitrary pickle, not a torch file ...
        raise CheckpointError(
            f"cannot read {p} as a weights-only torch checkpoint ({_first_line(exc)}). "
            "The file may be truncated, not a "
            "PyTorch file, or contain pickled objects other than tensors and plain containers; "
            "img2tab never unpickles arbitrary objects"
        ) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p} holds a {type(obj).__name__}, expected a dict of weights")
    return dict(obj)


def _plain(opts: object) -> dict:
    if opts is None:
        return {}
    if isinstance(opts, argparse.Namespace):
        return dict(vars(opts))
    if isinstance(opts, Mapping):
        return dict(opts)
    return {}


def _strip(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _clean(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``module.`` / ``_orig_mod.`` prefixes (DataParallel / torch.compile)."""
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(
            f"expected a state dict (name -> tensor), got {type(sd).__name__}: not a weights file "
            "in rosinality / e4e layout"
        )
    out = {}
    for k, v in sd.items():
        for pre in ("module.", "_orig_mod."):
            if k.startswith(pre):
                k = k[len(pre):]
        out[k] = v
    return out


# ---------------------------------------------------------------------------- inference
def infer_generator_config(
    sd: Mapping[str, torch.Tensor], args: Mapping | None = None
) -> GeneratorConfig:
    """Infer a :class:`GeneratorConfig` from a rosinality generator state dict.

    Args:
        sd: generator state dict (``g_ema``).
        args: optional training options (``lr_mlp`` is read from it when present).
    """
    if "conv1.conv.weight" not in sd or "style.1.weight" not in sd:
        sample = ", ".join(list(sd)[:5])
        raise CheckpointError(
            "not a StyleGAN2 generator in rosinality layout: keys 'conv1.conv.weight' and "
            f"'style.1.weight' are missing (first keys: {sample})"
        )
    style_dim = int(sd["conv1.conv.modulation.weight"].shape[1])
    w1 = sd["style.1.weight"]
    if tuple(w1.shape) != (style_dim, style_dim):
        raise CheckpointError(
            f"style.1.weight has shape {tuple(w1.shape)}, expected [{style_dim}, {style_dim}]: "
            "this looks like a conditional / StyleGAN2-ADA conversion, which img2tab does not load"
        )
    n_mlp = len({k.split(".")[1] for k in sd if re.fullmatch(r"style\.\d+\.weight", k)})
    n_up = len({k.split(".")[1] for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)})
    size = 2 ** (n_up + 2)
    channels = {4: int(sd["conv1.conv.weight"].shape[1])}
    for t in range(n_up):
        key = f"convs.{2 * t}.conv.weight"
        if key not in sd:
            raise CheckpointError(f"generator state dict lacks {key!r} (truncated file?)")
        channels[2 ** (t + 3)] = int(sd[key].shape[1])
    cm_found = None
    for cm in (2, 1, 4):
        std = generator_channels(cm)
        if all(std[r] == c for r, c in channels.items()):
            cm_found = cm
            break
    args = dict(args or {})
    lr_mlp = float(args.get("lr_mlp", 0.01))
    if cm_found is not None:
        return GeneratorConfig(size, style_dim, n_mlp, cm_found, lr_mlp)
    return GeneratorConfig(size, style_dim, n_mlp, 2, lr_mlp, tuple(sorted(channels.items())))


def infer_encoder_config(
    sd: Mapping[str, torch.Tensor], opts: Mapping | None = None
) -> EncoderConfig:
    """Infer an :class:`EncoderConfig` from an encoder state dict (``encoder.*`` stripped) and
    the checkpoint's ``opts``."""
    opts = dict(opts or {})
    if "input_layer.0.weight" not in sd or "styles.0.linear.weight" not in sd:
        raise CheckpointError(
            "not an e4e / pSp encoder: keys 'input_layer.0.weight' and 'styles.0.linear.weight' "
            "are missing"
        )
    n_styles = len({k.split(".")[1] for k in sd if re.fullmatch(r"styles\.\d+\.linear\.weight", k)})
    stem = int(sd["input_layer.0.weight"].shape[0])
    depths = []
    k = 0
    while f"body.{k}.res_layer.1.weight" in sd:
        depths.append(int(sd[f"body.{k}.res_layer.1.weight"].shape[0]))
        k += 1
    widths: list[int] = []
    units: list[int] = []
    for d in depths:
        if widths and widths[-1] == d:
            units[-1] += 1
        else:
            widths.append(d)
            units.append(1)
    if len(widths) != 4:
        raise CheckpointError(
            f"encoder trunk has {len(widths)} stages of widths {widths}, expected 4 (IR-SE layout)"
        )
    n_coarse_convs = len({k for k in sd if re.fullmatch(r"styles\.0\.convs\.\d+\.weight", k)})
    input_size = int(opts.get("input_size", 16 * 2**n_coarse_convs))
    mode = "ir_se" if "body.0.res_layer.5.fc1.weight" in sd else "ir"
    size_from_styles = 2 ** ((n_styles + 2) // 2)
    stylegan_size = int(opts.get("stylegan_size", size_from_styles))
    if 2 * int(math.log2(stylegan_size)) - 2 != n_styles:
        raise CheckpointError(
            f"opts.stylegan_size={stylegan_size} needs {2 * int(math.log2(stylegan_size)) - 2} "
            f"style blocks but the encoder has {n_styles} (wrong stylegan_size?)"
        )
    encoder_type = str(opts.get("encoder_type", "Encoder4Editing"))
    if encoder_type not in ("Encoder4Editing", "GradualStyleEncoder"):
        raise CheckpointError(
            f"unsupported encoder_type {encoder_type!r} in opts; img2tab loads "
            "'Encoder4Editing' (e4e) and 'GradualStyleEncoder' (pSp)"
        )
    return EncoderConfig(
        encoder_type=encoder_type,
        stylegan_size=stylegan_size,
        style_dim=int(sd["styles.0.linear.weight"].shape[0]),
        input_size=input_size,
        widths=tuple(widths),  # type: ignore[arg-type]
        units=tuple(units),  # type: ignore[arg-type]
        stem=stem,
        mode=mode,
    )


def _load_strict(module: torch.nn.Module, sd: Mapping[str, torch.Tensor], what: str,
                 allow_missing: tuple[str, ...] = ()) -> None:
    """load_state_dict(strict) with one readable error for missing / unexpected / misshapen keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd and not k.startswith(allow_missing)]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        def _few(xs: list[str]) -> str:
            return ", ".join(xs[:6]) + (f" ... (+{len(xs) - 6})" if len(xs) > 6 else "")

        parts = []
        if missing:
            parts.append(f"missing keys [{_few(missing)}]")
        if unexpected:
            parts.append(f"unexpected keys [{_few(unexpected)}]")
        if shapes:
            parts.append(f"shape mismatches [{_few(shapes)}]")
        cause = (
            "likely cause: wrong size, wrong channel multiplier or a different architecture"
            if shapes or unexpected
            else "likely cause: a truncated or partial file"
        )
        raise CheckpointError(f"{what} does not match: " + "; ".join(parts) + f"; {cause}")
    absent = [k for k in own if k not in sd]
    if absent:
        warnings.warn(
            f"{what}: {len(absent)} buffers absent from the file ({absent[0]} ...); keeping "
            "freshly initialised values (old rosinality files lack noise buffers)",
            stacklevel=3,
        )
    module.load_state_dict({**{k: own[k] for k in absent}, **dict(sd)}, strict=True)


def _generator_from_state(sd: Mapping[str, torch.Tensor], args: Mapping | None,
                          what: str) -> Generator:
    sd = {k: v.float() if v.is_floating_point() else v for k, v in _clean(sd).items()}
    G = Generator(infer_generator_config(sd, args))
    _load_strict(G, sd, what, allow_missing=("noises.",))
    return G.eval()


# ---------------------------------------------------------------------------- img2tab format
def _read_native(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    cfg_path, w_path = path / "config.json", path / "model.safetensors"
    if not cfg_path.exists() or not w_path.exists():
        raise CheckpointError(
            f"{path} is a directory but not an img2tab model (needs config.json and "
            "model.safetensors)"
        )
    try:
        cfg = read_json(cfg_path, "model config")
    except Img2TabInputError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(cfg, dict) or cfg.get("format") != _FORMAT:
        fmt = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise CheckpointError(f"{cfg_path} is not an img2tab config (format={fmt!r})")
    try:
        tensors = load_file(str(w_path))
    except Exception as exc:  # SafetensorError on truncated / foreign files, OSError
        raise CheckpointError(f"cannot read {w_path} as safetensors ({_first_line(exc)}); the file "
                              "is truncated or not a safetensors file") from None
    return cfg, tensors


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _native_config(cls: type, cfg: dict, key: str, path: Path):
    """``cls.from_dict(cfg[key])`` with a one-line error naming the config file."""
    try:
        return cls.from_dict(cfg[key])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path / 'config.json'} has an invalid {key!r} entry "
                              f"({_first_line(exc)})") from None


def _write_native(path: str | os.PathLike, cfg: dict, tensors: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
              str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text(json.dumps({"format": _FORMAT,
                                                 "format_version": _FORMAT_VERSION, **cfg},
                                                indent=2))
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        os.replace(path, old)
        os.replace(tmp, path)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        os.replace(tmp, path)
    return path


def _atomic_torch_save(obj: object, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------- public loaders
def load_generator(
    path: str | os.PathLike, device: str | torch.device = "cpu", key: str = "g_ema"
) -> Generator:
    """Load a StyleGAN2 generator.

    Accepts a rosinality checkpoint (``g_ema``, with optional ``latent_avg`` and ``args``), a bare
    generator state dict, an e4e / pSp checkpoint (its ``decoder.*`` weights) or an img2tab model
    directory. The architecture is inferred from the weights. ``G.latent_avg`` (``[style_dim]`` or
    None) holds the stored average latent; it is not part of the state dict.

    Args:
        path: file or directory (also looked up under ``$IMG2TAB_HOME`` and
            ``pretrained_models/``).
        device: where to put the model.
        key: which generator of a training checkpoint to use (``"g_ema"`` or ``"g"``).

    Returns:
        The generator in eval mode.
    """
    device = resolve_device(device)
    p = resolve_path(path, "StyleGAN2 generator")
    latent_avg = None
    if p.is_dir():
        cfg, tensors = _read_native(p)
        if "generator" not in cfg:
            raise CheckpointError(f"{p} holds no generator")
        G = Generator(_native_config(GeneratorConfig, cfg, "generator", p))
        _load_strict(G, _strip(tensors, "decoder."), f"generator in {p}")
        latent_avg = tensors.get("latent_avg")
        G = G.eval()
    else:
        ckpt = load_checkpoint(p)
        if "state_dict" in ckpt and isinstance(ckpt["state_dict"], Mapping):  # e4e / pSp
            dec = _strip(ckpt["state_dict"], "decoder.")
            if not dec:
                raise CheckpointError(f"{p} is an encoder checkpoint without decoder weights")
            G = _generator_from_state(dec, None, f"decoder in {p}")
            latent_avg = ckpt.get("latent_avg")
        elif key in ckpt or "g_ema" in ckpt or "g" in ckpt:
            k = key if key in ckpt else ("g_ema" if "g_ema" in ckpt else "g")
            G = _generator_from_state(ckpt[k], _plain(ckpt.get("args")), f"{k} in {p}")
            latent_avg = ckpt.get("latent_avg")
        else:
            G = _generator_from_state(ckpt, None, f"generator state dict in {p}")
    if isinstance(latent_avg, torch.Tensor):
        latent_avg = latent_avg.float()
        if latent_avg.ndim == 2:
            latent_avg = latent_avg[0]
    else:
        latent_avg = None
    G.latent_avg = latent_avg
    return G.to(device)


def load_discriminator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Discriminator:
    """Load the discriminator ``d`` of a rosinality training checkpoint (or a bare state dict)."""
    p = resolve_path(path, "StyleGAN2 discriminator")
    ckpt = load_checkpoint(p)
    sd = _clean(ckpt.get("d", ckpt))
    if "convs.0.0.weight" not in sd or "final_linear.1.weight" not in sd:
        raise CheckpointError(f"{p} holds no rosinality discriminator (no 'd' / 'convs.0.0.weight')")
    top = int(sd["convs.0.0.weight"].shape[0])
    n_blocks = len({k.split(".")[1] for k in sd if re.fullmatch(r"convs\.\d+\.conv1\.0\.weight", k)})
    size = 2 ** (n_blocks + 2)
    channels = {size: top}
    for i in range(1, n_blocks + 1):
        channels[size // 2**i] = int(sd[f"convs.{i}.conv2.1.weight"].shape[0])
    D = Discriminator(size, channels=channels)
    _load_strict(D, {k: v.float() for k, v in sd.items()}, f"discriminator in {p}")
    return D.eval().to(device)


def load_inverter(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    generator: Generator | str | os.PathLike | None = None,
) -> Inverter:
    """Load an e4e / pSp inverter: encoder + generator + ``latent_avg``.

    Accepts the official e4e / pSp ``.pt`` layout (``state_dict`` with ``encoder.*`` and
    ``decoder.*``, ``opts``, ``latent_avg``) or an img2tab model directory. For an encoder-only
    file pass ``generator``.

    Args:
        path: checkpoint file or directory.
        device: where to put the model.
        generator: a generator (or its path) to use instead of the file's decoder.

    Returns:
        An :class:`~img2tab.networks.inverter.Inverter` in eval mode; ``inv.encode(images)`` gives
        W+ ``[B, n_latent, style_dim]`` and ``inv.psi(images)`` gives Ψ ``[B, D]``.
    """
    device = resolve_device(device)
    p = resolve_path(path, "e4e inverter")
    if p.is_dir():
        cfg, tensors = _read_native(p)
        if "encoder" not in cfg:
            raise CheckpointError(f"{p} holds no encoder")
        enc_sd = _strip(tensors, "encoder.")
        enc = build_encoder(_native_config(EncoderConfig, cfg, "encoder", p))
        _load_strict(enc, enc_sd, f"encoder in {p}")
        G = (load_generator(p) if generator is None else
             generator if isinstance(generator, Generator) else load_generator(generator))
        latent_avg = tensors.get("latent_avg_wplus")
        opts = dict(cfg.get("opts") or {}) if isinstance(cfg.get("opts"), Mapping) else {}
    else:
        ckpt = load_checkpoint(p)
        if "state_dict" not in ckpt or not isinstance(ckpt["state_dict"], Mapping):
            keys = ", ".join(list(ckpt)[:6])
            raise CheckpointError(
                f"{p} is not an e4e / pSp checkpoint: no 'state_dict' entry (top-level keys: "
                f"{keys}); for a StyleGAN2 file use load_generator"
            )
        full = _clean(ckpt["state_dict"])
        opts = _plain(ckpt.get("opts"))
        enc_sd = {k: v.float() if v.is_floating_point() else v
                  for k, v in _strip(full, "encoder.").items()}
        if not enc_sd:
            raise CheckpointError(f"{p} has no 'encoder.*' weights under 'state_dict'")
        dec_sd = _strip(full, "decoder.")
        if "stylegan_size" not in opts and dec_sd:
            opts["stylegan_size"] = infer_generator_config(dec_sd).size
        enc = build_encoder(infer_encoder_config(enc_sd, opts))
        _load_strict(enc, enc_sd, f"encoder in {p}")
        if generator is not None:
            G = generator if isinstance(generator, Generator) else load_generator(generator)
        elif dec_sd:
            G = _generator_from_state(dec_sd, None, f"decoder in {p}")
        else:
            raise CheckpointError(
                f"{p} holds only encoder weights; pass generator=... (a StyleGAN2 checkpoint)"
            )
        latent_avg = ckpt.get("latent_avg")
        if latent_avg is None and opts.get("start_from_latent_avg", True):
            warnings.warn(
                f"{p} has no latent_avg; using the mean of 10,000 mapped samples as the official "
                "pSp loader does",
                stacklevel=2,
            )
            latent_avg = G.mean_latent(10000, seed=0)[0]
        if isinstance(latent_avg, torch.Tensor):
            latent_avg = latent_avg.float()
    inv = Inverter(enc.eval(), G.eval(), latent_avg)
    inv.source_path = str(p)
    inv.opts = opts
    return inv.eval().to(device)


# ---------------------------------------------------------------------------- savers
def save_rosinality(
    G: Generator,
    path: str | os.PathLike,
    latent_avg: torch.Tensor | None = None,
    extra: Mapping[str, object] | None = None,
) -> Path:
    """Save ``{'g_ema': state_dict, 'latent_avg': [style_dim], **extra}`` (official layout)."""
    obj: dict[str, object] = {"g_ema": G.state_dict()}
    if latent_avg is None:
        latent_avg = getattr(G, "latent_avg", None)
    if latent_avg is not None:
        obj["latent_avg"] = latent_avg.detach().cpu()
    obj.update(extra or {})
    return _atomic_torch_save(obj, path)


_KEEP_PRECISION = ("running_mean", "running_var")


def _cast_for_export(name: str, t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``t`` on the CPU, cast to ``dtype`` when that loses no range (see :func:`save_e4e`)."""
    t = t.detach().cpu()
    if dtype is None or not t.is_floating_point() or name.endswith(_KEEP_PRECISION):
        return t
    limit = torch.finfo(dtype).max
    if t.numel() and float(t.abs().max()) > limit:
        logger.info("keeping %s in %s: its largest value exceeds the range of %s", name, t.dtype, dtype)
        return t
    return t.to(dtype)


def save_e4e(
    inv: Inverter, path: str | os.PathLike, opts: Mapping | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save in the official e4e layout ``{'state_dict', 'opts', 'latent_avg'}``.

    ``opts`` is merged over defaults describing the architecture (encoder_type, stylegan_size,
    input_size, start_from_latent_avg). ``dtype=torch.float16`` halves the file size; loading
    casts back to float32. Normalisation statistics (``running_mean`` / ``running_var``) and any
    tensor with values outside the finite range of ``dtype`` stay in their own precision: a
    BatchNorm variance above 65504 would otherwise turn into ``inf`` and silently wreck the
    encoder for every image that reaches that layer.
    """
    sd = {f"encoder.{k}": _cast_for_export(k, v, dtype) for k, v in inv.encoder.state_dict().items()}
    sd.update({f"decoder.{k}": _cast_for_export(k, v, dtype) for k, v in inv.decoder.state_dict().items()})
    cfg = inv.encoder.config
    full_opts = {
        "encoder_type": cfg.encoder_type,
        "stylegan_size": cfg.stylegan_size,
        "input_size": cfg.input_size,
        "start_from_latent_avg": inv.latent_avg is not None,
    }
    full_opts.update(dict(opts or {}))
    obj: dict[str, object] = {"state_dict": sd, "opts": full_opts}
    if inv.latent_avg is not None:
        obj["latent_avg"] = inv.latent_avg.detach().cpu()
    return _atomic_torch_save(obj, path)


def save_generator(G: Generator, path: str | os.PathLike) -> Path:
    """Save a generator in img2tab's format (directory: model.safetensors + config.json)."""
    tensors = {f"decoder.{k}": v for k, v in G.state_dict().items()}
    if getattr(G, "latent_avg", None) is not None:
        tensors["latent_avg"] = G.latent_avg
    return _write_native(path, {"generator": G.config.to_dict()}, tensors)


def save_inverter(inv: Inverter, path: str | os.PathLike) -> Path:
    """Save an inverter in img2tab's format (directory: model.safetensors + config.json)."""
    tensors = {f"encoder.{k}": v for k, v in inv.encoder.state_dict().items()}
    tensors.update({f"decoder.{k}": v for k, v in inv.decoder.state_dict().items()})
    if inv.latent_avg is not None:
        tensors["latent_avg_wplus"] = inv.latent_avg
    if getattr(inv.decoder, "latent_avg", None) is not None:
        tensors["latent_avg"] = inv.decoder.latent_avg
    cfg = {"generator": inv.decoder.config.to_dict(), "encoder": inv.encoder.config.to_dict()}
    return _write_native(path, cfg, tensors)
