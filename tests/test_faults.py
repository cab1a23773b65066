"""Bad input and faults: every script names the file (and line or flag) at fault in one line, still
processes every good file whole, leaves no temporary file and exits non-zero. One test per class of fault,
run over the scripts it concerns."""
import argparse
import builtins
import errno
import io
import os
import pickle
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch

import chg_model
import composite
import data
import deploy
import metrics
import net
import train
from test_chg_model import fake_torchvision
from test_deploy import make_sample

H, W = 40, 56


def sample(seed=0):
    """test_deploy's smooth image and trimap (background, an unknown ring, a foreground core), H x W, and an
    alpha that agrees with the trimap."""
    image, trimap = make_sample(H, W, seed)
    alpha = np.where(trimap == 128, 100, trimap).astype(np.uint8)
    return image, trimap, alpha


def huge_png():
    """A PNG whose header claims 100000 x 100000 pixels, more than OpenCV decodes."""
    def chunk(kind, body):
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 100000, 100000, 8, 0, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\0' * 100)) + chunk(b'IEND', b''))


def cut(ext):
    """An image file of `ext` cut to 60% of its bytes, as a broken download leaves it."""
    whole = cv2.imencode(ext, sample(5)[0])[1].tobytes()
    return whole[:len(whole) * 6 // 10]


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'stage1.pth'
    torch.manual_seed(0)
    net.save_checkpoint({'format': net.CHECKPOINT_FORMAT, 'model': net.DIM().state_dict(), 'stage': 1,
                         'step': 0}, path)
    return path


# ------------------------------------------------------------------------------ one small job per script

def deploy_job(root, ckpt, bad_name='bad.png'):
    """Images good.png and `bad_name` (the caller fills it) with trimaps; mattes go to root/out."""
    image, trimap, _ = sample()
    for name in ('good.png', bad_name):
        data.write_png(str(root / 'trimap' / (os.path.splitext(name)[0] + '.png')), trimap)
    data.write_png(str(root / 'image' / 'good.png'), image)
    data.write_png(str(root / 'image' / bad_name), image)
    argv = ['--img_dir', str(root / 'image'), '--trimap_dir', str(root / 'trimap'), '--resume', str(ckpt),
            '--save_dir', str(root / 'out'), '--device', 'cpu']
    return dict(main=deploy.main, argv=argv, bad=root / 'image' / bad_name, out=root / 'out' / 'bad.png',
                good=[root / 'out' / 'good.png'])


def metrics_job(root, bad_name='bad.png'):
    """Predictions good.png and `bad_name` scored against alphas and trimaps; scores in root/out/scores.csv."""
    _, trimap, alpha = sample()
    for name in ('good.png', bad_name):
        stem = os.path.splitext(name)[0]
        data.write_png(str(root / 'alpha' / (stem + '.png')), alpha)
        data.write_png(str(root / 'trimap' / (stem + '.png')), trimap)
        data.write_png(str(root / 'pred' / name), alpha)
    argv = ['--pred', str(root / 'pred'), '--alpha', str(root / 'alpha'), '--trimap', str(root / 'trimap'),
            '--csv', str(root / 'out' / 'scores.csv'), '--workers', '1']
    return dict(main=metrics.main, argv=argv, bad=root / 'pred' / bad_name, out=root / 'out' / 'scores.csv',
                good=[root / 'out' / 'scores.csv'])


def composite_job(root, bad_name='b1.png'):
    """Foreground a on backgrounds b0.png and `bad_name`: composites a_0, a_1 in root/out."""
    image, _, alpha = sample()
    data.write_png(str(root / 'fg' / 'a.png'), image)
    data.write_png(str(root / 'alpha' / 'a.png'), alpha)
    data.write_png(str(root / 'bg' / 'b0.png'), sample(1)[0])
    data.write_png(str(root / 'bg' / bad_name), sample(2)[0])
    argv = ['--fg_dir', str(root / 'fg'), '--alpha_dir', str(root / 'alpha'), '--bg_dir', str(root / 'bg'),
            '--num_bg', '2', '--workers', '1', '--resize', 'opencv', '--out_dir', str(root / 'out')]
    return dict(main=composite.main, argv=argv, bad=root / 'bg' / bad_name, out=root / 'out' / 'image' / 'a_1.png',
                good=[root / 'out' / 'image' / 'a_0.png', root / 'out' / 'composites.csv'])


def train_job(root, bad_name='f2.png', *extra):
    """Online training on foregrounds f0, f1 and `bad_name` (the caller may spoil it); runs in root/out."""
    for i, name in enumerate(['f0.png', 'f1.png', bad_name]):
        image, _, alpha = sample(i)
        data.write_png(str(root / 'fg' / name), image)
        data.write_png(str(root / 'alpha' / (os.path.splitext(name)[0] + '.png')), alpha)
    data.write_png(str(root / 'bg' / 'b0.png'), sample(3)[0])
    argv = ['--fg_dir', str(root / 'fg'), '--alpha_dir', str(root / 'alpha'), '--bg_dir', str(root / 'bg'),
            '--size_h', '64', '--size_w', '64', '--crop_h', '64', '--workers', '0', '--val_fraction', '0',
            '--max_iters', '3', '--init', 'he', '--save_dir', str(root / 'out'), *extra]
    return dict(main=train.main, argv=argv, bad=root / 'fg' / bad_name, out=root / 'out' / 'latest.pth', good=[])


def chg_model_job(root):
    torch.save(fake_torchvision(), root / 'vgg.pth')
    argv = ['--vgg', str(root / 'vgg.pth'), '--out', str(root / 'out' / 'dim.pth')]
    return dict(main=chg_model.main, argv=argv, bad=root / 'vgg.pth', out=root / 'out' / 'dim.pth', good=[])


def make_job(script, root, ckpt, **kw):
    root.mkdir(exist_ok=True)
    if script == 'deploy':
        return deploy_job(root, ckpt, **kw)
    return dict(metrics=metrics_job, composite=composite_job, train=train_job, chg_model=chg_model_job)[script](
        root, **kw)


def run(job, capsys):
    """(exit status, error lines) of the job; asserts that no traceback and no temporary file is left."""
    rc = job['main']([str(a) for a in job['argv']])
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    root = job['bad'].parent.parent if job['main'] is not chg_model.main else job['bad'].parent
    assert not list(root.rglob('*.tmp')), list(root.rglob('*.tmp'))
    return rc, [line for line in err.splitlines() if 'error' in line]


def assert_named(rc, errors, path, what):
    assert rc != 0
    assert any(os.path.basename(str(path)) in line and what in line for line in errors), (path, what, errors)


def assert_good_written(job):
    for path in job['good']:
        if path.suffix == '.png':
            assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2] == (H, W)
        else:
            assert 'good' in path.read_text() or 'a_0' in path.read_text()


