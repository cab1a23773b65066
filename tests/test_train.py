import json
import os
import subprocess
import sys
import time
import types

import cv2
import numpy as np
import pytest
import torch

import data
import net
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def tiny_set(tmp_path_factory):
    """Four red-ish soft discs with their alphas, and three noisy blue-ish backgrounds (online mode)."""
    root = tmp_path_factory.mktemp('tiny')
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:80, :80]
    for i in range(4):
        cy, cx, r = rng.uniform(30, 50), rng.uniform(30, 50), rng.uniform(14, 24)
        alpha = np.clip((r - np.hypot(yy - cy, xx - cx)) / 6 + 0.5, 0, 1)
        data.write_png(str(root / 'alpha' / f'fg{i}.png'), np.round(alpha * 255).astype(np.uint8))
        fg = np.zeros((80, 80, 3), np.uint8) + np.array([200, 40 + 20 * i, 30], np.uint8)
        data.write_png(str(root / 'fg' / f'fg{i}.png'), fg)
    for i in range(3):
        bg = rng.integers(0, 60, (90, 90, 3)).astype(np.uint8) + np.array([0, 60, 150], np.uint8)
        data.write_png(str(root / 'bg' / f'bg{i}.png'), cv2.GaussianBlur(bg, (5, 5), 0))
    return root


def run_args(root, save_dir, *extra):
    return ['--fgDir', str(root / 'fg'), '--alphaDir', str(root / 'alpha'), '--bgDir', str(root / 'bg'),
            '--size_h', '64', '--size_w', '64', '--crop_h', '64', '--workers', '0', '--val_fraction', '0',
            '--print_freq', '1', '--init', 'he', '--saveDir', str(save_dir), *extra]


def logged_losses(save_dir):
    with open(os.path.join(save_dir, 'log.jsonl')) as f:
        return {r['step']: r['loss'] for r in map(json.loads, f) if 'loss' in r}


def logged_validations(save_dir):
    with open(os.path.join(save_dir, 'log.jsonl')) as f:
        return [r for r in map(json.loads, f) if 'val' in r]


def test_camel_case_flags_parse_like_snake_case():
    parser = train.get_args_parser()
    camel = parser.parse_args(['--imgDir', 'a', '--fgDir', 'f', '--alphaDir', 'al', '--bgDir', 'b', '--batchSize', '2',
                               '--nEpochs', '3', '--saveDir', 's', '--printFreq', '5', '--ckptSaveFreq', '2',
                               '--testFreq', '4', '--testImgDir', 't', '--testAlaphaDir', 'ta',
                               '--testTrimapDir', 'tt', '--testResDir', 'tr', '--crop_h', '320,480'])
    snake = parser.parse_args(['--img_dir', 'a', '--fg_dir', 'f', '--alpha_dir', 'al', '--bg_dir', 'b',
                               '--batch_size', '2', '--epochs', '3', '--save_dir', 's', '--print_freq', '5',
                               '--ckpt_save_freq', '2', '--test_freq', '4', '--test_img_dir', 't',
                               '--test_alpha_dir', 'ta', '--test_trimap_dir', 'tt', '--test_res_dir', 'tr',
                               '--crop_sizes', '320,480'])
    assert vars(camel) == vars(snake)
    assert camel.crop_h == [320, 480]
    with pytest.raises(SystemExit):  # no abbreviations: --test must not match --test_freq
        parser.parse_args(['--test', '1'])


