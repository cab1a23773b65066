"""The losses of Deep Image Matting, counted over the unknown region of the training trimap only.

Tensors are N x C x H x W: alpha, fg and bg in [0, 1], trimap holding 0 / 128 / 255.
"""
import torch

EPS = 1e-6


def _masked_mean(diff, unknown):
    """Mean of sqrt(diff^2 + eps^2) over unknown pixels (and channels); 0 when none is unknown."""
    loss = torch.sqrt(diff.float() ** 2 + EPS ** 2) * unknown
    count = unknown.sum() * diff.shape[1]
    return loss.sum() / count.clamp(min=1)


def alpha_loss(pred_alpha, alpha, trimap):
    unknown = (trimap == 128).float()
    return _masked_mean(pred_alpha - alpha, unknown)


def composition_loss(pred_alpha, alpha, fg, bg, trimap):
    """The composite of the prediction against the one recomposed, in float, from the same
    fg, bg and alpha as the sample."""
    unknown = (trimap == 128).float()
    pred_alpha = pred_alpha.float()
    # pred*fg + (1-pred)*bg - (alpha*fg + (1-alpha)*bg) == (pred - alpha) * (fg - bg)
    return _masked_mean((pred_alpha - alpha) * (fg - bg), unknown)


def stage_loss(alpha_ed, alpha_refined, batch, stage, wl_weight=0.5):
    """The loss of one stage (the table in train.py's docstring); batch holds alpha, fg, bg and trimap."""
    alpha, fg, bg, trimap = batch['alpha'], batch['fg'], batch['bg'], batch['trimap']

    def overall(pred):
        return (wl_weight * alpha_loss(pred, alpha, trimap)
                + (1 - wl_weight) * composition_loss(pred, alpha, fg, bg, trimap))

    if stage == 0:
        return alpha_loss(alpha_ed, alpha, trimap)
    if stage == 1:
        return overall(alpha_ed)
    if stage == 2:
        return alpha_loss(alpha_refined, alpha, trimap)
    if stage == 3:
        return overall(alpha_ed) + alpha_loss(alpha_refined, alpha, trimap)
    raise ValueError(f"stage must be 0..3, got {stage}")