# ------------------------------------------------------------------------------------- unreadable images

@pytest.mark.parametrize('script', ['deploy', 'metrics', 'composite', 'train'])
def test_image_over_opencv_limit_is_named_and_the_rest_goes_on(script, tmp_path, ckpt, capsys):
    job = make_job(script, tmp_path, ckpt)
    job['bad'].write_bytes(huge_png())  # cv2.error from imread/imdecode, which no script may let through
    rc, errors = run(job, capsys)
    assert_named(rc, errors, job['bad'], 'OpenCV refuses to decode it')
    assert_good_written(job)


@pytest.mark.parametrize('script, ext', [('deploy', '.jpg'), ('deploy', '.png'), ('metrics', '.jpg'),
                                         ('composite', '.jpg'), ('train', '.jpg')])
def test_truncated_image_is_named_and_the_rest_goes_on(script, ext, tmp_path, ckpt, capsys):
    name = dict(deploy='bad', metrics='bad', composite='b1', train='f2')[script] + ext
    job = make_job(script, tmp_path, ckpt, bad_name=name)
    job['bad'].write_bytes(cut(ext))  # OpenCV's imread fills a cut JPEG with gray and says nothing
    rc, errors = run(job, capsys)
    assert_named(rc, errors, job['bad'], f'truncated {ext[1:].upper().replace("JPG", "JPEG")}')
    assert_good_written(job)