def test_resumed_run_continues_with_the_same_losses(tiny_set, tmp_path):
    whole, part = tmp_path / 'whole', tmp_path / 'part'
    assert train.main(run_args(tiny_set, whole, '--max_iters', '6', '--lr', '1e-4')) == 0
    assert train.main(run_args(tiny_set, part, '--max_iters', '3', '--lr', '1e-4')) == 0
    ckpt = torch.load(part / 'latest.pth', weights_only=True)  # plain tensors and values only
    assert ckpt['step'] == 3 and ckpt['stage'] == 1 and ckpt['format'] == net.CHECKPOINT_FORMAT
    assert train.main(run_args(tiny_set, part, '--max_iters', '6', '--lr', '1e-4',
                               '--resume', str(part / 'latest.pth'))) == 0
    expected, resumed = logged_losses(whole), logged_losses(part)
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):  # 4 composites an epoch: step 6 is in the second epoch
        assert resumed[step] == pytest.approx(expected[step], rel=1e-5)
    final_whole = torch.load(whole / 'latest.pth', weights_only=True)['model']
    final_part = torch.load(part / 'latest.pth', weights_only=True)['model']
    assert torch.allclose(final_whole['decoder.deconv1.weight'], final_part['decoder.deconv1.weight'], atol=1e-6)


def test_deterministic_mode_trains_as_the_default_does_on_the_cpu(tiny_set, tmp_path):
    # PyTorch refuses max_unpool2d in deterministic mode, so there the decoder unpools by selection. On the CPU,
    # deterministic already, the run must give the default's losses, validation and weights, bit for bit.
    common = ('--max_iters', '4', '--lr', '1e-4', '--val_fraction', '0.25', '--val_per_fg', '1')
    assert train.main(run_args(tiny_set, tmp_path / 'default', *common)) == 0
    try:
        assert train.main(run_args(tiny_set, tmp_path / 'deterministic', *common, '--deterministic')) == 0
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    default, deterministic = tmp_path / 'default', tmp_path / 'deterministic'
    assert len(logged_losses(default)) == 4 and len(logged_validations(default)) == 2
    assert logged_losses(deterministic) == logged_losses(default)
    assert logged_validations(deterministic) == logged_validations(default)
    weights = [torch.load(tmp_path / run / 'latest.pth', weights_only=True)['model']
               for run in ('default', 'deterministic')]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_loss_falls_on_a_tiny_set(tiny_set, tmp_path):
    assert train.main(run_args(tiny_set, tmp_path, '--stage', '0', '--max_iters', '60', '--lr', '1e-4')) == 0
    losses = logged_losses(tmp_path)
    first, last = np.mean([losses[s] for s in range(1, 6)]), np.mean([losses[s] for s in range(51, 61)])
    assert last < 0.5 * first, (first, last)


def test_stage_2_trains_only_the_refiner(tiny_set, tmp_path):
    assert train.main(run_args(tiny_set, tmp_path / 's1', '--max_iters', '1')) == 0
    start = tmp_path / 's1' / 'latest.pth'
    assert train.main(run_args(tiny_set, tmp_path / 's2', '--stage', '2', '--max_iters', '2', '--lr', '1e-3',
                               '--pretrain', str(start))) == 0
    before = torch.load(start, weights_only=True)['model']
    after = torch.load(tmp_path / 's2' / 'latest.pth', weights_only=True)['model']
    assert torch.equal(before['encoder.conv1_1.weight'], after['encoder.conv1_1.weight'])
    assert torch.equal(before['decoder.deconv1.weight'], after['decoder.deconv1.weight'])
    assert not torch.equal(before['refiner.refine_pred.weight'], after['refiner.refine_pred.weight'])


def test_stage_2_starts_exactly_at_the_stage_1_matte(tiny_set, tmp_path):
    val = ('--val_fraction', '0.25', '--val_per_fg', '1')
    assert train.main(run_args(tiny_set, tmp_path / 's1', '--max_iters', '3', *val)) == 0
    start = torch.load(tmp_path / 's1' / 'latest.pth', weights_only=True)
    torch.nn.init.normal_(start['model']['refiner.refine_pred.weight'])  # a refiner drawn at random (mmagic's)
    torch.save(start, tmp_path / 'start.pth')
    assert train.main(run_args(tiny_set, tmp_path / 's2', '--stage', '2', '--max_iters', '3', '--lr', '1e-3',
                               '--pretrain', str(tmp_path / 'start.pth'), *val)) == 0
    stage1, stage2 = logged_validations(tmp_path / 's1'), logged_validations(tmp_path / 's2')
    assert stage2[0]['step'] == 0 and stage2[0]['val'] == stage1[-1]['val']  # refined == stage-1 alpha
    best = torch.load(tmp_path / 's2' / 'best.pth', weights_only=True)['best_sad']
    assert best == min(r['val']['sad'] for r in stage2) <= stage1[-1]['val']['sad']


