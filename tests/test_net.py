import argparse

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import net


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return net.DIM().eval()


def inputs(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(1, 3, h, w, generator=g)
    trimap = torch.randint(0, 3, (1, 1, h, w), generator=g).float() * 127.5  # 0, 127.5, 255
    trimap[trimap == 127.5] = 128
    return img, trimap


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts(model):
    assert count(model.encoder) == 14_977_920
    assert count(model.decoder) == 11_222_081
    assert count(model.refiner) == 76_801
    assert count(model) == 26_276_802
    assert count(net.DIM(skip=True)) == 26_276_802  # the skip variant adds no parameters


def test_state_dict_reads_like_the_paper(model):
    keys = list(model.state_dict())
    assert len(keys) == 50  # 25 convolutions, weight and bias
    for key in ('encoder.conv1_1.weight', 'encoder.conv5_3.bias', 'encoder.conv6_1.weight',
                'decoder.deconv6_1.weight', 'decoder.deconv1_1.weight', 'decoder.deconv1.bias',
                'refiner.refine_conv1.weight', 'refiner.refine_pred.bias'):
        assert key in keys
    assert model.encoder.conv1_1.weight.shape == (64, 4, 3, 3)
    assert model.decoder.deconv5_1.weight.shape == (512, 512, 5, 5)
    assert model.encoder.conv6_1.weight.shape == (512, 512, 1, 1)
    assert list(net.DIM(skip=True).state_dict()) == keys


def test_xavier_init(model):
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            assert torch.all(layer.bias == 0)
            out_c, in_c, kh, kw = layer.weight.shape
            bound = (6 / ((in_c + out_c) * kh * kw)) ** 0.5
            assert layer.weight.abs().max() <= bound
    w = model.decoder.deconv5_1.weight
    bound = (6 / (2 * 512 * 25)) ** 0.5
    assert abs(w.std().item() - bound / 3 ** 0.5) < 0.01 * bound  # uniform(-b, b) has std b/sqrt(3)


@pytest.mark.parametrize('h, w', [(37, 53), (65, 97), (32, 32)])
def test_any_size(model, h, w):
    img, trimap = inputs(h, w)
    with torch.inference_mode():
        alpha_ed, alpha_refined = model(img, trimap)
        alpha_only, none = model(img, trimap, refine=False)
    assert alpha_ed.shape == alpha_refined.shape == (1, 1, h, w)
    assert none is None
    assert torch.equal(alpha_only, alpha_ed)
    for a in (alpha_ed, alpha_refined):
        assert torch.all((a >= 0) & (a <= 1))


def test_too_small_input_is_named(model):
    with pytest.raises(ValueError, match='at least 32x32'):
        model(*inputs(31, 64))


def test_skip_variant_changes_the_output(model):
    skip = net.DIM(skip=True).eval()
    skip.load_state_dict(model.state_dict())
    img, trimap = inputs(37, 53)
    with torch.inference_mode():
        a = model(img, trimap)[0]
        b = skip(img, trimap)[0]
    assert b.shape == (1, 1, 37, 53)
    assert not torch.allclose(a, b)


def test_refinement_is_a_residual_on_the_logits(model):
    refiner = net.Refiner()
    refiner.load_state_dict(model.refiner.state_dict())
    nn.init.zeros_(refiner.refine_pred.weight)
    nn.init.constant_(refiner.refine_pred.bias, 1.0)
    raw = torch.randn(1, 1, 33, 35)
    alpha = torch.sigmoid(raw)
    out = refiner(torch.randn(1, 3, 33, 35), alpha, raw)
    assert torch.allclose(out, torch.sigmoid(raw + 1.0))


def test_trimap_is_divided_by_255(model):
    # Only conv1_1's trimap channel sees the trimap: scaling that weight by 255 and feeding trimap / 255
    # must give the same alpha.
    img, trimap = inputs(40, 44)
    scaled = net.DIM().eval()
    scaled.load_state_dict(model.state_dict())
    with torch.no_grad():
        scaled.encoder.conv1_1.weight[:, 3] *= 255
    with torch.inference_mode():
        a = model(img, trimap)
        b = scaled(img, trimap / 255)
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)


def trainable(model):
    return {name.split('.')[0] for name, p in model.named_parameters() if p.requires_grad}