def test_truncation_check_follows_the_file_structure():
    """Whole files of every common kind pass, every cut is caught, and metrics.py's copy agrees."""
    image = sample(4)[0]
    files = [cv2.imencode('.jpg', image)[1].tobytes(), cv2.imencode('.png', image)[1].tobytes(),
             cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
             cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_RST_INTERVAL, 1])[1].tobytes()]
    try:  # Pillow's optimised progressive JPEG too, when Pillow is there (it is optional)
        from PIL import Image
        with io.BytesIO() as f:
            Image.fromarray(image).save(f, 'JPEG', progressive=True, optimize=True)
            files.append(f.getvalue())
    except ImportError:
        pass
    thumb = b'Exif\0\0' + files[0]  # an APP1 segment holding a whole JPEG: its end marker is not the file's
    files.append(files[0][:2] + b'\xff\xe1' + (len(thumb) + 2).to_bytes(2, 'big') + thumb + files[0][2:])
    appended = files[0] + b'\0' * 10 + b'\xff\xda\x00\x04 data appended after the end'
    for buf in files + [appended]:
        assert data.truncated(buf) is None and metrics._truncated(buf) is None
    for buf in files:
        kind = 'PNG' if buf[:4] == b'\x89PNG' else 'JPEG'
        for n in (len(buf) // 10, len(buf) // 2, len(buf) - 1):
            assert data.truncated(buf[:n]) == kind == metrics._truncated(buf[:n]), n


# ------------------------------------------------------------------------------- unwritable places

class FullDisk:
    """open() whose files for `target`'s temporary file take a few bytes, then raise ENOSPC."""

    def __init__(self, target):
        self.target, self.open = os.path.basename(str(target)), builtins.open

    def __call__(self, file, mode='r', *args, **kwargs):
        f = self.open(file, mode, *args, **kwargs)
        if isinstance(file, str) and os.path.basename(file).startswith(self.target) and file.endswith('.tmp'):
            real_write = f.write

            def write(chunk):
                real_write(chunk[:3])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            f.write = write
        return f


@pytest.mark.parametrize('script', ['deploy', 'metrics', 'composite', 'train', 'chg_model'])
@pytest.mark.parametrize('place', ['output is a folder', 'its folder is a file', 'disk full'])
def test_unwritable_output_is_named_and_leaves_no_temporary_file(script, place, tmp_path, ckpt, capsys,
                                                                  monkeypatch):
    job = make_job(script, tmp_path, ckpt)
    out = job['out']
    if place == 'output is a folder':
        (out / 'x').mkdir(parents=True)
        named = out
    elif place == 'its folder is a file':
        out.parent.parent.mkdir(parents=True, exist_ok=True)
        out.parent.write_bytes(b'')
        named = out.parent
    else:
        monkeypatch.setattr(builtins, 'open', FullDisk(out))
        named = out
    rc, errors = run(job, capsys)
    assert_named(rc, errors, named, '')
    if place != 'its folder is a file' and script != 'metrics':  # the other outputs are still written whole
        assert_good_written(job)


# ----------------------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize('script', ['deploy', 'train', 'chg_model'])
def test_nan_weights_are_refused_by_name(script, tmp_path, ckpt, capsys):
    job = make_job(script, tmp_path / 'job', ckpt)
    if script == 'chg_model':
        state = fake_torchvision()
        state['features.28.bias'][3] = float('nan')
        torch.save(state, job['bad'])
        path = job['bad']
    else:
        saved = torch.load(ckpt, weights_only=True)
        saved['model']['decoder.deconv1.weight'][0, 0, 0, 0] = float('nan')
        path = tmp_path / 'nan.pth'
        torch.save(saved, path)
        flag = '--resume' if script == 'deploy' else '--pretrain'
        job['argv'] += [flag, str(path)]
    rc, errors = run(job, capsys)
    assert_named(rc, errors, path, 'NaN')
    assert not job['out'].exists()


@pytest.mark.parametrize('fault', ['out of memory', '2^31', 'not finite'])
def test_deploy_names_an_image_the_network_fails_on_and_goes_on(fault, tmp_path, ckpt, capsys, monkeypatch):
    job = make_job('deploy', tmp_path, ckpt)
    data.write_png(str(job['out']), np.full((H, W), 200, np.uint8))  # an older run's matte of the bad image
    real_predict = deploy.predict

    def predict(model, image, trimap, stage, **options):
        predict.calls += 1
        if predict.calls == 1:  # the first image in name order: bad.png
            if fault == 'out of memory':
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            if fault == '2^31':  # one image too large for CUDA's pooling (net.in_batch_parts)
                raise net.PastIndexLimit("one image's map of 2^31 elements (simulated)")
            return np.full(trimap.shape, np.nan, np.float32)
        return real_predict(model, image, trimap, stage, **options)
    predict.calls = 0
    monkeypatch.setattr(deploy, 'predict', predict)
    rc, errors = run(job, capsys)
    assert_named(rc, errors, job['bad'], fault)
    assert_good_written(job)
    assert not job['out'].exists()  # the older matte would pass for this run's


@pytest.mark.parametrize('kind', ['zip', 'legacy', 'plain pickle'])
@pytest.mark.parametrize('script', ['deploy', 'train', 'chg_model'])
def test_refused_pickle_names_what_it_holds_and_trust(script, kind, tmp_path, ckpt, capsys):
    job = make_job(script, tmp_path / 'job', ckpt)
    path = tmp_path / 'pickled.pth'
    content = {'format': 1, 'model': {}, 'stage': 1, 'args': argparse.Namespace(lr=1e-5)}
    if kind == 'plain pickle':
        with open(path, 'wb') as f:
            pickle.dump(content, f, protocol=4)
    else:
        torch.save(content, path, _use_new_zipfile_serialization=kind == 'zip')
    job['argv'] += {'deploy': ['--resume', path], 'train': ['--pretrain', path],
                    'chg_model': ['--mmagic', path]}[script]
    if script == 'chg_model':
        job['argv'] = [a for a in job['argv'] if a not in ('--vgg', str(job['bad']))]
    rc, errors = run(job, capsys)
    assert_named(rc, errors, path, 'argparse.Namespace')
    assert any('--trust' in line for line in errors)


@pytest.mark.parametrize('script', ['deploy', 'train'])
def test_shape_mismatch_names_the_layers(script, tmp_path, ckpt, capsys):
    job = make_job(script, tmp_path / 'job', ckpt)
    saved = torch.load(ckpt, weights_only=True)
    saved['model']['encoder.conv1_1.weight'] = saved['model']['encoder.conv1_1.weight'][:, :3].clone()
    saved['model']['refiner.refine_pred.bias'] = torch.zeros(2)
    path = tmp_path / 'other.pth'
    torch.save(saved, path)
    job['argv'] += ['--resume' if script == 'deploy' else '--pretrain', str(path)]
    rc, errors = run(job, capsys)
    assert_named(rc, errors, path, 'encoder.conv1_1.weight is (64, 3, 3, 3)')
    assert any('refiner.refine_pred.bias' in line for line in errors)


# ------------------------------------------------------------------------------------------- training

@pytest.mark.parametrize('workers', ['0', '1'])
def test_loader_error_is_one_named_line_with_or_without_workers(workers, tmp_path, capsys):
    job = train_job(tmp_path, 'f2.png', '--workers', workers)
    job['bad'].write_bytes(b'not an image')
    rc, errors = run(job, capsys)
    assert_named(rc, errors, job['bad'], 'not a readable image')
    assert len(errors) == 1, errors  # a worker's exception would arrive as its 25-line traceback text


@pytest.mark.parametrize('fault, line', [('not UTF-8', 3), ('empty bg', 2), ('empty fg', 3)])
def test_composite_list_errors_name_file_and_line(fault, line, tmp_path, capsys):
    job = train_job(tmp_path)
    rows = [f'f{i},fg/f{i}.png,alpha/f{i}.png,bg/b0.png' for i in range(3)]
    if fault == 'not UTF-8':
        rows[1] = rows[1].replace('f1', 'f\xe9')  # written below in Latin-1
    elif fault == 'empty bg':
        rows[0] = 'f0,fg/f0.png,alpha/f0.png,'
    else:
        rows[1] = 'f1,,alpha/f1.png,bg/b0.png'
    csv_path = tmp_path / 'composites.csv'
    csv_path.write_bytes(('name,fg,alpha,bg\n' + '\n'.join(rows) + '\n').encode('latin-1'))
    job['argv'] = ['--img_dir', str(tmp_path)] + job['argv'][6:]  # composites.csv instead of the folders
    rc, errors = run(job, capsys)
    assert_named(rc, errors, csv_path, f'line {line}')


# ------------------------------------------------------------------------------------------------ flags

@pytest.mark.parametrize('script, flag, value', [
    ('train', '--batch_size', '0'), ('train', '--print_freq', '0'), ('train', '--ckpt_save_freq', '0'),
    ('train', '--test_freq', '0'), ('train', '--crop_h', '0'), ('train', '--epochs', '0'),
    ('train', '--max_iters', '-5'), ('train', '--lr', 'nan'), ('train', '--val_fraction', '1'),
    ('train', '--workers', '-1'), ('train', '--size_h', '16'), ('train', '--wl_weight', '2'),
    ('deploy', '--size_h', '0'), ('deploy', '--tile', '0'), ('deploy', '--max_size', '-1'),
    ('composite', '--num_bg', '0'), ('composite', '--workers', '0'), ('metrics', '--workers', '0')])
def test_nonsense_numbers_are_refused_at_parse_time_with_the_flag(script, flag, value, capsys):
    parser = dict(train=train, deploy=deploy, composite=composite, metrics=metrics)[script].get_args_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_known_args([flag, value])
    assert exit_info.value.code == 2 and flag in capsys.readouterr().err


def test_a_run_with_nothing_left_to_train_says_so(tmp_path, capsys):
    job = train_job(tmp_path)
    job['argv'][job['argv'].index('--max_iters') + 1] = '1'
    assert train.main(job['argv']) == 0
    capsys.readouterr()
    assert train.main(job['argv'] + ['--resume', str(job['out'])]) == 0
    assert 'nothing to train' in capsys.readouterr().err


# ------------------------------------------------------------------------------------- one stem, two files

@pytest.mark.parametrize('script, folder', [('deploy', 'image'), ('deploy', 'trimap'), ('metrics', 'alpha'),
                                            ('composite', 'alpha'), ('train', 'fg')])
def test_stem_clash_is_one_line_naming_both_files(script, folder, tmp_path, ckpt, capsys):
    job = make_job(script, tmp_path, ckpt)
    stem = dict(deploy='bad', metrics='bad', composite='a', train='f2')[script]
    first = tmp_path / folder / f'{stem}.png'
    if script == 'composite':  # the foreground's own name is no clash: only stems are ambiguous
        os.rename(first, tmp_path / folder / f'{stem}.tif')
        first = tmp_path / folder / f'{stem}.tif'
        job['good'] = []
    second = tmp_path / folder / f'{stem}.jpg'
    second.write_bytes(cv2.imencode('.jpg', cv2.imread(str(first), cv2.IMREAD_UNCHANGED))[1].tobytes())
    rc, errors = run(job, capsys)
    clash = [line for line in errors if 'same stem' in line]
    assert rc != 0 and len(clash) == 1 and first.name in clash[0] and second.name in clash[0], errors
    assert_good_written(job)