def test_validation_writes_best_and_a_json_line(tiny_set, tmp_path, capsys):
    # 3 training composites an epoch: validation after epoch 1, then a loader worker goes on loading
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '4', '--val_fraction', '0.25',
                               '--val_per_fg', '1', '--workers', '1')) == 0
    with open(tmp_path / 'log.jsonl') as f:
        records = [json.loads(line) for line in f]
    assert 'args' in records[0] and records[0]['val_composites'] == 1 and records[0]['workers'] == 1
    val = [r for r in records if 'val' in r]
    assert [r['step'] for r in val] == [3, 4] and set(val[0]['val']) == {'sad', 'mse', 'grad', 'conn'}
    best = min(r['val']['sad'] for r in val)
    assert torch.load(tmp_path / 'best.pth', weights_only=True)['best_sad'] == best
    out, err = capsys.readouterr()
    assert '%|' not in err  # progress bars (training, validation) only on a terminal, else a line a print
    assert [line.split(':')[0] for line in out.splitlines() if line.startswith('step ') and 'loss' in line] == \
        ['step 1/4', 'step 2/4', 'step 3/4', 'step 4/4']


def test_bad_checkpoints_are_one_line_errors(tiny_set, tmp_path, capsys):
    assert train.main(run_args(tiny_set, tmp_path, '--resume', str(tmp_path / 'missing.pth'))) == 1
    assert 'missing.pth' in capsys.readouterr().err
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(b'not a checkpoint')
    assert train.main(run_args(tiny_set, tmp_path, '--pretrain', str(corrupt))) == 1
    err = capsys.readouterr().err
    assert 'corrupt.pth' in err and len(err.strip().splitlines()) == 1


def test_non_finite_loss_stops_and_names_the_step(tiny_set, tmp_path, monkeypatch, capsys):
    real_loss = train.stage_loss
    monkeypatch.setattr(train, 'stage_loss', lambda *a, **k: real_loss(*a, **k) * float('nan'))
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '3')) == 1
    assert 'non-finite loss' in capsys.readouterr().err and not (tmp_path / 'latest.pth').exists()


def test_two_processes_with_gloo(tiny_set, tmp_path):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
           os.path.join(ROOT, 'train.py'), *run_args(tiny_set, tmp_path, '--max_iters', '2', '--device', 'cpu')]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    ckpt = torch.load(tmp_path / 'latest.pth', weights_only=True)
    assert ckpt['step'] == 2 and not any(k.startswith('module.') for k in ckpt['model'])
    with open(tmp_path / 'log.jsonl') as f:
        assert json.loads(f.readline())['world'] == 2


