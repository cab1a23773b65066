import pytest
import torch

from loss import EPS, alpha_loss, composition_loss, stage_loss


def batch_2x2():
    """One 2x2 sample: two unknown pixels (top row), two known."""
    trimap = torch.tensor([[[[128., 128.], [255., 0.]]]])
    alpha = torch.tensor([[[[0.25, 1.0], [1.0, 0.0]]]])
    fg = torch.ones(1, 3, 2, 2)
    bg = torch.zeros(1, 3, 2, 2)
    return {'trimap': trimap, 'alpha': alpha, 'fg': fg, 'bg': bg}


def test_perfect_prediction_costs_only_eps():
    b = batch_2x2()
    assert alpha_loss(b['alpha'], b['alpha'], b['trimap']).item() == pytest.approx(EPS)
    assert composition_loss(b['alpha'], b['alpha'], b['fg'], b['bg'], b['trimap']).item() == pytest.approx(EPS)


def test_alpha_loss_is_mean_abs_error_over_unknown_pixels():
    b = batch_2x2()
    pred = torch.tensor([[[[0.75, 0.5], [0.0, 1.0]]]])  # errors 0.5, 0.5 unknown; 1, 1 known
    assert alpha_loss(pred, b['alpha'], b['trimap']).item() == pytest.approx(0.5, abs=1e-6)


def test_known_pixels_never_count():
    b = batch_2x2()
    pred = b['alpha'].clone()
    pred[0, 0, 1, :] = torch.tensor([0.0, 1.0])  # wrong only where the trimap is known
    assert alpha_loss(pred, b['alpha'], b['trimap']).item() == pytest.approx(EPS)
    assert composition_loss(pred, b['alpha'], b['fg'], b['bg'], b['trimap']).item() == pytest.approx(EPS)


def test_composition_loss_scales_with_fg_bg_contrast():
    b = batch_2x2()
    b['fg'][:, 0] = 0.5  # red channel: fg - bg = 0.5; green, blue: 1
    pred = b['alpha'] + torch.tensor([[[[0.2, -0.4], [0.0, 0.0]]]])
    # per unknown pixel |d| * (0.5 + 1 + 1); mean over 2 pixels x 3 channels
    expected = (0.2 + 0.4) * 2.5 / 6
    loss = composition_loss(pred, b['alpha'], b['fg'], b['bg'], b['trimap'])
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_no_unknown_pixel_gives_zero_not_nan():
    b = batch_2x2()
    b['trimap'] = torch.tensor([[[[255., 0.], [255., 0.]]]])
    loss = stage_loss(torch.rand(1, 1, 2, 2, requires_grad=True), None, b, stage=1)
    assert loss.item() == 0.0
    assert torch.isfinite(loss)


def test_stage_losses_score_the_right_output():
    b = batch_2x2()
    good, bad = b['alpha'].clone(), 1 - b['alpha']
    assert stage_loss(good, bad, b, stage=1).item() < 1e-5
    assert stage_loss(good, bad, b, stage=2).item() > 0.1
    assert stage_loss(bad, good, b, stage=2).item() < 1e-5
    assert stage_loss(good, bad, b, stage=3).item() > 0.1
    assert stage_loss(bad, good, b, stage=3).item() > 0.1
    assert stage_loss(good, good, b, stage=3).item() < 1e-5
    with pytest.raises(ValueError):
        stage_loss(good, good, b, stage=4)