def test_set_stage(model):
    m = net.DIM()
    expected = {0: {'encoder', 'decoder'}, 1: {'encoder', 'decoder'}, 2: {'refiner'},
                3: {'encoder', 'decoder', 'refiner'}}
    for stage in (3, 2, 0, 1, 2, 3):  # also checks that a stage undoes the previous one
        net.set_stage(m, stage)
        assert trainable(m) == expected[stage]
    net.set_stage(m, 2)
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == 76_801
    with pytest.raises(ValueError):
        net.set_stage(m, 4)


def test_untrained_refiner_returns_the_encoder_decoder_alpha():
    m = net.DIM(init='he')
    img, trimap = inputs(64, 64)
    with torch.no_grad():
        alpha_ed, alpha_refined = m(img, trimap)
    assert alpha_ed.std() > 0
    assert torch.equal(alpha_ed, alpha_refined)


def test_stage_2_backward_reaches_only_the_refiner():
    m = net.DIM()
    nn.init.xavier_uniform_(m.refiner.refine_pred.weight)  # as after a step: zero weights pass no gradient back
    net.set_stage(m, 2)
    img, trimap = inputs(32, 36)
    alpha_ed, alpha_refined = m(img, trimap)
    net.output_for_stage(alpha_ed, alpha_refined, 2).mean().backward()
    assert all(p.grad is None for p in m.encoder.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.refiner.parameters())


def test_in_place_relus_give_the_same_gradients(monkeypatch):
    # Autograd raises if an in-place op overwrote a tensor that backward needs; also compare the gradients
    # with those of the same network built on out-of-place ReLUs.
    torch.manual_seed(1)
    m = net.DIM(skip=True)
    img, trimap = inputs(32, 32)

    def grads():
        m.zero_grad()
        sum(a.sum() for a in m(img, trimap)).backward()
        return [p.grad.clone() for p in m.parameters()]

    in_place = grads()
    monkeypatch.setattr(torch.nn.functional, 'relu_', torch.nn.functional.relu)
    out_of_place = grads()
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(in_place, out_of_place))
    assert sum(g.abs().sum() for g in in_place) > 0


def test_output_for_stage():
    ed, refined = torch.zeros(1), torch.ones(1)
    assert net.output_for_stage(ed, refined, 0) is ed
    assert net.output_for_stage(ed, refined, 1) is ed
    assert net.output_for_stage(ed, refined, 2) is refined
    assert net.output_for_stage(ed, refined, 3) is refined
    with pytest.raises(ValueError):
        net.output_for_stage(ed, None, 3)


def test_channels_last_and_autocast(model):
    img, trimap = inputs(48, 40)
    with torch.inference_mode():
        ref = model(img, trimap)
        cl = net.DIM().eval()
        cl.load_state_dict(model.state_dict())
        cl = cl.to(memory_format=torch.channels_last)
        out = cl(img.contiguous(memory_format=torch.channels_last), trimap)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(img, trimap)
    for a, b in zip(ref, out):
        assert torch.allclose(a, b, atol=1e-5)
    for a, b in zip(ref, low):
        assert torch.isfinite(b).all() and (a - b.float()).abs().max() < 0.05


def conv_macs_by_hooks(model, h, w):
    macs = []

    def hook(layer, args, out):
        macs.append(out.numel() * layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1])

    handles = [layer.register_forward_hook(hook) for layer in model.modules() if isinstance(layer, nn.Conv2d)]
    with torch.inference_mode():
        model(*inputs(h, w))
    for handle in handles:
        handle.remove()
    return sum(macs), len(macs)


@pytest.mark.parametrize('h, w', [(37, 53), (64, 96)])
def test_count_flops_matches_the_forward(model, h, w):
    macs, layers = conv_macs_by_hooks(model, h, w)
    assert layers == 25
    assert net.count_flops(h, w) == macs
    assert net.count_flops(h, w, refine=False) < macs


def test_count_flops_value():
    # 320x320 by hand: per-pixel MACs at each scale (full, 1/2, 1/4, 1/8, 1/16, 1/32), decoder and refiner.
    full = 320 * 320
    enc = full * (4 * 64 * 9 + 64 * 64 * 9) + full / 4 * (64 * 128 + 128 * 128) * 9 \
        + full / 16 * (128 * 256 + 2 * 256 * 256) * 9 + full / 64 * (256 * 512 + 2 * 512 * 512) * 9 \
        + full / 256 * 3 * 512 * 512 * 9 + full / 1024 * 512 * 512
    dec = full / 1024 * 512 * 512 + full / 256 * 512 * 512 * 25 + full / 64 * 512 * 256 * 25 \
        + full / 16 * 256 * 128 * 25 + full / 4 * 128 * 64 * 25 + full * (64 * 64 + 64) * 25
    ref = full * (4 * 64 + 2 * 64 * 64 + 64) * 9
    assert net.count_flops(320, 320) == enc + dec + ref == 68_275_404_800