def test_train_sh_chains_the_three_stages(tiny_set, tmp_path):
    import composite
    assert composite.main(['--fg_dir', str(tiny_set / 'fg'), '--alpha_dir', str(tiny_set / 'alpha'),
                           '--bg_dir', str(tiny_set / 'bg'), '--num_bg', '1', '--workers', '1',
                           '--out_dir', str(tmp_path / 'comp' / 'train')]) == 0
    vgg = tmp_path / 'vgg.pth'
    net.save_checkpoint({'format': net.CHECKPOINT_FORMAT, 'model': net.DIM().state_dict(), 'stage': 0, 'step': 0},
                        str(vgg))
    env = dict(os.environ, DATA=str(tmp_path / 'comp'), VGG=str(vgg), RUNS=str(tmp_path / 'runs'),
               PYTHON=sys.executable, OMP_NUM_THREADS='1')
    flags = ['--size_h', '64', '--size_w', '64', '--crop_h', '64', '--workers', '0', '--max_iters', '1',
             '--val_fraction', '0.25', '--val_per_fg', '1', '--device', 'cpu']
    result = subprocess.run(['bash', os.path.join(ROOT, 'train.sh'), 'all', *flags], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    stages = [torch.load(tmp_path / 'runs' / f'stage{s}' / 'best.pth', weights_only=True)['stage'] for s in (1, 2, 3)]
    assert stages == [1, 2, 3]


def test_checkpoint_records_the_run_shape_and_resume_refuses_another(tiny_set, tmp_path, capsys):
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '1')) == 0
    ckpt = torch.load(tmp_path / 'latest.pth', weights_only=True)
    assert (ckpt['world_size'], ckpt['batch_size'], ckpt['samples_seen']) == (1, 1, 1)
    capsys.readouterr()
    # batch 2 would renumber the epochs and change which samples come next: refused, not silently continued
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '2', '--batch_size', '2',
                               '--resume', str(tmp_path / 'latest.pth'))) == 1
    err = capsys.readouterr().err
    assert '--batch_size 1' in err and '--batch_size 2' in err and len(err.strip().splitlines()) == 1
    # the same for the number of processes (restore is what train() calls)
    args = train.get_args_parser().parse_args(['--batch_size', '1'])
    model = net.DIM()
    net.set_stage(model, 1)
    optimizer = train.make_optimizer(model, 1e-5)  # as train() makes it
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    with pytest.raises(ValueError, match=r'written by 1 process\(es\).*this run has 2'):
        train.restore(ckpt, optimizer, scaler, args, 2, 'latest.pth')
    assert train.restore(ckpt, optimizer, scaler, args, 1, 'latest.pth')[0] == 1


def test_scaler_state_of_a_bf16_or_cpu_run_loads_into_an_fp16_run(tiny_set, tmp_path):
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '1')) == 0
    ckpt = torch.load(tmp_path / 'latest.pth', weights_only=True)
    assert ckpt['scaler'] == {}  # a disabled scaler saves nothing
    fp16_scaler = torch.amp.GradScaler('cpu', enabled=True)
    with pytest.raises(RuntimeError):  # what torch does with it, and why restore() skips it
        torch.amp.GradScaler('cpu', enabled=True).load_state_dict(ckpt['scaler'])
    args = train.get_args_parser().parse_args([])
    model = net.DIM()
    net.set_stage(model, 1)
    optimizer = train.make_optimizer(model, 1e-5)
    train.restore(ckpt, optimizer, fp16_scaler, args, 1, 'latest.pth')
    assert fp16_scaler.get_scale() == torch.amp.GradScaler('cpu').get_scale()  # starts from the default


def test_lr_rules_relative_to_batch_one(tiny_set, tmp_path):
    assert train.scaled_lr(1e-5, 'none', 16) == 1e-5
    assert train.scaled_lr(1e-5, 'sqrt', 16) == pytest.approx(4e-5)
    assert train.scaled_lr(1e-5, 'linear', 16) == pytest.approx(1.6e-4)
    assert train.scaled_lr(1e-5, 'sqrt', 1) == train.scaled_lr(1e-5, 'linear', 1) == 1e-5
    # the default rule is sqrt
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '1', '--batch_size', '2', '--lr', '1e-4')) == 0
    with open(tmp_path / 'log.jsonl') as f:
        records = [json.loads(line) for line in f]
    assert records[0]['lr'] == pytest.approx(1e-4 * 2 ** 0.5)
    assert records[1]['lr'] == pytest.approx(1e-4 * 2 ** 0.5)  # the rate the optimizer used


def test_logged_loss_is_the_mean_of_each_print_window(tiny_set, tmp_path):
    assert train.main(run_args(tiny_set, tmp_path / 'each', '--max_iters', '4', '--lr', '1e-4')) == 0
    assert train.main(run_args(tiny_set, tmp_path / 'pairs', '--max_iters', '4', '--lr', '1e-4',
                               '--print_freq', '2')) == 0
    each, pairs = logged_losses(tmp_path / 'each'), logged_losses(tmp_path / 'pairs')
    assert sorted(pairs) == [2, 4]
    assert pairs[2] == pytest.approx((each[1] + each[2]) / 2, rel=1e-5)
    assert pairs[4] == pytest.approx((each[3] + each[4]) / 2, rel=1e-5)


