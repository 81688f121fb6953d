"""``img2tab train-generator | train-encoder | train-autoencoder``: the training subcommands."""

from __future__ import annotations

import argparse
import logging
from typing import Any

__all__ = ["register"]

logger = logging.getLogger("img2tab.cli")

_DATA_HELP = ("training images: a folder (recursively, centre-cropped and resized), a .npy/.npz "
              "uint8 array [N,H,W,3], or world:N:SEED for the concept world (e.g. world:20000:0); "
              "optional with --resume")


#: torch CPU threads of a training run unless --threads is given: one thread was faster than two
#: on a shared 2-core machine (benchmarks/RESULTS.md, "A recipe that explains")
DEFAULT_THREADS = 1


def _format_default(value: Any) -> str:
    """A config default as the CLI spells it: ``4:256,8:256`` for channel tables, ``32,48`` for
    tuples, ``none`` for None / empty strings."""
    if value is None or value == "":
        return "none"
    if isinstance(value, tuple):
        if value and isinstance(value[0], tuple):
            return ",".join(f"{r}:{c}" for r, c in value)
        return ",".join(str(v) for v in value)
    return str(value)


def _show_defaults(p: argparse.ArgumentParser, config_cls: type) -> None:
    """Append "(default: X)" to the help of every option that maps to a field of ``config_cls``,
    X read from the dataclass, so the help cannot drift from the code. Flags say on / off."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    defaults["threads"] = DEFAULT_THREADS
    for a in p._actions:
        if a.dest not in defaults or not a.help or a.help == argparse.SUPPRESS:
            continue
        value = defaults[a.dest]
        if a.nargs == 0:  # store_true / store_false: on when the flag's value is the default
            text = "on" if a.const == value else "off"
        else:
            text = _format_default(value)
        a.help = f"{a.help} (default: {text})"


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _four_ints(text: str) -> tuple[int, ...]:
    vals = _ints(text)
    if len(vals) != 4:
        raise argparse.ArgumentTypeError(f"expected 4 comma-separated integers, got {text!r}")
    return vals


def _add_run_options(p: argparse.ArgumentParser, size_help: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--data", default=None, help=_DATA_HELP)
    g.add_argument("--out", required=True, help="run directory (checkpoints, samples, log.jsonl)")
    g.add_argument("--steps", type=int, default=None, help="total training iterations")
    g.add_argument("--batch", type=int, default=None, help="minibatch size")
    g.add_argument("--size", type=int, default=None, help=size_help)
    g.add_argument("--lr", type=float, default=None, help="learning rate")
    g.add_argument("--device", default=None, help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    g.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --out (its stored configuration "
                        "wins, except --steps, --device and the intervals)")
    g.add_argument("--seed", type=int, default=None, help="seed of init, latents and shuffling")
    g.add_argument("--mirror", action="store_true", default=None, help="random horizontal flips")
    g.add_argument("--sample-every", type=int, default=None, help="steps between sample grids")
    g.add_argument("--save-every", type=int, default=None, help="steps between checkpoints")
    g.add_argument("--log-every", type=int, default=None, help="steps between log lines")
    g.add_argument("--keep", dest="keep_checkpoints", type=int, default=None,
                   help="checkpoints to keep (0 = all)")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="hide the progress bar")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads; on a machine shared with other jobs 1 is fastest, "
                        "use as many as there are idle cores otherwise")


def _add_generator_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generator architecture")
    g.add_argument("--style-dim", type=int, default=None, help="width of z / w / W+ rows")
    g.add_argument("--n-mlp", type=int, default=None, help="mapping layers")
    g.add_argument("--lr-mlp", type=float, default=None, help="mapping lr multiplier")
    g.add_argument("--channels", default=None,
                   help='generator widths "4:256,8:256,16:128,32:64,64:32", or "narrow" (32 at 4 and '
                        '8 px, then 16), "small" (min(256, max(16, 2048 // res))) or '
                        '"standard" (rosinality)')
    g.add_argument("--d-channels", default=None,
                   help="discriminator widths (same forms; none = the generator's)")


def _add_encoder_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encoder architecture")
    g.add_argument("--encoder-type", choices=("Encoder4Editing", "GradualStyleEncoder"),
                   default=None, help="e4e or pSp")
    g.add_argument("--input-size", type=int, default=None,
                   help="encoder input size, multiple of 16 (0 = min(256, size))")
    g.add_argument("--widths", type=_four_ints, default=None,
                   help="IR-SE stage widths, e.g. 32,48,64,128 (official 64,128,256,512)")
    g.add_argument("--units", type=_four_ints, default=None,
                   help="units per stage, e.g. 1,2,2,1 (IR-SE50: 3,4,14,3)")
    g.add_argument("--stem", type=int, default=None, help="input-layer channels")
    g.add_argument("--mode", choices=("ir_se", "ir"), default=None, help="trunk unit type")


def _kwargs(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    out = {}
    for n in names:
        v = getattr(args, n, None)
        if v is not None:
            out[n] = v
    return out


_RUN = ["steps", "batch", "size", "lr", "device", "seed", "mirror", "sample_every", "save_every",
        "log_every", "keep_checkpoints", "progress", "data"]
_GEN = ["style_dim", "n_mlp", "lr_mlp", "channels", "d_channels"]
_ENC = ["encoder_type", "input_size", "widths", "units", "stem", "mode"]


def _setup(args: argparse.Namespace) -> None:
    import torch

    from ._common import check_device, check_output

    check_device(args.device, allow_auto=True)
    check_output(args.out, "dir", what="--out", existing_dir_ok=True)
    torch.set_num_threads(args.threads or DEFAULT_THREADS)
    if not args.data and not args.resume:
        raise ValueError("--data is required (unless --resume finds a checkpoint)")


def _report(trainer: Any, what: str) -> int:
    last = trainer.log.history[-1] if trainer.log.history else {}
    msg = " ".join(f"{k}={v:.4g}" for k, v in last.items() if k not in ("step", "time"))
    logger.info("%s finished at step %d (%s); outputs in %s", what, trainer.step, msg,
                trainer.out_dir)
    return 0


# ---------------------------------------------------------------------------- commands
def _train_generator(args: argparse.Namespace) -> int:
    from ..training import StyleGAN2TrainConfig, StyleGAN2Trainer

    _setup(args)
    kw = _kwargs(args, _RUN + _GEN + ["channel_multiplier", "r1", "d_reg_every",
                                     "path_regularize", "g_reg_every", "mixing", "ema_kimg",
                                     "n_sample"])
    cfg = StyleGAN2TrainConfig(**kw)
    trainer = StyleGAN2Trainer(cfg, args.data, args.out, resume=args.resume)
    trainer.train()
    return _report(trainer, "train-generator")


def _train_encoder(args: argparse.Namespace) -> int:
    from ..training import E4ETrainConfig, E4ETrainer

    _setup(args)
    kw = _kwargs(args, _RUN + _ENC + [
        "stylegan_weights", "l2_lambda", "l1_lambda", "msssim_lambda", "dfeat_lambda",
        "delta_norm", "delta_norm_lambda", "progressive_start", "progressive_step_every",
        "w_discriminator_lambda", "w_discriminator_lr", "r1", "d_reg_every", "use_w_pool",
        "start_from_latent_avg", "noise_mode", "n_sample"])
    if not kw.get("stylegan_weights") and not args.resume:
        raise ValueError("--generator is required: a StyleGAN2 checkpoint (rosinality layout, "
                         "e.g. the generator.pt of train-generator or train-autoencoder)")
    cfg = E4ETrainConfig(**kw)
    trainer = E4ETrainer(cfg, args.data, args.out, resume=args.resume)
    trainer.train()
    return _report(trainer, "train-encoder")


def _train_autoencoder(args: argparse.Namespace) -> int:
    from ..training import AutoencoderTrainConfig, AutoencoderTrainer

    _setup(args)
    kw = _kwargs(args, _RUN + _GEN + _ENC + [
        "encoder_lr", "lr_decay_start", "lr_final", "mse_lambda", "l1_lambda", "msssim_lambda",
        "delta_norm_lambda",
        "adv_lambda", "adv_start", "adv_every", "d_lr", "r1", "d_reg_every", "mapping_lambda",
        "mapping_lr",
        "ema_decay", "noise_mode", "n_sample", "color", "cycle_lambda", "cycle_mode",
        "cycle_every", "cycle_batch", "cycle_sd", "cycle_channels", "cycle_adv"])
    cfg = AutoencoderTrainConfig(**kw)
    trainer = AutoencoderTrainer(cfg, args.data, args.out, resume=args.resume)
    trainer.train()
    return _report(trainer, "train-autoencoder")


# ---------------------------------------------------------------------------- registration
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train-generator``, ``train-encoder`` and ``train-autoencoder``."""
    from ..training import AutoencoderTrainConfig, E4ETrainConfig, StyleGAN2TrainConfig

    p = subparsers.add_parser(
        "train-generator",
        help="train a StyleGAN2 generator adversarially (rosinality recipe)",
        description="Train a StyleGAN2 generator and discriminator (non-saturating loss, lazy R1, "
                    "path-length regularisation, style mixing, EMA). Checkpoints are rosinality "
                    "files readable by load_generator / load_discriminator. On a CPU prefer "
                    "train-autoencoder.")
    _add_run_options(p, "image resolution")
    _add_generator_options(p)
    g = p.add_argument_group("losses")
    g.add_argument("--channel-multiplier", type=int, default=None,
                   help="rosinality channel multiplier (with --channels standard)")
    g.add_argument("--r1", type=float, default=None, help="R1 weight")
    g.add_argument("--d-reg-every", type=int, default=None, help="R1 interval")
    g.add_argument("--path-regularize", type=float, default=None,
                   help="path-length weight, 0 = off")
    g.add_argument("--g-reg-every", type=int, default=None,
                   help="path-length interval")
    g.add_argument("--mixing", type=float, default=None, help="style-mixing probability")
    g.add_argument("--ema-kimg", type=float, default=None, help="g_ema half-life, kimg")
    g.add_argument("--n-sample", type=int, default=None, help="images per sample grid")
    _show_defaults(p, StyleGAN2TrainConfig)
    p.set_defaults(func=_train_generator)

    p = subparsers.add_parser(
        "train-encoder",
        help="train an e4e encoder on a frozen generator",
        description="Train an e4e (or pSp) encoder against a frozen StyleGAN2 generator: pixel "
                    "losses, MS-SSIM and/or discriminator features (no downloaded weights), "
                    "delta regularisation with progressive stages, optional latent "
                    "discriminator. Checkpoints use the official e4e layout (load_inverter).")
    _add_run_options(p, "training image size (0 = the generator's)")
    p.add_argument("--generator", dest="stylegan_weights", default=None,
                   help="StyleGAN2 checkpoint to invert (rosinality layout)")
    _add_encoder_options(p)
    g = p.add_argument_group("losses")
    g.add_argument("--l2-lambda", type=float, default=None, help="MSE weight")
    g.add_argument("--l1-lambda", type=float, default=None, help="L1 weight")
    g.add_argument("--msssim-lambda", type=float, default=None, help="1 - MS-SSIM weight")
    g.add_argument("--dfeat-lambda", type=float, default=None,
                   help="discriminator-feature weight (needs 'd' in --generator)")
    g.add_argument("--delta-norm", type=float, default=None, help="delta norm order")
    g.add_argument("--delta-norm-lambda", type=float, default=None, help="delta weight")
    g.add_argument("--progressive-start", type=int, default=None,
                   help="step of the first delta stage (default: no progressive training)")
    g.add_argument("--progressive-step-every", type=int, default=None,
                   help="steps between delta stages")
    g.add_argument("--w-discriminator-lambda", type=float, default=None,
                   help="latent discriminator weight (0 = off; e4e README: 0.1)")
    g.add_argument("--w-discriminator-lr", type=float, default=None, help="its lr")
    g.add_argument("--r1", type=float, default=None, help="latent R1 weight")
    g.add_argument("--d-reg-every", type=int, default=None, help="R1 interval")
    g.add_argument("--no-w-pool", dest="use_w_pool", action="store_false", default=None,
                   help="no latent-code history pool")
    g.add_argument("--no-start-from-latent-avg", dest="start_from_latent_avg",
                   action="store_false", default=None, help="do not add latent_avg")
    g.add_argument("--noise-mode", choices=("const", "random"), default=None,
                   help="generator noise during training")
    g.add_argument("--n-sample", type=int, default=None, help="images per sample grid")
    _show_defaults(p, E4ETrainConfig)
    p.set_defaults(func=_train_encoder)

    p = subparsers.add_parser(
        "train-autoencoder",
        help="train encoder + generator jointly as an autoencoder (CPU recipe)",
        description="Train an e4e encoder and a StyleGAN2 generator jointly to reconstruct "
                    "images (MSE + L1 + MS-SSIM, e4e delta regulariser, light adversarial term "
                    "from --adv-start, mapping fitted to the encoder codes by sliced "
                    "Wasserstein). The fallback when adversarial training cannot converge in "
                    "the compute budget. Writes inverter.pt (e4e layout) and generator.pt "
                    "(rosinality layout).")
    _add_run_options(p, "image resolution")
    _add_generator_options(p)
    _add_encoder_options(p)
    g = p.add_argument_group("losses")
    g.add_argument("--encoder-lr", type=float, default=None, help="encoder lr (0 = --lr)")
    g.add_argument("--mse-lambda", type=float, default=None, help="MSE weight")
    g.add_argument("--l1-lambda", type=float, default=None, help="L1 weight")
    g.add_argument("--msssim-lambda", type=float, default=None, help="1 - MS-SSIM weight")
    g.add_argument("--delta-norm-lambda", type=float, default=None, help="delta weight")
    g.add_argument("--adv-lambda", type=float, default=None,
                   help="adversarial weight (0 = pure autoencoder)")
    g.add_argument("--adv-start", type=float, default=None,
                   help="first adversarial step, or a fraction of --steps when below 1")
    g.add_argument("--adv-every", type=int, default=None,
                   help="adversarial term / discriminator step every N steps")
    g.add_argument("--d-lr", type=float, default=None, help="discriminator lr (0 = --lr)")
    g.add_argument("--r1", type=float, default=None, help="R1 weight")
    g.add_argument("--d-reg-every", type=int, default=None, help="R1 interval")
    g.add_argument("--mapping-lambda", type=float, default=None,
                   help="sliced-Wasserstein fit of the mapping to encoder codes (0 = mapping "
                        "left untrained)")
    g.add_argument("--mapping-lr", type=float, default=None, help="mapping lr")
    g.add_argument("--ema-decay", type=float, default=None,
                   help="EMA of encoder and generator (0 = off)")
    g.add_argument("--lr-decay-start", type=float, default=None,
                   help="fraction of --steps after which the lr decays linearly (1.0 = constant)")
    g.add_argument("--lr-final", type=float, default=None,
                   help="final lr ratio of that decay")
    g.add_argument("--noise-mode", choices=("const", "random"), default=None,
                   help="generator noise during training")
    g.add_argument("--n-sample", type=int, default=None, help="images per sample grid")
    g.add_argument("--color", choices=("rgb", "gray", "auto"), default=None,
                   help="gray ties the toRGB output rows (R = G = B, toRGB channels change "
                        "brightness only); auto = gray when every training image is gray")
    g = p.add_argument_group("cycle regulariser (concepts that survive a round trip)")
    g.add_argument("--cycle-lambda", type=float, default=None, help="weight (0 = off)")
    g.add_argument("--cycle-mode", choices=("mix", "style"), default=None,
                   help="mix: W+ rows of two images mixed at a random layer cut; style: a few "
                        "random Ψ channels edited by ±--cycle-sd standard deviations; either "
                        "way the encoder must read the edited code back from its render")
    g.add_argument("--cycle-every", type=int, default=None, help="apply every N steps")
    g.add_argument("--cycle-batch", type=float, default=None, help="share of the batch used")
    g.add_argument("--cycle-sd", type=float, default=None,
                   help="style mode: edit size in batch standard deviations")
    g.add_argument("--cycle-channels", type=int, default=None,
                   help="style mode: channels edited per image")
    g.add_argument("--no-cycle-adv", dest="cycle_adv", action="store_false", default=None,
                   help="do not apply the adversarial term to the cycle's renders")
    _show_defaults(p, AutoencoderTrainConfig)
    p.set_defaults(func=_train_autoencoder)
