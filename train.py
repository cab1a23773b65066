"""Train Deep Image Matting, one stage at a time.

  stage 0  encoder-decoder, alpha loss only
  stage 1  encoder-decoder, wl * alpha loss + (1 - wl) * composition loss      (start: VGG-16, chg_model.py)
  stage 2  refinement only, encoder-decoder frozen, alpha loss on the refined alpha   (start: stage 1)
  stage 3  everything: stage-1 loss on the encoder-decoder alpha + alpha loss on the refined alpha
           (start: stage 2)

One process: `python train.py --stage 1 --imgDir data/comp1k/train/image --pretrain vgg.pth`.
Several GPUs: `torchrun --nproc_per_node=N train.py ...` (DistributedDataParallel; --batchSize is per process).
"""
import argparse
import contextlib
import datetime
import functools
import json
import math
import os
import platform
import random
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import data
import deploy
import metrics
import net
from deploy import float_between as between, int_at_least as at_least
from loss import stage_loss


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=type('Formatter', (argparse.ArgumentDefaultsHelpFormatter,
                                                                   argparse.RawDescriptionHelpFormatter), {}))
    p.add_argument('--stage', type=int, default=1, choices=[0, 1, 2, 3], help="what trains and which loss (above)")
    g = p.add_argument_group('data')
    g.add_argument('--img_dir', '--imgDir', help="composites written by tools/composite.py (the folder holding "
                   "composites.csv, or its image/ subfolder): fixed foreground/background pairs")
    g.add_argument('--fg_dir', '--fgDir', help="foregrounds, for online composition (with --alpha_dir, --bg_dir)")
    g.add_argument('--alpha_dir', '--alphaDir', help="alphas named like the foregrounds")
    g.add_argument('--bg_dir', '--bgDir', help="backgrounds; given, every sample draws a random one (online mode)")
    g.add_argument('--size_h', type=at_least(32), default=320, help="network input size of a training crop")
    g.add_argument('--size_w', type=at_least(32), default=320, help="must equal --size_h")
    g.add_argument('--crop_h', '--crop_sizes', type=_int_list, default=[320, 480, 640],
                   help="crop sizes drawn per sample, comma separated; each crop is resized to size_h")
    g.add_argument('--crop_w', type=_int_list, default=None, help="accepted for old scripts; must equal --crop_h")
    g.add_argument('--val_fraction', type=between(0, 1, open_high=True), default=0.05,
                   help="share of the foregrounds held out for validation (never their composites)")
    g.add_argument('--val_per_fg', type=at_least(1), default=2, help="validation composites per held-out foreground")
    g.add_argument('--workers', type=at_least(0), default=None, help="data loader processes per training process "
                   "(one OpenCV thread each); None: the machine's cores less one per training process, at most 16")
    g.add_argument('--cache_mb', type=at_least(1), default=None, help="decoded images each loader process keeps; "
                   "None: half the machine's memory shared among all loader processes, at least 500")
    g = p.add_argument_group('optimisation (the paper: Adam, lr 1e-5, batch 1, no schedule)')
    g.add_argument('--batch_size', '--batchSize', type=at_least(1), default=1, help="per process")
    g.add_argument('--lr', type=between(0, math.inf, open_low=True, open_high=True), default=1e-5,
                   help="for a batch of one image (see --lr_scale)")
    g.add_argument('--lr_scale', default='sqrt', choices=sorted(LR_RULES),
                   help="learning rate for batch B in all (--batch_size x processes): --lr times 1, sqrt(B) or B; "
                   "sqrt, the square-root rule for Adam, was the only one of the three that trained well at batch "
                   "8 (README); at batch 1 all three are --lr")
    g.add_argument('--step', '--lr_step', type=at_least(0), default=0,
                   help="divide lr by 10 every this many epochs; 0: never")
    g.add_argument('--warmup', type=at_least(0), default=0, help="steps over which lr rises linearly from 0")
    g.add_argument('--cosine', action='store_true', help="lr follows a half cosine to 0 over the run's steps "
                   "(--epochs or --max_iters)")
    g.add_argument('--epochs', '--nEpochs', type=at_least(1), default=25, help="epochs over the training composites")
    g.add_argument('--max_iters', type=at_least(0), default=0, help="stop after this many steps in all; 0: no limit")
    g.add_argument('--wl_weight', type=between(0, 1), default=0.5,
                   help="weight of the alpha loss against the composition loss")
    g.add_argument('--skip', action='store_true', help="add encoder features to the unpooled decoder maps "
                   "(a variant, not the paper)")
    g.add_argument('--init', default='xavier', choices=['xavier', 'he'],
                   help="initialisation of layers no checkpoint sets; from scratch (no --pretrain) use he (net.py)")
    g.add_argument('--seed', type=at_least(0), default=0)
    g = p.add_argument_group('checkpoints and validation')
    g.add_argument('--save_dir', '--saveDir', default='runs/stage1', help="latest.pth, best.pth and log.jsonl")
    g.add_argument('--pretrain', help="start from this model (chg_model.py output or an earlier stage)")
    g.add_argument('--resume', help="continue this run: model, optimizer, scaler, step and RNG state")
    g.add_argument('--trust', action='store_true', help="allow full unpickling of --pretrain/--resume files")
    g.add_argument('--print_freq', '--printFreq', type=at_least(1), default=100,
                   help="steps between logged train losses")
    g.add_argument('--ckpt_save_freq', '--ckptSaveFreq', type=at_least(1), default=1,
                   help="epochs between latest.pth saves")
    g.add_argument('--test_freq', '--testFreq', type=at_least(1), default=1, help="epochs between validations")
    g.add_argument('--test_img_dir', '--testImgDir', help="also score this test set at each validation "
                   "(logged only, never used to pick best.pth)")
    g.add_argument('--test_trimap_dir', '--testTrimapDir')
    g.add_argument('--test_alpha_dir', '--testAlphaDir', '--testAlaphaDir')
    g.add_argument('--test_res_dir', '--testResDir', help="write the test predictions here")
    g.add_argument('--crop_or_resize', default='whole', choices=['whole', 'crop', 'resize'],
                   help="inference method for validation (see deploy.py)")
    g.add_argument('--max_size', type=at_least(0), default=1600, help="longer side above which validation downscales")
    g.add_argument('--device', default='auto', help="auto, cpu, cuda, cuda:1, ... (under torchrun: auto, cpu or "
                   "cuda; each process takes the GPU of its LOCAL_RANK)")
    g.add_argument('--precision', default='auto', choices=net.PRECISIONS,
                   help="autocast dtype of training and validation; auto: bf16 on GPUs of compute capability 8.0 "
                   "or more, fp16 with a gradient scaler on older ones, bf16 on CPUs with bf16 units (AMX or "
                   "AVX512-BF16), fp32 on other CPUs")
    g.add_argument('--compile', action='store_true', help="torch.compile the training step's model (validation "
                   "runs uncompiled: its image sizes vary)")
    g.add_argument('--deterministic', action='store_true', help="deterministic algorithms only "
                   "(torch.use_deterministic_algorithms), so that a GPU run repeats and resumes with the same "
                   "losses, as a CPU run does anyway; slower (README, Training)")
    return p