def test_non_finite_loss_between_reads_names_the_window(tiny_set, tmp_path, monkeypatch, capsys):
    real_loss = train.stage_loss
    monkeypatch.setattr(train, 'stage_loss', lambda *a, **k: real_loss(*a, **k) * float('nan'))
    # print_freq 10 never comes: the check before saving at the end still stops the run
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '3', '--print_freq', '10')) == 1
    assert 'non-finite loss (nan) in steps 1-3' in capsys.readouterr().err
    assert not (tmp_path / 'latest.pth').exists()


def test_device_index_under_torchrun_is_an_error(monkeypatch):
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('LOCAL_RANK', '0')
    with pytest.raises(ValueError, match='CUDA_VISIBLE_DEVICES'):
        train.setup_distributed('cuda:1')  # used to train on the CPU without a word
    assert not torch.distributed.is_initialized()


def test_log_gives_images_per_second_and_the_loader_wait(tiny_set, tmp_path, monkeypatch):
    # On a clock that only the loader (0.3 s a batch) and validation (3 s) move, a window of 4 steps took 1.2 s
    # and all of it was waiting. Windows straddle the epochs' ends (3 steps), where validation runs: it must
    # not count.
    clock = [0.0]
    monkeypatch.setattr(train, 'time', types.SimpleNamespace(perf_counter=lambda: clock[0], time=time.time))
    make_loader, validate = train.make_loader, train.validate

    class SlowLoader:
        def __init__(self, *args, **kwargs):
            self.loader = make_loader(*args, **kwargs)

        def __iter__(self):
            for batch in self.loader:
                clock[0] += 0.3
                yield batch

    def slow_validate(*args, **kwargs):
        clock[0] += 3
        return validate(*args, **kwargs)

    monkeypatch.setattr(train, 'make_loader', SlowLoader)
    monkeypatch.setattr(train, 'validate', slow_validate)
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '12', '--print_freq', '4', '--val_fraction',
                               '0.25', '--val_per_fg', '1', '--test_freq', '1')) == 0
    with open(tmp_path / 'log.jsonl') as f:
        records = [json.loads(line) for line in f]
    windows = [r for r in records if 'loss' in r]
    assert [r['step'] for r in windows] == [4, 8, 12] and sum('val' in r for r in records) == 4
    for r in windows:
        assert r['images_per_s'] == pytest.approx(1 / 0.3) and r['loader_wait'] == pytest.approx(1)


@pytest.mark.parametrize('error', [torch.OutOfMemoryError("CUDA out of memory (simulated)"),
                                   net.PastIndexLimit("one image's map is past the 2^31 (simulated)")])
def test_validation_out_of_memory_falls_back_to_tiles(tiny_set, tmp_path, monkeypatch, capsys, error):
    real_predict = train.deploy.predict
    methods = []

    def predict(*args, method='whole', **kwargs):
        methods.append(method)
        if method == 'whole':
            raise error
        return real_predict(*args, method=method, **kwargs)

    monkeypatch.setattr(train.deploy, 'predict', predict)
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '1', '--val_fraction', '0.25',
                               '--val_per_fg', '1')) == 0
    assert methods == ['whole', 'crop']
    err = capsys.readouterr().err
    why = '2^31' if isinstance(error, net.PastIndexLimit) else 'out of memory'
    assert why in err and 'fg' in err  # names the image
    with open(tmp_path / 'log.jsonl') as f:
        assert any('val' in json.loads(line) for line in f)


def test_training_in_bf16_on_the_cpu(tiny_set, tmp_path, capsys):
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '2', '--precision', 'bf16')) == 0
    with open(tmp_path / 'log.jsonl') as f:
        assert json.loads(f.readline())['dtype'] == 'bfloat16'
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '2', '--precision', 'fp16')) == 1
    assert 'fp16' in capsys.readouterr().err


