import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import net

# Written out here, independently of tools/chg_model.py: VGG-16's configuration ('M' = max-pool).
VGG16_CFG = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M']
DECODER = ['deconv6_1', 'deconv5_1', 'deconv4_1', 'deconv3_1', 'deconv2_1', 'deconv1_1', 'deconv1']
REFINER = ['refine_conv1', 'refine_conv2', 'refine_conv3', 'refine_pred']


@pytest.fixture(scope='module')
def chg_model():
    import chg_model
    return chg_model


def vgg_layers():
    """[(torchvision features index, our layer name, in channels, out channels)] from VGG16_CFG."""
    layers, index, block, k, in_c = [], 0, 1, 1, 3
    for item in VGG16_CFG:
        if item == 'M':
            index, block, k = index + 1, block + 1, 1
        else:
            layers.append((index, f'conv{block}_{k}', in_c, item))
            index, k, in_c = index + 2, k + 1, item  # conv, ReLU
    return layers


def fake_torchvision(seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for index, _, in_c, out_c in vgg_layers():
        state[f'features.{index}.weight'] = torch.randn(out_c, in_c, 3, 3, generator=g)
        state[f'features.{index}.bias'] = torch.randn(out_c, generator=g)
    for i in (0, 3, 6):  # the classifier is not used: small stand-ins keep the test fast
        state[f'classifier.{i}.weight'] = torch.randn(4, 4, generator=g)
        state[f'classifier.{i}.bias'] = torch.randn(4, generator=g)
    return state


def fake_npz(seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for _, name, in_c, out_c in vgg_layers():
        arrays[f'{name}_W'] = rng.standard_normal((3, 3, in_c, out_c)).astype(np.float32)  # HWIO
        arrays[f'{name}_b'] = rng.standard_normal(out_c).astype(np.float32)
    for name in ('fc6', 'fc7', 'fc8'):
        arrays[f'{name}_W'] = rng.standard_normal((4, 4)).astype(np.float32)
        arrays[f'{name}_b'] = rng.standard_normal(4).astype(np.float32)
    return arrays


def mmagic_names(refiner=True):
    """{mmagic key: our key} for every tensor, written out from mmagic's layer names."""
    names = {}
    for _, name, _, _ in vgg_layers():
        block, k = int(name[4]), int(name[6])
        for p in ('weight', 'bias'):
            names[f'backbone.encoder.layer{block}.{2 * (k - 1)}.{p}'] = f'encoder.{name}.{p}'
    for p in ('weight', 'bias'):
        names[f'backbone.encoder.conv6.{p}'] = f'encoder.conv6_1.{p}'
        names.update({f'backbone.decoder.{layer}.{p}': f'decoder.{layer}.{p}' for layer in DECODER})
        if refiner:
            names.update({f'refiner.{layer}.{p}': f'refiner.{layer}.{p}' for layer in REFINER})
    return names


@pytest.fixture(scope='module')
def shapes():
    return {k: v.shape for k, v in net.DIM().state_dict().items()}


def fake_mmagic(shapes, refiner=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {key: torch.randn(shapes[ours], generator=g) for key, ours in mmagic_names(refiner).items()}
    return {'meta': {'mmedit_version': '0.14.0', 'iter': 1000000}, 'state_dict': state}


def run(chg_model, capsys, *argv):
    rc = chg_model.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def read(path):
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    net.DIM().load_state_dict(ckpt['model'])  # strict: every key, every shape
    return ckpt


def test_torchvision_weights_land_in_place(chg_model, tmp_path, capsys):
    state = fake_torchvision()
    src, out = tmp_path / 'vgg16-397923af.pth', tmp_path / 'out' / 'dim.pth'
    torch.save(state, src)
    rc, printed, err = run(chg_model, capsys, '--vgg', src, '--out', out)
    assert rc == 0, err
    assert 'copied 26 tensors' in printed
    ckpt = read(out)
    assert ckpt['format'] == 1 and ckpt['stage'] == 0 and ckpt['step'] == 0
    assert ckpt['source'] == 'vgg16-397923af.pth'
    model = ckpt['model']
    for index, name, _, _ in vgg_layers():
        weight, bias = state[f'features.{index}.weight'], state[f'features.{index}.bias']
        if name == 'conv1_1':
            assert torch.equal(model['encoder.conv1_1.weight'][:, :3], weight)  # RGB, same order
            assert torch.all(model['encoder.conv1_1.weight'][:, 3] == 0)  # the trimap channel
        else:
            assert torch.equal(model[f'encoder.{name}.weight'], weight)
        assert torch.equal(model[f'encoder.{name}.bias'], bias)
    for key in ('encoder.conv6_1', 'decoder.deconv5_1', 'decoder.deconv1', 'refiner.refine_conv1'):
        assert model[key + '.weight'].abs().sum() > 0 and torch.all(model[key + '.bias'] == 0)  # Xavier
    assert torch.all(model['refiner.refine_pred.weight'] == 0)  # the refinement starts as the identity
    assert net.load_checkpoint(str(out))['stage'] == 0


def test_npz_weights_give_the_same_convolution(chg_model, tmp_path, capsys):
    arrays = fake_npz()
    src, out = tmp_path / 'vgg16_weights.npz', tmp_path / 'dim.pth'
    np.savez(src, **arrays)
    rc, printed, err = run(chg_model, capsys, '--npz', src, '--out', out)
    assert rc == 0, err
    model = read(out)['model']
    for _, name, _, _ in vgg_layers()[1:]:
        hwio = arrays[f'{name}_W']
        assert np.array_equal(model[f'encoder.{name}.weight'].numpy(), hwio.transpose(3, 2, 0, 1))
        assert np.array_equal(model[f'encoder.{name}.bias'].numpy(), arrays[f'{name}_b'])
    assert torch.all(model['encoder.conv1_1.weight'][:, 3] == 0)

    # conv1_1 on our input (ImageNet mean/std) must equal Frossard's conv1_1 on his (RGB 0..255 minus his
    # mean), computed here straight from the HWIO array; compared away from the zero padding.
    rng = np.random.default_rng(1)
    pixels = rng.uniform(0, 255, (9, 11, 3))  # H, W, RGB
    his = pixels - np.array([123.68, 116.779, 103.939])
    kernel = arrays['conv1_1_W'].astype(np.float64)
    expected = np.zeros((7, 9, 64))
    for dy in range(3):
        for dx in range(3):
            expected += np.einsum('yxi,io->yxo', his[dy:dy + 7, dx:dx + 9], kernel[dy, dx])
    expected += arrays['conv1_1_b']
    ours = (pixels / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(ours.transpose(2, 0, 1)).float()[None]
    x = torch.cat([x, torch.ones(1, 1, 9, 11)], 1)  # a trimap channel: its weights are zero
    got = F.conv2d(x, model['encoder.conv1_1.weight'], model['encoder.conv1_1.bias'])[0].permute(1, 2, 0)
    assert np.allclose(got.double().numpy(), expected, rtol=1e-4, atol=1e-2 * np.abs(expected).mean())


@pytest.mark.parametrize('refiner', [True, False])
def test_mmagic_weights_land_in_place(chg_model, tmp_path, capsys, shapes, refiner):
    source = fake_mmagic(shapes, refiner=refiner)
    src, out = tmp_path / 'dim_stage3.pth', tmp_path / 'dim.pth'
    torch.save(source, src)
    rc, printed, err = run(chg_model, capsys, '--mmagic', src, '--out', out)
    assert rc == 0, err
    ckpt = read(out)
    assert ckpt['stage'] == (3 if refiner else 1)
    names = mmagic_names(refiner)
    assert len(names) == (50 if refiner else 42)
    for key, ours in names.items():
        assert torch.equal(ckpt['model'][ours], source['state_dict'][key]), key
    if not refiner:  # the refiner is not in a stage-1 file: Xavier
        assert torch.all(ckpt['model']['refiner.refine_conv1.bias'] == 0)
        assert ckpt['model']['refiner.refine_conv1.weight'].abs().max() <= (6 / (68 * 9)) ** 0.5


def test_mmagic_conv_module_keys(chg_model, tmp_path, capsys, shapes):
    source = fake_mmagic(shapes, refiner=False)
    nested = {k.replace('.weight', '.conv.weight').replace('.bias', '.conv.bias'): v
              for k, v in source['state_dict'].items()}  # mmcv ConvModule: backbone.encoder.conv6.conv.weight
    src, out = tmp_path / 'nested.pth', tmp_path / 'dim.pth'
    torch.save({'state_dict': nested}, src)
    rc, _, err = run(chg_model, capsys, '--mmagic', src, '--out', out)
    assert rc == 0, err
    model = read(out)['model']
    assert torch.equal(model['encoder.conv6_1.weight'], source['state_dict']['backbone.encoder.conv6.weight'])
    assert torch.equal(model['encoder.conv4_3.bias'], source['state_dict']['backbone.encoder.layer4.4.bias'])


def fails(chg_model, capsys, tmp_path, argv, *words):
    out = tmp_path / 'out.pth'
    rc, printed, err = run(chg_model, capsys, *argv, '--out', out)
    assert rc == 1
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]


def test_malformed_torchvision_files_fail_cleanly(chg_model, tmp_path, capsys):
    state = fake_torchvision()
    del state['features.28.bias']
    state['features.1.running_mean'] = torch.zeros(64)
    torch.save(state, tmp_path / 'a.pth')
    fails(chg_model, capsys, tmp_path, ['--vgg', tmp_path / 'a.pth'],
          'features.28.bias', 'features.1.running_mean')

    state = fake_torchvision()
    state['features.0.weight'] = torch.zeros(64, 4, 3, 3)
    torch.save(state, tmp_path / 'b.pth')
    fails(chg_model, capsys, tmp_path, ['--vgg', tmp_path / 'b.pth'], 'features.0 weight', '(64, 4, 3, 3)')

    (tmp_path / 'c.pth').write_bytes(b'\x00garbage')
    fails(chg_model, capsys, tmp_path, ['--vgg', tmp_path / 'c.pth'], 'c.pth', 'cannot read')
    fails(chg_model, capsys, tmp_path, ['--vgg', tmp_path / 'missing.pth'], 'not found', 'missing.pth')


def test_malformed_npz_files_fail_cleanly(chg_model, tmp_path, capsys):
    arrays = fake_npz()
    del arrays['conv5_3_b']
    np.savez(tmp_path / 'a.npz', **arrays)
    fails(chg_model, capsys, tmp_path, ['--npz', tmp_path / 'a.npz'], 'conv5_3_b')
    arrays = fake_npz()
    arrays['conv2_1_W'] = arrays['conv2_1_W'].transpose(3, 2, 0, 1)  # OIHW instead of HWIO
    np.savez(tmp_path / 'b.npz', **arrays)
    fails(chg_model, capsys, tmp_path, ['--npz', tmp_path / 'b.npz'], 'conv2_1')
    (tmp_path / 'c.npz').write_bytes(b'not a zip')
    fails(chg_model, capsys, tmp_path, ['--npz', tmp_path / 'c.npz'], 'c.npz')


def test_malformed_mmagic_files_fail_cleanly(chg_model, tmp_path, capsys, shapes):
    source = fake_mmagic(shapes)
    del source['state_dict']['refiner.refine_pred.bias']  # a refiner, but not all of it
    source['state_dict']['backbone.decoder.deconv5_1.weight'] = torch.zeros(512, 512, 3, 3)
    torch.save(source, tmp_path / 'a.pth')
    fails(chg_model, capsys, tmp_path, ['--mmagic', tmp_path / 'a.pth'], 'refiner.refine_pred.bias')
    source['state_dict']['refiner.refine_pred.bias'] = torch.zeros(1)
    torch.save(source, tmp_path / 'b.pth')
    fails(chg_model, capsys, tmp_path, ['--mmagic', tmp_path / 'b.pth'], 'backbone.decoder.deconv5_1.weight')

    import argparse  # a pickled object: weights_only refuses it unless --trust
    torch.save({'meta': {'config': argparse.Namespace(a=1)}, 'state_dict': {}}, tmp_path / 'c.pth')
    fails(chg_model, capsys, tmp_path, ['--mmagic', tmp_path / 'c.pth'], '--trust')
    fails(chg_model, capsys, tmp_path, ['--mmagic', tmp_path / 'c.pth', '--trust'], 'missing 42 keys')


def test_no_source_and_no_network(chg_model, tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError('no network')

    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', offline)
    fails(chg_model, capsys, tmp_path, [], 'https://download.pytorch.org/models/vgg16-397923af.pth', '--vgg')


def test_one_source_at_a_time(chg_model, tmp_path):
    with pytest.raises(SystemExit):
        chg_model.main(['--vgg', 'a.pth', '--npz', 'b.npz', '--out', str(tmp_path / 'o.pth')])