def _int_list(text):
    """'320,480,640' -> [320, 480, 640]; each a whole number of pixels, at least 1."""
    values = [int(v) for v in text.replace(' ', ',').split(',') if v]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected sizes of at least 1 pixel, comma separated, not {text!r}")
    return values


# How the learning rate grows with the batch (all processes together), relative to --lr at batch 1. For Adam
# the square-root rule keeps the noise of an update about constant (Malladi et al., NeurIPS 2022); the linear
# rule is SGD's (Goyal et al., 2017). 'none' keeps --lr whatever the batch, as the paper's batch-1 recipe did.
LR_RULES = {'none': lambda batch: 1.0, 'sqrt': math.sqrt, 'linear': float}
# Rank 0 validates alone while the others wait at a barrier: NCCL's default 10 minutes is too short for
# scoring a large test set at 1600 pixels (1,000 Composition-1k images).
DIST_TIMEOUT = datetime.timedelta(hours=3)


# ---------------------------------------------------------------------------------------------- setup

def setup_distributed(device_arg):
    """(rank, world, device); a process group only when torchrun set RANK, each process on the GPU of its
    LOCAL_RANK (nccl) or on the CPU (gloo)."""
    if 'RANK' not in os.environ:
        return 0, 1, net.pick_device(device_arg)
    if device_arg not in ('auto', 'cpu', 'cuda'):
        raise ValueError(f"--device {device_arg} under torchrun: each process uses the GPU of its LOCAL_RANK; "
                         f"pick the GPUs with CUDA_VISIBLE_DEVICES (e.g. CUDA_VISIBLE_DEVICES=1,2 torchrun ...) "
                         f"and give --device cuda, auto or cpu")
    device = net.pick_device(device_arg)  # refuses 'cuda' without a GPU
    rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    if device.type == 'cuda':
        device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
        torch.cuda.set_device(device)
    dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo', timeout=DIST_TIMEOUT)
    return rank, world, device


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def use_deterministic_algorithms():
    """From here on every operation picks a deterministic algorithm or raises: cuDNN's convolutions, whose
    backward otherwise adds with atomics, and the decoder's unpooling (net.unpool_by_selection). cuDNN's
    benchmark is off too: each run would time the candidates anew and could pick other (deterministic)
    algorithms, whose sums round differently."""
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')  # cuBLAS's condition for deterministic results
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def scaled_lr(lr, rule, batch):
    """The learning rate for `batch` images a step (all processes) by LR_RULES[rule], `lr` being batch 1's."""
    return lr * LR_RULES[rule](batch)