def test_checkpoint_round_trip(tmp_path, model):
    path = tmp_path / 'sub' / 'ckpt.pth'
    ckpt = {'format': net.CHECKPOINT_FORMAT, 'model': model.state_dict(), 'stage': 2, 'step': 7}
    net.save_checkpoint(ckpt, str(path))
    assert sorted(p.name for p in path.parent.iterdir()) == ['ckpt.pth']  # no .tmp left behind
    back = net.load_checkpoint(str(path))
    assert back['stage'] == 2 and back['step'] == 7
    assert all(torch.equal(back['model'][k], v) for k, v in model.state_dict().items())
    net.DIM().load_state_dict(back['model'])


def test_load_checkpoint_errors(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='checkpoint not found: .*nope.pth'):
        net.load_checkpoint(missing)
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint at all')
    with pytest.raises(ValueError, match='garbage.pth: cannot read'):
        net.load_checkpoint(str(garbage))
    whole = tmp_path / 'whole.pth'
    torch.save({'model': {'w': torch.zeros(1000)}}, whole)
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(whole.read_bytes()[:2000])  # a copy that stopped half way
    with pytest.raises(ValueError, match=r'cut.pth: cannot read it as a torch file \(a zip file, damaged or cut short'):
        net.load_checkpoint(str(cut))
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(ValueError, match='empty.pth: .*the file is empty'):
        net.load_checkpoint(str(tmp_path / 'empty.pth'))
    no_model = tmp_path / 'no_model.pth'
    torch.save({'state_dict': {}}, no_model)
    with pytest.raises(ValueError, match="no_model.pth: .*'model'"):
        net.load_checkpoint(str(no_model))
    pickled = tmp_path / 'pickled.pth'
    torch.save({'model': {}, 'args': argparse.Namespace(lr=1)}, pickled)  # needs full unpickling
    with pytest.raises(ValueError, match='pickled.pth: .*weights_only'):
        net.load_checkpoint(str(pickled))
    assert net.load_checkpoint(str(pickled), trust=True)['args'].lr == 1


def test_unpooling_keeps_the_autocast_dtype(model):
    # CPU autocast runs max_unpool2d in float32: each unpooled map would be converted to float32 and back
    # to bf16 by the next convolution. The decoder unpools in the dtype of its input instead.
    seen = []
    hooks = [getattr(model.decoder, name).register_forward_pre_hook(lambda layer, args: seen.append(args[0].dtype))
             for name in net.UNPOOL_CONVS]
    try:
        with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
            alpha_ed, alpha_refined = model(*inputs(64, 64))
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == [torch.bfloat16] * 5
    assert alpha_ed.dtype == alpha_refined.dtype == torch.float32


def test_unpooling_puts_each_value_back_at_its_pooling_index():
    # A decoder whose convolutions pass channel 0 through unchanged: its output is then channel 0 of the input
    # unpooled five times, each value at the place its max-pool took it from (interpolation would spread it).
    decoder = net.Decoder()
    with torch.no_grad():
        for layer in decoder.children():
            layer.weight.zero_()
            layer.bias.zero_()
            k = layer.kernel_size[0] // 2
            layer.weight[0, 0, k, k] = 1
    _, pools, _ = net.Encoder()(torch.randn(1, 4, 70, 99, generator=torch.Generator().manual_seed(0)))
    x = torch.rand(1, 512, 2, 3, generator=torch.Generator().manual_seed(1)) + 0.5  # N,512,70/32,99/32
    expected = x[0, 0]
    for indices, size in reversed(pools):
        out = torch.zeros(size)
        out.view(-1)[indices[0, 0].reshape(-1)] = expected.reshape(-1)
        expected = out
    with torch.no_grad():
        got = decoder(x, pools)[0, 0]
    assert got.shape == (70, 99)
    assert torch.equal(got, expected)
    assert (got > 0).sum() == 6  # the 2x3 values, none lost, none spread


