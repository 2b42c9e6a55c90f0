"""Training curves (loss, validation Dice, learning rate) as a PNG: the train rule's curves.png and the
report's comparison of all experiments."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from segcore.io import atomic_path  # noqa: E402


def plot_history(histories: dict[str, pd.DataFrame], path: str | os.PathLike) -> None:
    """Training curves (loss, validation Dice, learning rate) of one or more experiments, as PNG."""
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    for name, history in histories.items():
        (line,) = axes[0].plot(history["epoch"], history["train_loss"], label=f"{name} train")
        axes[0].plot(history["epoch"], history["val_loss"], "--", color=line.get_color(), label=f"{name} val")
        axes[1].plot(history["epoch"], history["val_dice"], color=line.get_color(), label=name)
        if "image_val_dice" in history:  # whole-image validation, on some epochs only
            images = history.dropna(subset=["image_val_dice"])
            axes[1].plot(images["epoch"], images["image_val_dice"], "o", color=line.get_color(),
                         label=f"{name} whole images")  # fmt: skip
        axes[2].plot(history["epoch"], history["learning_rate"], color=line.get_color(), label=name)
    for axis, title in zip(axes, ("loss", "validation mean foreground Dice", "learning rate")):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    axes[2].set_yscale("log")
    with atomic_path(path, ".png") as tmp:
        # A fixed metadata dict keeps matplotlib's version/date out of the file, so reruns are identical.
        figure.savefig(tmp, dpi=100, metadata={"Software": None})
    plt.close(figure)