def lr_at(lr, step, epoch, total, step_epochs=0, warmup=0, cosine=False):
    """The learning rate of step `step` (0-based) in epoch `epoch` of a run of `total` steps: `lr` divided by 10
    every `step_epochs` epochs, times a linear warmup over the first `warmup` steps, times a half cosine to 0."""
    if step_epochs:
        lr *= 0.1 ** (epoch // step_epochs)
    if step < warmup:
        lr *= (step + 1) / warmup
    if cosine:
        lr *= 0.5 * (1 + math.cos(math.pi * step / total))
    return lr


def loader_size(workers, cache_mb, world):
    """(loader processes per training process, cache MB per loader process), the machine's share where
    not given: every core but one per training process works for the loader, and half the memory holds
    decoded images (a foreground decoded once is cropped many times: Composition-1k's 431 fit in about 4 GB)."""
    if workers is None:
        workers = max(1, min(16, (os.cpu_count() or 2) // world - 1))
    if cache_mb is None:
        memory_mb = os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**20 if hasattr(os, 'sysconf') \
            else 8000
        cache_mb = max(500, int(memory_mb / 2 / (world * max(workers, 1))))
    return workers, cache_mb


def build_data(args, world, cache_mb):
    """Training and validation entries, split by foreground, and the training dataset."""
    if args.img_dir:
        entries = data.read_composite_list(args.img_dir, need_bg=not args.bg_dir)
    elif args.fg_dir and args.alpha_dir and args.bg_dir:
        entries = data.entries_from_folders(args.fg_dir, args.alpha_dir, args.bg_dir)
    else:
        raise ValueError("give --img_dir (composites.csv of tools/composite.py), or --fg_dir, --alpha_dir "
                         "and --bg_dir for online composition")
    online_bgs = data.background_paths(args.bg_dir) if args.bg_dir else None
    train_entries, val_entries = data.split_by_foreground(entries, args.val_fraction, args.seed)
    if len(train_entries) < args.batch_size * world:
        raise ValueError(f"{len(train_entries)} training composites are too few for batch size "
                         f"{args.batch_size} on {world} process(es)")
    dataset = data.TrainDataset(train_entries, size=args.size_h, crop_sizes=tuple(args.crop_h),
                                seed=args.seed, online_bgs=online_bgs, cache_mb=cache_mb)
    return dataset, data.first_per_foreground(val_entries, args.val_per_fg)


def build_model(args, device):
    """The DIM of --skip and --init with the weights of --pretrain, on `device`, training what --stage trains.
    A stage-2 or 3 run from a checkpoint whose refiner never trained starts the refiner as the identity."""
    model = net.DIM(skip=args.skip, init=args.init)
    if args.pretrain:
        start = load_weights(model, args.pretrain, args.trust)
        if args.stage >= 2 and start.get('stage', 0) < 2:
            net.init_weights(model.refiner, args.init)
    net.set_stage(model, args.stage)
    # channels_last, the fast layout of cuDNN and of oneDNN: with fused Adam, a bf16 step at 320x320 on a CPU
    # with AMX ran 1.62x faster than in the default layout (README, "Training")
    return model.to(device, memory_format=torch.channels_last)


def make_optimizer(model, lr):
    """Adam over what the stage trains; fused (one kernel for all parameters): a third of the default's time,
    17 ms a step instead of 48 on 2 CPU cores."""
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, fused=True)


def wrap_for_training(model, device, world, compile):
    """`model` as the training step runs it: in DistributedDataParallel across `world` processes, compiled with
    `compile`."""
    if world > 1:
        model = DistributedDataParallel(model, device_ids=[device] if device.type == 'cuda' else None)
    return torch.compile(model) if compile else model


def make_loader(dataset, sampler, batch_size, workers, pin_memory):
    """One loader for the run: its workers keep their decoded-image caches from epoch to epoch. They are
    spawned, not forked: a fork after OpenCV has run threads in this process (validation) can hang."""
    return torch.utils.data.DataLoader(ErrorsAsSamples(dataset), batch_size=batch_size, sampler=sampler,
                                       collate_fn=collate_or_error, num_workers=workers, drop_last=True,
                                       pin_memory=pin_memory, persistent_workers=workers > 0,
                                       worker_init_fn=data.worker_init,
                                       multiprocessing_context='spawn' if workers > 0 else None)


class EpochSampler(torch.utils.data.Sampler):
    """This process's share of a permutation that depends on (seed, epoch) alone, from `start` on,
    so a resumed run sees the same samples in the same order as one that never stopped."""

    def __init__(self, n, seed, rank, world):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.indices = []

    def set_epoch(self, epoch, start=0):
        generator = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        per_rank = self.n // self.world
        self.indices = order[self.rank * per_rank:(self.rank + 1) * per_rank][start:]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


# ------------------------------------------------------------------------------------------ checkpoints

def load_weights(model, path, trust):
    """Load a checkpoint's weights into `model`; ValueError when it records the other decoder variant (a skip
    model's weights fit the plain model, and the reverse, without an error: --skip must match)."""
    ckpt = net.load_checkpoint(path, trust=trust)
    saved = net.recorded_skip(ckpt)
    if saved is not None and saved != model.skip:
        raise ValueError(f"{path}: trained {'with' if saved else 'without'} --skip (the skip variant), but this "
                         f"run is {'with' if model.skip else 'without'} it: give the same --skip as its run")
    net.load_state(model, ckpt['model'], path)
    return ckpt


def make_checkpoint(model, optimizer, scaler, args, world, step, epoch, best_sad):
    """The checkpoint of a run at `step` (a plain dict: the model, the optimizer and scaler states, the RNG states,
    the run's shape and its arguments), as latest.pth and best.pth hold it."""
    return {
        'format': net.CHECKPOINT_FORMAT, 'model': model.state_dict(), 'stage': args.stage, 'skip': args.skip,
        'step': step, 'epoch': epoch, 'best_sad': best_sad, 'world_size': world, 'batch_size': args.batch_size,
        'samples_seen': step * args.batch_size * world, 'optimizer': optimizer.state_dict(),
        'scaler': scaler.state_dict(), 'args': vars(args),
        'rng': {'torch': torch.get_rng_state(), 'python': random.getstate()},
    }


def restore(ckpt, optimizer, scaler, args, world, path):
    if ckpt.get('stage') != args.stage:
        raise ValueError(f"{path}: a stage-{ckpt.get('stage')} checkpoint cannot resume stage {args.stage} "
                         f"(start a new stage with --pretrain)")
    if 'optimizer' not in ckpt:
        raise ValueError(f"{path}: holds no optimizer state (use --pretrain for model-only files)")
    # Each process reads its own share of an epoch's order, so the samples a step sees depend on the number of
    # processes and the batch size: with others, a resumed run would renumber its epochs and repeat or skip
    # samples. (Files written before these keys existed record the batch size in their args only.)
    saved = (ckpt.get('world_size', world), ckpt.get('batch_size', (ckpt.get('args') or {}).get('batch_size')))
    if saved != (world, args.batch_size):
        raise ValueError(f"{path}: written by {saved[0]} process(es) with --batch_size {saved[1]} "
                         f"({ckpt.get('samples_seen', '?')} samples seen); this run has {world} with --batch_size "
                         f"{args.batch_size}: resume with the same numbers, or start a new run from its weights "
                         f"with --pretrain")
    optimizer.load_state_dict(ckpt['optimizer'])
    if ckpt['scaler']:  # empty when saved by a bf16 or fp32 run: a new fp16 scaler then starts from its default
        scaler.load_state_dict(ckpt['scaler'])
    torch.set_rng_state(ckpt['rng']['torch'])
    random.setstate(ckpt['rng']['python'])
    return ckpt['step'], ckpt.get('best_sad', math.inf)


# ----------------------------------------------------------------------------------------- train, eval

def train_step(model, batch, optimizer, scaler, stage, wl_weight, device, dtype):
    """One optimizer step of `stage`'s loss (wl_weight: its alpha loss's share, loss.stage_loss) under
    autocast to `dtype`; `batch` is the loader's (uint8, `data.to_tensors`), composed and normalised on the
    device. Returns the loss as a tensor on the device (reading it waits for the GPU, so the caller does that
    only now and then)."""
    batch = data.batch_to_device(batch, device)
    img = batch['img'].contiguous(memory_format=torch.channels_last)
    with net.autocast(device, dtype):
        alpha_ed, alpha_refined = model(img, batch['trimap'], refine=stage >= 2)
    loss = stage_loss(alpha_ed, alpha_refined, batch, stage, wl_weight)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


@torch.no_grad()
def evaluate(model, samples, stage, method, max_size, size, device, dtype, save_dir=None):
    """Mean SAD/MSE/GRAD/CONN of `samples`' predictions, made as deploy.py makes them (`predict_sample`);
    with save_dir, the predictions are written there."""
    model.eval()
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False  # every image size would tune every convolution anew
    scores = []
    try:
        for sample in tqdm(samples, desc='validate', leave=False, disable=None, dynamic_ncols=True):
            pred = predict_sample(model, sample, stage, method, max_size, size, device, dtype)
            pred = np.round(pred * 255).astype(np.uint8)
            if save_dir:
                data.write_png(os.path.join(save_dir, os.path.splitext(sample['name'])[0] + '.png'), pred)
            scores.append(metrics.compute_all(pred, sample['alpha'], sample['trimap']))
    finally:
        torch.backends.cudnn.benchmark = benchmark
        model.train()
    return metrics.mean_metrics(scores)


def predict_sample(model, sample, stage, method, max_size, size, device, dtype):
    """deploy.predict by `method` (--crop_or_resize), `size` being the side of the training crops (resize's
    input, crop's tile); an image that runs out of GPU memory (a large batch's training leaves less of it)
    is named and predicted from tiles instead, so every image is scored."""
    options = dict(max_size=max_size, size=(size, size), device=device, dtype=dtype)
    try:
        return deploy.predict(model, sample['image'], sample['trimap'], stage, method=method, **options)
    except torch.OutOfMemoryError as e:  # or net.PastIndexLimit, met the same way
        if device.type == 'cuda':
            torch.cuda.empty_cache()
        h, w = sample['trimap'].shape
        why = deploy.too_large_reason(e)
        if method == 'crop':
            raise ValueError(f"validation image {sample['name']} ({w}x{h}): {why} even in tiles of "
                             f"{size} (try a smaller --size_h)") from None
        tqdm.write(f"warning: validation image {sample['name']} ({w}x{h}): {why} with --crop_or_resize "
                   f"{method}; predicted from {size}-pixel tiles instead", file=sys.stderr)
        return deploy.predict(model, sample['image'], sample['trimap'], stage, method='crop', **options)


def log_line(path, record):
    try:
        with open(path, 'a') as f:
            f.write(json.dumps(record) + '\n')
    except OSError as e:
        raise ValueError(f"{path}: cannot write it ({e.strerror})") from None


class ErrorsAsSamples(torch.utils.data.Dataset):
    """`dataset` whose ValueError (a bad file, named) comes back as the item. A loader worker's exception
    reaches the main process as a new exception holding the worker's whole traceback as text; a returned
    exception keeps its one-line message. `collate_or_error` passes it on as the batch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except ValueError as e:
            return e


def collate_or_error(samples):
    errors = [s for s in samples if isinstance(s, ValueError)]
    return errors[0] if errors else torch.utils.data.default_collate(samples)


# ------------------------------------------------------------------------------------------------ main

def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        check_args(args)
        return train(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a write the named checks did not foresee; name the file, not a traceback
        print(f"error: {e.filename}: {e.strerror}" if e.filename else f"error: {e}", file=sys.stderr)
        return 1


def check_args(args):
    if args.size_h != args.size_w:
        raise ValueError("training crops are square: --size_w must equal --size_h")
    if args.crop_w is not None and args.crop_w != args.crop_h:
        raise ValueError("training crops are square: --crop_w must equal --crop_h")
    if args.resume and args.pretrain:
        raise ValueError("give --resume (continue a run) or --pretrain (start from weights), not both")
    for path in (args.resume, args.pretrain):
        if path and not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
    for flag, folder in (('--save_dir', args.save_dir), ('--test_res_dir', args.test_res_dir)):
        if folder and os.path.exists(folder) and not os.path.isdir(folder):
            raise ValueError(f"{flag} {folder}: a file is in the way of the folder")
    if not (args.pretrain or args.resume) and args.init == 'xavier':
        print("warning: no --pretrain: the whole network starts from Xavier init, whose output is nearly "
              "constant in this 20-layer plain net and learns slowly; use VGG-16 weights (tools/chg_model.py) "
              "or --init he", file=sys.stderr)
    if args.stage >= 2 and not (args.pretrain or args.resume):
        print(f"warning: stage {args.stage} normally starts from a stage-{args.stage - 1} checkpoint "
              f"(--pretrain); starting from scratch", file=sys.stderr)


def train(args):
    rank, world, device = setup_distributed(args.device)
    main_process = rank == 0
    seed_everything(args.seed)
    if args.deterministic:
        use_deterministic_algorithms()
    elif device.type == 'cuda':
        torch.backends.cudnn.benchmark = True

    workers, cache_mb = loader_size(args.workers, args.cache_mb, world)
    dataset, val_entries = build_data(args, world, cache_mb)
    val_samples = data.ValDataset(val_entries, max_size=args.max_size) if val_entries else []
    test_samples = (data.TestDataset(args.test_img_dir, args.test_trimap_dir, args.test_alpha_dir)
                    if args.test_img_dir else [])

    model = build_model(args, device)
    dtype = net.pick_precision(args.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    lr = scaled_lr(args.lr, args.lr_scale, args.batch_size * world)
    optimizer = make_optimizer(model, lr)
    step, best_sad = 0, math.inf
    if args.resume:
        step, best_sad = restore(load_weights(model, args.resume, args.trust), optimizer, scaler, args, world,
                                 args.resume)
    # The training step runs `train_model` (DDP across processes, compiled with --compile); validation and
    # checkpoints use `model` itself (uncompiled: validation's image sizes vary).
    train_model = wrap_for_training(model, device, world, args.compile)

    steps_per_epoch = len(dataset) // world // args.batch_size
    total = min(args.epochs * steps_per_epoch, args.max_iters or math.inf)
    log_path = os.path.join(args.save_dir, 'log.jsonl')
    if main_process:
        if step >= total:  # say so: a run that does nothing must not look like a finished one
            print(f"warning: nothing to train: {args.resume} is at step {step} and this run ends at step {total} "
                  f"(--epochs {args.epochs} x {steps_per_epoch} steps, --max_iters {args.max_iters})",
                  file=sys.stderr)
        os.makedirs(args.save_dir, exist_ok=True)
        log_line(log_path, {'args': vars(args), 'torch': torch.__version__, 'python': platform.python_version(),
                            'world': world, 'device': str(device), 'dtype': str(dtype).replace('torch.', ''),
                            'lr': lr, 'workers': workers, 'cache_mb': cache_mb, 'train_composites': len(dataset),
                            'val_composites': len(val_samples), 'resumed_at': step})

    eval_options = dict(stage=args.stage, method=args.crop_or_resize, max_size=args.max_size, size=args.size_h,
                        device=device, dtype=dtype)
    sampler = EpochSampler(len(dataset), args.seed, rank, world)
    loader = make_loader(dataset, sampler, args.batch_size, workers, pin_memory=device.type == 'cuda')
    bar = tqdm(total=total, initial=step, desc=f'stage {args.stage}', disable=None if main_process else True,
               dynamic_ncols=True)  # None: no bar when stderr is not a terminal (a log file)
    window, started = Window(device, step, args.batch_size * world), time.time()
    # a checkpoint of this run: the parts that never change are bound here, the step, epoch and best SAD are
    # given at each save
    checkpoint = functools.partial(make_checkpoint, model, optimizer, scaler, args, world)
    # a validation of this run, bound the same way: given the step, epoch and best SAD, it returns the new best
    validate_at = functools.partial(validate, model, val_samples, test_samples, eval_options, args.test_res_dir,
                                    checkpoint, args.save_dir)

    epoch = -1  # with --pretrain the starting point is validated first: a candidate for best.pth
    if main_process and val_samples and args.pretrain:
        best_sad = validate_at(step, epoch, best_sad)
    if world > 1:
        dist.barrier()
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch, start=offset * args.batch_size)
        for batch, waited in with_waits(loader):
            if isinstance(batch, ValueError):
                raise batch
            for group in optimizer.param_groups:
                group['lr'] = lr_at(lr, step, epoch, total, args.step, args.warmup, args.cosine)
            window.add(train_step(train_model, batch, optimizer, scaler, args.stage, args.wl_weight, device, dtype),
                       waited)
            step += 1
            bar.update()
            if step % args.print_freq == 0:
                loss, pace = window.read(step, restart=True)
                if main_process:
                    report_window(bar, log_path, step, total, epoch, loss, pace, optimizer.param_groups[0]['lr'],
                                  time.time() - started)
            if step >= total:
                break
        window.read(step)  # the steps since the last read, checked before anything is saved
        epoch_done, last = step % steps_per_epoch == 0, step >= total
        with window.paused():  # validating and saving are not training speed
            if main_process and val_samples and (last or (epoch_done and (epoch + 1) % args.test_freq == 0)):
                best_sad = validate_at(step, epoch, best_sad)
            if main_process and (last or (epoch_done and (epoch + 1) % args.ckpt_save_freq == 0)):
                net.save_checkpoint(checkpoint(step, epoch, best_sad), os.path.join(args.save_dir, 'latest.pth'))
            if world > 1:
                dist.barrier()
    bar.close()
    if main_process:
        print(f"stage {args.stage}: {step} steps, last loss {window.last:.4f}, "
              f"best validation SAD {best_sad:.2f}; checkpoints in {args.save_dir}")
    if world > 1:
        dist.destroy_process_group()
    return 0


def report_window(bar, log_path, step, total, epoch, loss, pace, lr, seconds):
    """A --print_freq window's mean loss and pace (Window.read): on the bar, in log.jsonl, and as a line when
    there is no bar (output to a file)."""
    bar.set_postfix(loss=f'{loss:.4f}', img_s=f"{pace['images_per_s']:.1f}", wait=f"{pace['loader_wait']:.0%}")
    log_line(log_path, {'step': step, 'epoch': epoch, 'loss': loss, 'lr': lr, 'seconds': seconds, **pace})
    if bar.disable:
        print(f"step {step}/{total}: loss {loss:.4f}, lr {lr:.3g}, {pace['images_per_s']:.1f} images/s, "
              f"loader wait {pace['loader_wait']:.0%}, {seconds:.0f} s", flush=True)


def with_waits(loader):
    """The loader's batches, each with the seconds this process waited for it."""
    batches = iter(loader)
    while True:
        t = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            return
        yield batch, time.perf_counter() - t


class Window:
    """The training steps since the last read: their losses summed on the device (reading waits for the device,
    so it happens every --print_freq steps and before each validation or save, and a non-finite loss is caught
    there, by window), the seconds spent waiting for the loader and the time they took."""

    def __init__(self, device, step, images_per_step):
        self.sum, self.last, self.images_per_step = torch.zeros((), device=device), math.nan, images_per_step
        self.restart(step)

    def restart(self, step):
        self.sum.zero_()
        self.start, self.waited, self.began = step, 0.0, time.perf_counter()

    def add(self, loss, waited):
        self.sum += loss
        self.waited += waited

    @contextlib.contextmanager
    def paused(self):
        """The time spent inside is left out of the window's pace."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.began += time.perf_counter() - t

    def read(self, step, restart=False):
        """(mean loss, pace) of the steps since the window's start, up to `step`; the loss is kept in `last`,
        pace is images_per_s and loader_wait, the share of the time spent waiting for batches (on a GPU, an
        upper bound of the time it idled for want of data). FloatingPointError, naming the steps, when the loss
        is not finite. restart=True starts the next window after `step`."""
        pace = {}
        if step > self.start:
            self.last = self.sum.item() / (step - self.start)  # waits for the device: the time below is complete
            if not math.isfinite(self.last):
                raise FloatingPointError(f"non-finite loss ({self.last}) in steps {self.start + 1}-{step}")
            seconds = time.perf_counter() - self.began
            pace = {'images_per_s': (step - self.start) * self.images_per_step / seconds,
                    'loader_wait': self.waited / seconds}
        if restart:
            self.restart(step)
        return self.last, pace


def validate(model, val_samples, test_samples, eval_options, test_res_dir, checkpoint, save_dir, step, epoch,
             best_sad):
    """Score `model` at `step` and return the best validation SAD so far. The log record (save_dir/log.jsonl,
    printed too) holds 'val', the mean metrics of the held-out foregrounds' composites, and 'test', of the test
    set (for the log only, never for picking best.pth; its predictions written to test_res_dir). A new best is
    saved as save_dir/best.pth, `checkpoint(step, epoch, best_sad)`. eval_options: `evaluate`'s stage, method,
    max_size, size, device, dtype."""
    record = {'step': step, 'epoch': epoch, 'val': evaluate(model, val_samples, **eval_options)}
    if test_samples:
        record['test'] = evaluate(model, test_samples, save_dir=test_res_dir, **eval_options)
    tqdm.write(f"step {step}: validation " + ' '.join(f"{k} {v:.4f}" for k, v in record['val'].items()))
    if record['val']['sad'] < best_sad:
        best_sad, record['best'] = record['val']['sad'], True
        net.save_checkpoint(checkpoint(step, epoch, best_sad), os.path.join(save_dir, 'best.pth'))
    log_line(os.path.join(save_dir, 'log.jsonl'), record)
    return best_sad


if __name__ == '__main__':
    sys.exit(main())
