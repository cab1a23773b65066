import json

import pytest
import torch

import net
import train

import bench


def rows(results, part, table=0):
    return results[part][table]['rows']


def test_quick_bench_writes_every_part(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'tiny.pth')
    net.save_checkpoint({'format': net.CHECKPOINT_FORMAT, 'model': net.DIM().state_dict(), 'stage': 1, 'step': 0},
                        ckpt)
    out = str(tmp_path / 'bench.json')
    assert bench.main(['--quick', '--repeats', '1', '--max_images', '2', '--sizes', '64', '32', '--ckpt', ckpt,
                       '--json', out]) == 0
    printed = capsys.readouterr().out
    for part in bench.PARTS:
        assert f'== {part}:' in printed
    with open(out) as f:
        results = json.load(f)
    assert results['machine']['torch'].startswith(torch.__version__)

    # sizes in ascending order, fp32 and bf16 side by side on the CPU, each against the matrix product in its dtype
    speed = rows(results, 'speed')
    assert [(r['size'], r['dtype']) for r in speed] == [('32x32', 'fp32'), ('32x32', 'bf16'), ('64x64', 'fp32'),
                                                        ('64x64', 'bf16')]
    for r in speed:
        side = int(r['size'].split('x')[0])
        assert r['GFLOP'] == pytest.approx(2 * net.count_flops(side, side, refine=False) / 1e9)
        assert r['share %'] == pytest.approx(100 * r['GFLOP/s'] / r['matmul GFLOP/s'])
        assert r['network s'] > 0 and r['predict s'] > 0
    peaks = [r['peak RSS so far GiB'] for r in speed]  # the process's peak so far: it never falls
    assert peaks == sorted(peaks) and peaks[0] > 0

    crop, = rows(results, 'crop')
    assert '128x128, unknown ring 15%' in results['crop'][0]['title']
    assert crop['speedup'] == pytest.approx(crop['whole s'] / crop['crop s']) and crop['SAD crop vs whole'] >= 0
    # --quick caps the CPU batch at 2
    train = rows(results, 'train')
    assert [(r['dtype'], r['batch']) for r in train] == [('fp32', 1), ('fp32', 2), ('bf16', 1), ('bf16', 2)]
    for r in train:
        assert r['s/step'] > 0 and r['images/s'] == pytest.approx(r['batch'] / r['s/step'])
    against = rows(results, 'train', 1)  # train.py's setup beside the default one, at batch 1 on the CPU
    assert [(r['dtype'], r['batch']) for r in against] == [('fp32', 1), ('bf16', 1)]
    for r in against:
        assert r['speedup'] == pytest.approx(r['default s/step'] / r['train.py s/step'])
    assert all(r['samples/s'] > 0 for r in rows(results, 'data'))
    assert all(v > 0 for v in rows(results, 'metrics')[0].values())

    methods = {r['method']: r for r in rows(results, 'quality')}
    assert 'synthetic test split' in results['quality'][0]['title'] and '2 images' in results['quality'][0]['title']
    fp32, bf16 = methods['DIM stage 1 (tiny.pth) fp32'], methods['DIM stage 1 (tiny.pth) bf16']
    assert bf16['SAD'] == pytest.approx(fp32['SAD'], rel=0.05)  # the same model in bf16
    assert methods['trivial baseline (0.5 in unknown)']['SAD'] > 0  # 0.5 everywhere cannot match a synthetic alpha


def test_random_batch_is_the_datasets_sample_format():
    batch = bench.random_batch(3, 32)
    assert {k: tuple(v.shape) for k, v in batch.items()} == {'trimap': (3, 1, 32, 32), 'alpha': (3, 1, 32, 32),
                                                            'fg': (3, 3, 32, 32), 'bg': (3, 3, 32, 32)}
    assert all(v.dtype == torch.uint8 for v in batch.values())
    assert set(batch['trimap'].unique().tolist()) == {0, 128, 255}
    assert 0 < batch['alpha'].float().mean() < 255 and torch.equal(batch['fg'][0], batch['fg'][2])


def test_bad_flags_are_one_line_errors(capsys):
    assert bench.main(['--parts', 'speed,nonsense']) == 2
    assert 'nonsense' in capsys.readouterr().err
    assert bench.main(['--parts', 'speed', '--precisions', 'fp32,fp16', '--device', 'cpu']) == 2
    assert 'fp16' in capsys.readouterr().err
    assert bench.main(['--parts', 'quality', '--real_dir', 'no/such/folder']) == 2
    assert 'no/such/folder' in capsys.readouterr().err


def test_reference_train_setup_runs_the_default_layout_and_adam(monkeypatch):
    seen, forward = [], net.DIM.forward
    monkeypatch.setattr(net.DIM, 'forward', lambda model, img, trimap, refine=True:
                        seen.append(img.is_contiguous()) or forward(model, img, trimap, refine))
    cpu, batch = torch.device('cpu'), bench.random_batch(1, 32)
    for fast in (True, False):
        model, optimizer, scaler = bench.train_setup(cpu, torch.float32, fast)
        train.train_step(model, batch, optimizer, scaler, 1, 0.5, cpu, torch.float32)
        assert optimizer.defaults['fused'] is (True if fast else None)
    assert seen == [False, True]  # train.py's channels_last image, then the default layout's
