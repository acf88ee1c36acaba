"""The `mammo-keras` command: parses arguments and calls the library.

User mistakes end in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from typing import Callable, Sequence

from mammo_keras import __version__

# Subcommands of the public interface that later milestones fill in: name -> (help, what brings it).
PLANNED = {
    "run": ("run an experiment grid from a YAML config", "experiments (training milestone)"),
    "train": ("train a model from a config", "the training milestone"),
    "evaluate": ("multi-metric evaluation of a model", "the evaluation milestone"),
    "predict": ("class probabilities for image files", "the training milestone"),
    "explain": ("Grad-CAM heat-maps", "the interpretability milestone"),
    "export": ("SavedModel / TFLite export", "the deployment milestone"),
    "data": ("synth | inspect | split | audit datasets", "the data milestone"),
    "dashboard": ("the interactive clinical dashboard", "the interpretability milestone"),
    "bench": ("performance benchmarks", "the performance milestone"),
}


class UserError(Exception):
    """A mistake of the user's: reported as one line, exit status 2."""


def _version_text() -> str:
    parts = [f"mammo-keras {__version__}"]
    for package in ("keras", "tensorflow"):
        try:
            parts.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{package} not installed")
    return ", ".join(parts)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _cmd_models(args: argparse.Namespace) -> int:
    """Print the backbones and heads; with --count-params build each and count its weights."""
    from mammo_keras.models import BACKBONES, HEADS, build_classifier

    if not args.count_params:
        print(f"{'backbone':<15}{'channels':>9}{'scaling':>11}{'min px':>8}{'imagenet':>10}")
        for spec in BACKBONES.values():
            print(f"{spec.name:<15}{spec.channels:>9}{spec.scaling:>11}{spec.min_size:>8}"
                  f"{'yes' if spec.has_imagenet else 'no':>10}")
        print(f"heads: {', '.join(HEADS)}")
        return 0
    size = args.image_size
    print(f"input {size}x{size}x1, {args.num_classes} classes")
    print(f"{'backbone':<15}{'head':<9}{'parameters':>13}{'embedding':>11}")
    for spec in BACKBONES.values():
        for head in HEADS:
            model = build_classifier(spec.name, head, args.num_classes, (size, size, 1))
            print(f"{spec.name:<15}{head:<9}{model.count_params():>13,}"
                  f"{model.get_layer('embedding').output.shape[-1]:>11}", flush=True)
    return 0


def _planned(name: str, milestone: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        raise UserError(f"'mammo-keras {name}' is not available yet in version {__version__}; "
                        f"it comes with {milestone}.")
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mammo-keras",
        description="Keras 3 / TensorFlow reference implementations of mammography papers: "
                    "GAGM / SEVector / FSL classifiers, breast density, MorphHR, HDS U-Net.")
    parser.add_argument("--version", action="version", version=_version_text())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = commands.add_parser("models", help="list backbones and heads (and their sizes)",
                                 description="List the backbones and heads of build_classifier.")
    models.add_argument("--count-params", action="store_true",
                        help="build every backbone x head and print its parameter count")
    models.add_argument("--image-size", type=_positive_int, default=224, help="input size in px (224)")
    models.add_argument("--num-classes", type=_positive_int, default=3, help="number of classes (3)")
    models.set_defaults(handler=_cmd_models)

    for name, (summary, milestone) in PLANNED.items():
        planned = commands.add_parser(name, help=f"{summary} (not available yet)",
                                      description=f"{summary}. Not available yet: it comes with "
                                                  f"{milestone}.")
        planned.set_defaults(handler=_planned(name, milestone))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mammo-keras` console script; returns the exit status."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command not in PLANNED:  # planned commands ignore their future options
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.handler(args)
    except (UserError, ValueError, FileNotFoundError) as error:
        print(f"mammo-keras {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