def test_training_runs_channels_last_with_a_fused_adam(tiny_set, tmp_path, monkeypatch):
    # the layout and the optimizer that made a CPU step 1.5-1.8x faster at 320x320 (README, "Training")
    layouts, forward = [], net.DIM.forward

    def spy(model, img, trimap, refine=True):
        layouts.append((img.is_contiguous(memory_format=torch.channels_last),
                        model.encoder.conv1_2.weight.is_contiguous(memory_format=torch.channels_last)))
        return forward(model, img, trimap, refine)

    monkeypatch.setattr(net.DIM, 'forward', spy)
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '1')) == 0
    assert layouts == [(True, True)]
    ckpt = torch.load(tmp_path / 'latest.pth', weights_only=True)
    assert ckpt['optimizer']['param_groups'][0]['fused'] is True


class ThreadsDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        return cv2.getNumThreads()


def test_loader_workers_run_one_opencv_thread():
    loader = torch.utils.data.DataLoader(ThreadsDataset(), num_workers=1, worker_init_fn=data.worker_init,
                                         multiprocessing_context='spawn')
    assert [int(x) for x in loader] == [1]


def test_lr_schedule_warms_up_decays_and_reaches_the_optimizer(tiny_set, tmp_path):
    assert [train.lr_at(1.0, s, 0, 10, warmup=4) for s in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1, 1])
    cosine = [train.lr_at(1.0, s, 0, 10, cosine=True) for s in range(10)]
    assert cosine[0] == 1 and all(a > b for a, b in zip(cosine, cosine[1:])) and cosine[-1] < 0.03
    assert cosine[5] == pytest.approx(0.5)
    assert [train.lr_at(1.0, 0, e, 10, step_epochs=2) for e in range(5)] == pytest.approx([1, 1, .1, .1, .01])
    assert train.lr_at(1.0, 7, 7, 10) == 1  # no schedule asked: constant
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '6', '--lr', '1e-4', '--warmup', '2',
                               '--cosine')) == 0
    with open(tmp_path / 'log.jsonl') as f:
        used = [r['lr'] for r in map(json.loads, f) if 'loss' in r]  # the rate of each logged step
    assert used == pytest.approx([train.lr_at(1e-4, s, 0, 6, warmup=2, cosine=True) for s in range(6)])


def test_checkpoint_records_skip_and_a_different_skip_is_refused(tiny_set, tmp_path, capsys):
    # The skip variant adds no parameters: its weights would load into the plain model without a word.
    assert train.main(run_args(tiny_set, tmp_path / 'skip', '--max_iters', '1', '--skip')) == 0
    path = tmp_path / 'skip' / 'latest.pth'
    assert torch.load(path, weights_only=True)['skip'] is True
    capsys.readouterr()
    for flag in ('--pretrain', '--resume'):
        assert train.main(run_args(tiny_set, tmp_path / 'plain', '--max_iters', '2', flag, str(path))) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err and 'with --skip' in err
    assert train.main(run_args(tiny_set, tmp_path / 'skip', '--max_iters', '2', '--skip', '--resume', str(path))) == 0


def test_loader_is_sized_to_the_machine(monkeypatch):
    monkeypatch.setattr(os, 'cpu_count', lambda: 16)
    page, pages = 4096, 128 * 2**30 // 4096  # 128 GiB
    monkeypatch.setattr(os, 'sysconf', lambda name: {'SC_PAGE_SIZE': page, 'SC_PHYS_PAGES': pages}[name])
    assert train.loader_size(None, None, 1) == (15, 128 * 1024 // 2 // 15)  # half the memory over 15 workers
    assert train.loader_size(None, None, 2) == (7, 128 * 1024 // 2 // 14)  # two GPUs share the cores
    assert train.loader_size(3, 700, 8) == (3, 700)  # given values stay
    monkeypatch.setattr(os, 'cpu_count', lambda: 64)
    assert train.loader_size(None, None, 1)[0] == 16
    monkeypatch.setattr(os, 'cpu_count', lambda: 2)
    assert train.loader_size(None, None, 4) == (1, 128 * 1024 // 2 // 4)
