"""Segment images with a model bundle, without Snakemake (the command ``segcore-segment``)::

    PYTHONPATH=scripts python -m segcore.segment results/<dataset>/<experiment>/bundle IMAGE_OR_FOLDER... -o OUT
        [--tta none|flips|d4] [--probabilities] [--device auto|cpu|cuda]

Each input (PNG, JPEG, TIFF, a folder of them, a multi-page TIFF stack) gets a class mask in ``OUT``: a PNG
for a single image, a uint8 TIFF stack for a stack, with ``--probabilities`` also float32 probabilities; the
masks equal rule predict's for the same images (layout and details in :mod:`segcore.predict.segment`). Bad
input stops with exit status 1 and one line naming the file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from segcore.io import InputError
from segcore.model.tta import TTA_MODES
from segcore.predict.segment import segment


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="segcore-segment", description="Segment images with a model bundle written by the pipeline."
    )
    parser.add_argument("bundle", help="the bundle folder (results/<dataset>/<experiment>/bundle)")
    parser.add_argument("inputs", nargs="+", help="PNG, JPEG or TIFF files (multi-page: a stack), or folders")
    parser.add_argument("-o", "--output", required=True, help="folder for the masks (created if missing)")
    parser.add_argument("--tta", choices=TTA_MODES, default=None, help="test-time augmentation (default: card's)")
    parser.add_argument("--probabilities", action="store_true", help="also write float32 class probabilities")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0, or 1 after bad input, reported on stderr)."""
    arguments = parse_arguments(argv)
    try:
        written = segment(
            arguments.bundle, arguments.inputs, arguments.output, tta=arguments.tta,
            probabilities=arguments.probabilities, device=arguments.device, progress=True,
        )  # fmt: skip
    except InputError as error:
        print(f"segcore-segment: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} file(s) to {arguments.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