@pytest.mark.parametrize('layout', [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('hw', [(8, 8), (9, 7), (33, 64)])
def test_unpooling_by_selection_equals_max_unpool2d(hw, dtype, layout):
    # train.py --deterministic unpools by selection (PyTorch refuses max_unpool2d there): the same values and
    # gradients bit for bit, odd sizes included. Ties in a window (the zeros of a ReLU) must take max-pool's
    # own choice, which only its indices know.
    g = torch.Generator().manual_seed(0)
    before = torch.randn(2, 5, *hw, generator=g).relu().to(dtype).contiguous(memory_format=layout)
    pooled, indices = F.max_pool2d(before, 2, 2, return_indices=True)
    grad = torch.randn(2, 5, *hw, generator=g).to(dtype)
    results = []
    for unpool in (lambda x: F.max_unpool2d(x, indices, 2, 2, output_size=hw),
                   lambda x: net.unpool_by_selection(x, indices, hw)):
        x = pooled.detach().requires_grad_()
        out = unpool(x)
        out.backward(grad)
        results.append((out, x.grad))
    (out, grad_in), (out_selected, grad_selected) = results
    assert out_selected.dtype == dtype and out_selected.shape == out.shape
    assert torch.equal(out_selected, out) and torch.equal(grad_selected, grad_in)


def pooling_calls(monkeypatch):
    """Spy on the pooling functions: [(name, batch, elements of the larger tensor)] of each call."""
    calls = []
    for name in ('max_pool2d', 'max_unpool2d'):
        real = getattr(F, name)

        def spy(x, *args, real=real, name=name, **kwargs):
            out = real(x, *args, **kwargs)
            larger = max(x.numel(), (out[0] if isinstance(out, tuple) else out).numel())
            calls.append((name, x.shape[0], larger))
            return out
        monkeypatch.setattr(F, name, spy)
    return calls


def forward_backward(model, img, trimap):
    img = img.clone().requires_grad_()
    alpha_ed, _ = model(img, trimap, refine=False)
    (alpha_ed * torch.linspace(0, 1, alpha_ed.numel()).view_as(alpha_ed)).sum().backward()
    grads = img.grad, model.encoder.conv1_1.weight.grad.clone()
    model.zero_grad()
    return alpha_ed.detach(), grads


def test_pooling_past_the_index_limit_runs_in_batch_parts(monkeypatch):
    # On CUDA a pooling call on 2^31 elements or more indexes wrongly; here, with a limit of two images' first
    # map on the CPU, every call stays under it and the batch's alphas and gradients are those of one call.
    torch.manual_seed(0)
    model = net.DIM()
    img, trimap = (torch.cat(t) for t in zip(*(inputs(40, 40, seed) for seed in range(5))))
    whole = forward_backward(model, img, trimap)
    monkeypatch.setattr(net, 'SPLIT_DEVICES', ('cpu',))
    monkeypatch.setattr(net, 'INDEX_LIMIT', 2 * 64 * 40 * 40 + 1)
    calls = pooling_calls(monkeypatch)
    parts = forward_backward(model, img, trimap)
    assert all(larger < net.INDEX_LIMIT for _, _, larger in calls)
    assert [n for name, n, _ in calls if name == 'max_pool2d'] == [2, 2, 1, 4, 1, 5, 5, 5]  # blocks 1, 2, 3-5
    assert [n for name, n, _ in calls if name == 'max_unpool2d'] == [5, 5, 5, 4, 1, 2, 2, 1]  # deepest first
    for a, b in zip((whole[0], *whole[1]), (parts[0], *parts[1])):
        assert torch.equal(a, b)


def test_one_image_past_the_index_limit_is_refused_like_running_out_of_memory(monkeypatch):
    monkeypatch.setattr(net, 'SPLIT_DEVICES', ('cpu',))
    monkeypatch.setattr(net, 'INDEX_LIMIT', 64 * 40 * 40)
    with torch.no_grad(), pytest.raises(torch.OutOfMemoryError, match='2\\^31'):  # deploy and validation meet it
        net.DIM()(*inputs(40, 40))
    monkeypatch.setattr(net, 'SPLIT_DEVICES', ('cuda',))  # not the CPU's kernels: no parts, no refusal
    with torch.no_grad():
        net.DIM()(*inputs(40, 40))
