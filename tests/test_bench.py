import json

import numpy as np
import pytest
import torch

import deploy
import net

import bench


def positive_numbers(tree):
    """Every int/float leaf of a JSON tree (bools and the machine section excluded)."""
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in positive_numbers(v)]
    if isinstance(tree, list):
        return [x for v in tree for x in positive_numbers(v)]
    return [tree] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def test_quick_bench_writes_every_part(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'tiny.pth')
    net.save_checkpoint({'format': net.CHECKPOINT_FORMAT, 'model': net.DIM().state_dict(), 'stage': 1, 'step': 0},
                        ckpt)
    out = str(tmp_path / 'bench.json')
    assert bench.main(['--quick', '--repeats', '1', '--max_images', '2', '--ckpt', ckpt, '--json', out]) == 0
    printed = capsys.readouterr().out
    for section in ('== machine', '== speed', '== crop', '== train', '== data', '== metrics', '== quality'):
        assert section in printed
    with open(out) as f:
        results = json.load(f)
    assert set(bench.PARTS) <= set(results)
    assert results['machine']['torch'] == torch.__version__

    # fp32 and bf16 side by side on the CPU, each against the matrix product in its own dtype
    assert [(r['size'], r['dtype']) for r in results['speed']['rows']] == [(64, 'fp32'), (64, 'bf16')]
    for speed in results['speed']['rows']:
        assert speed['gflop'] == pytest.approx(2 * net.count_flops(64, 64, refine=False) / 1e9)
        assert speed['share'] == pytest.approx(speed['gflops'] / speed['matmul_gflops'])
        for key in ('network_s', 'gflops', 'matmul_gflops', 'share', 'predict_s', 'peak_rss_gib'):
            assert speed[key] > 0, key
        assert speed['rss_increase_gib'] >= 0  # 0 when freed pages were reused (seen once in a full run)
    crop = results['crop']
    assert crop['size'] == 128 and 0.12 < crop['unknown'] < 0.18 and crop['whole_s'] > 0 and crop['crop_s'] > 0
    assert crop['speedup'] == pytest.approx(crop['whole_s'] / crop['crop_s']) and crop['sad_crop_vs_whole'] >= 0
    # --quick caps the CPU batch at 2
    assert [(r['dtype'], r['batch']) for r in results['train']['rows']] == [('fp32', 1), ('fp32', 2), ('bf16', 1),
                                                                            ('bf16', 2)]
    for r in results['train']['rows']:
        assert r['s_per_step'] > 0 and r['images_per_s'] == pytest.approx(r['batch'] / r['s_per_step'])
    assert all(r['gflops'] > 0 and r['share'] > 0 for r in results['train']['rows'])
    for key in ('first_pass_per_s', 'cached_per_s', 'whole_first_cached_per_s'):
        assert results['data'][key] > 0
    for key in ('sad_s', 'mse_s', 'grad_s', 'conn_s', 'all_s'):
        assert results['metrics'][key] > 0

    synthetic = results['quality']['synthetic']
    assert synthetic['images'] == 2
    methods = synthetic['methods']
    assert {'DIM stage 1 (tiny.pth) fp32', 'DIM stage 1 (tiny.pth) bf16', 'trivial (0.5 in unknown)'} <= set(methods)
    fp32, bf16 = methods['DIM stage 1 (tiny.pth) fp32'], methods['DIM stage 1 (tiny.pth) bf16']
    assert bf16['sad'] == pytest.approx(fp32['sad'], rel=0.05)  # the same model in bf16
    for row in methods.values():
        assert set(row) == {'sad', 'mse', 'grad', 'conn', 's_per_image'}
        assert all(np.isfinite(v) and v >= 0 for v in row.values())
    assert methods['trivial (0.5 in unknown)']['sad'] > 0  # 0.5 everywhere cannot match a synthetic alpha
    assert all(x >= 0 for x in positive_numbers(results))

    pytest.importorskip('pymatting')
    closed_form = methods['closed-form (pymatting)']
    assert closed_form['s_per_image'] > 0
    # closed-form matting beats guessing 0.5 on these composites
    assert closed_form['sad'] < methods['trivial (0.5 in unknown)']['sad']


def test_bad_part_is_one_line_error(capsys):
    assert bench.main(['--parts', 'speed,nonsense']) == 2
    assert 'nonsense' in capsys.readouterr().err
    assert bench.main(['--parts', 'speed', '--precisions', 'fp32,fp16', '--device', 'cpu']) == 2
    assert 'fp16' in capsys.readouterr().err


def test_bench_compares_fp32_with_the_devices_reduced_precision(monkeypatch):
    cpu = torch.device('cpu')
    assert bench.bench_precisions(cpu) == [torch.float32, torch.bfloat16]  # bf16 is measured even where auto would not pick it
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None: (7, 5))  # a T4
    assert bench.bench_precisions(torch.device('cuda')) == [torch.float32, torch.float16]
    monkeypatch.setattr(net, 'cpu_has_bf16', lambda: False)
    assert bench.bench_precisions(cpu, ['fp32', 'auto']) == [torch.float32]  # auto is fp32 then: listed once
