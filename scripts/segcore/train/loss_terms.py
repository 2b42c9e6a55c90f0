"""Per-output segmentation losses: cross-entropy, binary cross-entropy, focal and soft Dice.

Every function takes ``logits`` ``(N, K, h, w)`` float and ``target`` ``(N, h, w)`` integer class indices
already aligned with the logits (see :mod:`segcore.train.losses` for cropping and deep supervision) and returns a
scalar tensor. A single-channel output (``K == 1``) is read as the logit of class 1 against class 0, so every
loss here also works for one-foreground-class networks.

Pixel weighting (``weight_map`` ``(N, h, w)`` float, non-negative): the loss is the *normalised* weighted mean
``sum(w * loss_pixel) / sum(w)``, the convention of ``torch.nn.functional.cross_entropy`` with class weights.
It keeps the loss on the same scale whatever the weights' overall size (the paper's maps reach w0 + w_c ~ 11
near touching borders), so learning rates need not be retuned when w0 changes. Without a map the loss is the
plain mean over pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_logits(logits: Tensor) -> Tensor:
    """``(N, K, h, w)`` logits for a softmax over K >= 2 classes; K == 1 becomes ``[0, z]``.

    ``softmax([0, z]) == [1 - sigmoid(z), sigmoid(z)]``, so a one-channel network is a two-class one.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (N, K, h, w), got shape {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits


def weighted_mean(pixel_losses: Tensor, weight_map: Tensor | None = None) -> Tensor:
    """Mean of ``pixel_losses`` ``(N, h, w)``, or ``sum(w * loss) / sum(w)`` with a same-shape weight map.

    Raises ValueError if the shapes differ or the weights sum to zero.
    """
    if weight_map is None:
        return pixel_losses.mean()
    if weight_map.shape != pixel_losses.shape:
        raise ValueError(
            f"weight map shape {tuple(weight_map.shape)} differs from the loss shape {tuple(pixel_losses.shape)}"
        )
    total_weight = weight_map.sum()
    if not total_weight > 0:
        raise ValueError(f"weight map sums to {float(total_weight)}; it needs a positive sum")
    return (weight_map * pixel_losses).sum() / total_weight


def cross_entropy(logits: Tensor, target: Tensor, weight_map: Tensor | None = None) -> Tensor:
    """Softmax cross-entropy per pixel, averaged (weighted by ``weight_map`` when given)."""
    pixel_losses = F.cross_entropy(class_logits(logits), target.long(), reduction="none")
    return weighted_mean(pixel_losses, weight_map)


def binary_cross_entropy(logits: Tensor, target: Tensor, weight_map: Tensor | None = None) -> Tensor:
    """Sigmoid cross-entropy of one foreground class; ``target`` must hold only 0 and 1.

    ``logits`` is ``(N, 1, h, w)`` (the foreground logit) or ``(N, 2, h, w)`` (background, foreground), where
    the foreground logit is their difference ``l1 - l0`` because ``softmax([l0, l1])[1] == sigmoid(l1 - l0)``.
    """
    if logits.ndim != 4 or logits.shape[1] not in (1, 2):
        raise ValueError(f"binary cross-entropy needs logits (N, 1 or 2, h, w), got {tuple(logits.shape)}")
    if target.numel() and (int(target.max()) > 1 or int(target.min()) < 0):
        raise ValueError("binary cross-entropy needs a target of 0 (background) and 1 (foreground) only")
    foreground_logit = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
    pixel_losses = F.binary_cross_entropy_with_logits(
        foreground_logit, target.to(foreground_logit.dtype), reduction="none"
    )
    return weighted_mean(pixel_losses, weight_map)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    weight_map: Tensor | None = None,
    *,
    gamma: float = 2.0,
    alpha: tuple[float, ...] | None = None,
) -> Tensor:
    """Focal loss ``-alpha_t * (1 - p_t)**gamma * log p_t`` (Lin et al. 2017), averaged like cross-entropy.

    ``log p_t`` comes from ``log_softmax``, so it stays finite (about -200 at logits of +-100) with no
    clipping of probabilities. ``1 - p_t`` is computed as ``-expm1(log p_t)`` (accurate when p_t is near 1)
    and floored at the smallest normal float: only so that ``pow``'s derivative stays finite when p_t rounds
    to exactly 1 and ``gamma < 1``; the floor changes the loss by at most ``tiny**gamma * |log p_t|``, with
    ``log p_t`` then 0. ``alpha``: one weight per class (length K, or 2 for a one-channel output) or None for
    none. With ``gamma == 0`` and no alpha this is cross-entropy.
    """
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    scores = class_logits(logits)
    labels = target.long()
    log_pt = F.log_softmax(scores, dim=1).gather(1, labels[:, None]).squeeze(1)
    pixel_losses = -log_pt
    if gamma > 0:
        one_minus_pt = (-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).tiny)
        pixel_losses = one_minus_pt.pow(gamma) * pixel_losses
    if alpha is not None:
        if len(alpha) != scores.shape[1]:
            raise ValueError(f"focal alpha has {len(alpha)} entries for {scores.shape[1]} classes")
        pixel_losses = torch.as_tensor(alpha, dtype=scores.dtype, device=scores.device)[labels] * pixel_losses
    return weighted_mean(pixel_losses, weight_map)


def soft_dice_loss(logits: Tensor, target: Tensor, *, include_background: bool = True, smooth: float = 1.0) -> Tensor:
    """``1 - mean_c Dice_c`` with soft Dice per class from softmax probabilities, pooled over the batch.

    ``Dice_c = (2 * sum(p_c * y_c) + smooth) / (sum(p_c) + sum(y_c) + smooth)``, sums over all images and
    pixels (one Dice per class for the whole batch: steadier than per-image Dice, where a class absent from
    one image gives 0/0). ``smooth`` (default 1: one pixel's worth, negligible beside batch pixel counts)
    makes a class absent from both prediction and target score Dice 1 instead of 0/0. A perfect prediction
    gives 0. ``include_background=False`` drops class 0 from the mean. Pixel weight maps do not apply to Dice.
    """
    scores = class_logits(logits)
    num_classes = scores.shape[1]
    probabilities = F.softmax(scores, dim=1)
    one_hot = F.one_hot(target.long(), num_classes).permute(0, 3, 1, 2).to(probabilities.dtype)
    summed_dims = (0, 2, 3)
    overlap = (probabilities * one_hot).sum(summed_dims)
    sizes = probabilities.sum(summed_dims) + one_hot.sum(summed_dims)
    dice_per_class = (2 * overlap + smooth) / (sizes + smooth)
    if not include_background:
        dice_per_class = dice_per_class[1:]
    return 1 - dice_per_class.mean()
