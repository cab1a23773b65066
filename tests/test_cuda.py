"""The GPU path: skipped where no CUDA device is present (run them on a GPU machine)."""
import json

import numpy as np
import pytest
import torch

import deploy
import net
import train
from test_deploy import make_sample
from test_net import inputs
from test_train import logged_losses, run_args, tiny_set  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_training_steps_on_the_gpu(tiny_set, tmp_path, precision):  # noqa: F811
    if precision == 'bf16' and torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("bf16 is emulated before compute capability 8.0")
    assert train.main(run_args(tiny_set, tmp_path, '--max_iters', '3', '--device', 'cuda',
                               '--precision', precision, '--lr', '1e-4')) == 0
    with open(tmp_path / 'log.jsonl') as f:
        first = json.loads(f.readline())
    assert first['device'].startswith('cuda') and first['dtype'] == {'bf16': 'bfloat16', 'fp16': 'float16'}[precision]
    ckpt = torch.load(tmp_path / 'latest.pth', weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt['model'].values())
    assert bool(ckpt['scaler']) == (precision == 'fp16')  # only fp16 runs a gradient scaler


def test_deploy_on_the_gpu_equals_the_cpu():
    torch.manual_seed(0)
    cpu_model = net.DIM().eval()
    gpu_model = net.DIM().eval()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.to('cuda', memory_format=torch.channels_last)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # plain fp32 to compare
    try:
        for seed, (h, w) in enumerate([(64, 80), (97, 131), (160, 160)]):
            image, trimap = make_sample(h, w, seed)
            cpu = deploy.predict(cpu_model, image, trimap, 3, dtype=torch.float32)
            gpu = deploy.predict(gpu_model, image, trimap, 3, dtype=torch.float32)
            assert gpu.dtype == np.float32 and np.abs(cpu - gpu).max() < 1 / 255, (h, w)
            low = deploy.predict(gpu_model, image, trimap, 3)  # auto: bf16 or fp16 autocast
            assert low.dtype == np.float32 and np.abs(cpu - low).mean() < 1 / 255, (h, w)
    finally:
        torch.backends.cudnn.allow_tf32 = True


@pytest.mark.parametrize('deterministic', [False, True])
def test_resume_on_the_gpu(tiny_set, tmp_path, deterministic):  # noqa: F811
    # By default not bit-exact on a GPU (cuDNN's benchmark picks its algorithms per run, and some of them add
    # with atomics): close. With --deterministic, equal.
    whole, part = tmp_path / 'whole', tmp_path / 'part'
    common = ['--device', 'cuda', '--lr', '1e-4'] + ['--deterministic'] * deterministic
    try:
        assert train.main(run_args(tiny_set, whole, '--max_iters', '6', *common)) == 0
        assert train.main(run_args(tiny_set, part, '--max_iters', '3', *common)) == 0
        assert train.main(run_args(tiny_set, part, '--max_iters', '6', '--resume', str(part / 'latest.pth'),
                                   *common)) == 0
    finally:
        torch.use_deterministic_algorithms(False)
    expected, resumed = logged_losses(whole), logged_losses(part)
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        if deterministic:
            assert resumed[step] == expected[step]
        else:
            assert resumed[step] == pytest.approx(expected[step], rel=0.05, abs=1e-3)
    if deterministic:
        weights = [torch.load(run / 'latest.pth', weights_only=True)['model'] for run in (whole, part)]
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_batch_past_the_index_limit_gives_each_image_its_own_alpha():
    # 330 images of 320x320: the 64-channel full-size maps hold 2.16e9 elements, past the 2^31 that PyTorch's
    # CUDA pooling kernels index; net.in_batch_parts splits those calls. Some 35 GiB in fp32.
    if torch.cuda.get_device_properties(0).total_memory < 60 * 2 ** 30:
        pytest.skip("needs 60 GiB of GPU memory")
    torch.manual_seed(0)
    model = net.DIM(init='he').eval().to('cuda', memory_format=torch.channels_last)  # Xavier's alpha is flat
    pair = [torch.cat(t).cuda() for t in zip(inputs(320, 320, 0), inputs(320, 320, 1))]  # img, trimap: 2 images
    torch.backends.cudnn.allow_tf32 = False  # plain fp32 to compare
    try:
        with torch.inference_mode():
            alone, _ = model(*pair, refine=False)
            batch, _ = model(*(t.repeat(165, 1, 1, 1) for t in pair), refine=False)
    finally:
        torch.backends.cudnn.allow_tf32 = True
    assert batch.shape[0] == 330 and (alone[0] - alone[1]).abs().max() > 0.02
    for i in (0, 1, 200, 201, 328, 329):
        assert (batch[i] - alone[i % 2]).abs().max() < 1e-3, i
