"""Deep Image Matting (Xu, Price, Cohen, Huang, CVPR 2017): the network.

Encoder (VGG-16 convolutions with a 4-channel conv1_1, plus conv6_1), decoder (unpooling with the encoder's
pooling indices, 5x5 convolutions) and refinement (four 3x3 convolutions, a residual on the alpha logits).
Layer names follow the paper, so a state dict reads `encoder.conv1_1.weight`, `decoder.deconv6_1.weight`,
`refiner.refine_conv1.weight`, ...  Parameters: encoder 14,977,920; decoder 11,222,081; refiner 76,801;
total 26,276,802, the same layers and shapes as mmagic's DIM (tools/chg_model.py converts its checkpoints).

Also here: which parameters train in each stage (`set_stage`), which alpha a stage scores
(`output_for_stage`), the checkpoint file (`save_checkpoint`, `load_checkpoint`) and the cost of one
forward pass (`count_flops`).
"""
import contextlib
import functools
import os
import pickle
import pickletools
import warnings
import zipfile

import torch
import torch.nn as nn
import torch.nn.functional as F

import data

# The five VGG-16 blocks; each ends with a 2x2 max-pool that returns its indices.
BLOCKS = (
    ('conv1_1', 'conv1_2'),
    ('conv2_1', 'conv2_2'),
    ('conv3_1', 'conv3_2', 'conv3_3'),
    ('conv4_1', 'conv4_2', 'conv4_3'),
    ('conv5_1', 'conv5_2', 'conv5_3'),
)
VGG_LAYERS = tuple(name for block in BLOCKS for name in block)  # the 13 layers ImageNet weights fill
# The decoder's convolution after each unpooling, deepest first (it undoes pool 5, 4, 3, 2, 1; count_flops).
UNPOOL_CONVS = ('deconv5_1', 'deconv4_1', 'deconv3_1', 'deconv2_1', 'deconv1_1')
# Which parts train in each stage (train.py's docstring); the others are frozen but still exist.
STAGE_TRAINS = {
    0: ('encoder', 'decoder'),
    1: ('encoder', 'decoder'),
    2: ('refiner',),
    3: ('encoder', 'decoder', 'refiner'),
}
CHECKPOINT_FORMAT = 1


def conv(in_channels, out_channels, kernel_size):
    """A 'same' convolution with bias (odd kernel, stride 1)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


class Encoder(nn.Module):
    """VGG-16's 13 convolutions (conv1_1 takes 4 channels) and conv6_1 (1x1), each followed by ReLU.

    forward(x: N,4,H,W, keep_features=False) -> (out N,512,H/32,W/32, pools, features):
    pools: for each of the five blocks, (indices of its max-pool, spatial size before the pool);
    features: each block's last pre-pool map when keep_features (the skip variant), else [].
    Pooling floors odd sizes (as max_pool2d does); any H, W >= 32 works.
    """

    def __init__(self):
        super().__init__()
        self.conv1_1 = conv(4, 64, 3)
        self.conv1_2 = conv(64, 64, 3)
        self.conv2_1 = conv(64, 128, 3)
        self.conv2_2 = conv(128, 128, 3)
        self.conv3_1 = conv(128, 256, 3)
        self.conv3_2 = conv(256, 256, 3)
        self.conv3_3 = conv(256, 256, 3)
        self.conv4_1 = conv(256, 512, 3)
        self.conv4_2 = conv(512, 512, 3)
        self.conv4_3 = conv(512, 512, 3)
        self.conv5_1 = conv(512, 512, 3)
        self.conv5_2 = conv(512, 512, 3)
        self.conv5_3 = conv(512, 512, 3)
        self.conv6_1 = conv(512, 512, 1)

    def forward(self, x, keep_features=False):
        pools, features = [], []
        for block in BLOCKS:
            for name in block:
                x = F.relu_(getattr(self, name)(x))
            if keep_features:
                features.append(x)
            size = x.shape[-2:]
            x, indices = in_batch_parts(functools.partial(F.max_pool2d, kernel_size=2, return_indices=True),
                                        x, largest=x.numel())  # N,C,floor(H/2),floor(W/2)
            pools.append((indices, size))
        x = F.relu_(self.conv6_1(x))  # N,512,H/32,W/32
        return x, pools, features


class Decoder(nn.Module):
    """deconv6_1 (1x1), five times max-unpool + 5x5 conv, then deconv1 (5x5, 64->1): the alpha logits.

    forward(x: N,512,h,w, pools, features=()) -> raw N,1,H,W (logits; alpha = sigmoid(raw)).
    Each unpooling restores the size before its pool, so odd sizes come back exactly. With `features`
    (the skip variant) each block's encoder map is added to the unpooled map; this adds no parameters.
    """

    def __init__(self):
        super().__init__()
        self.deconv6_1 = conv(512, 512, 1)
        self.deconv5_1 = conv(512, 512, 5)
        self.deconv4_1 = conv(512, 256, 5)
        self.deconv3_1 = conv(256, 128, 5)
        self.deconv2_1 = conv(128, 64, 5)
        self.deconv1_1 = conv(64, 64, 5)
        self.deconv1 = conv(64, 1, 5)

    def forward(self, x, pools, features=()):
        pool1, pool2, pool3, pool4, pool5 = pools
        skip1, skip2, skip3, skip4, skip5 = features or [None] * 5
        x = F.relu_(self.deconv6_1(x))
        x = F.relu_(self.deconv5_1(unpool(x, pool5, skip5)))  # N,512,H/16,W/16
        x = F.relu_(self.deconv4_1(unpool(x, pool4, skip4)))  # N,256,H/8,W/8
        x = F.relu_(self.deconv3_1(unpool(x, pool3, skip3)))  # N,128,H/4,W/4
        x = F.relu_(self.deconv2_1(unpool(x, pool2, skip2)))  # N,64,H/2,W/2
        x = F.relu_(self.deconv1_1(unpool(x, pool1, skip1)))  # N,64,H,W
        return self.deconv1(x)  # N,1,H,W logits


def unpool(x, pool, skip=None):
    """2x2 max-unpooling: each value back where its max-pool found it, given that pool's (indices, size
    before the pool), so odd sizes come back exactly; the skip variant then adds the encoder's map `skip`."""
    indices, size = pool
    # in x's own dtype: CPU autocast would run it in float32, converting the largest maps twice
    with torch.autocast(x.device.type, enabled=False):
        if torch.are_deterministic_algorithms_enabled():
            x = unpool_by_selection(x, indices, size)
        else:  # N,C,2h(+1),2w(+1)
            x = in_batch_parts(functools.partial(F.max_unpool2d, kernel_size=2, output_size=size), x, indices,
                               largest=x.shape[0] * x.shape[1] * size[0] * size[1])
    return x if skip is None else x.add_(skip)


# PyTorch's CUDA pooling kernels count elements in 32-bit integers in places (max_unpool2d's loop over its
# input in every version read, max_pool2d's channels-last batch offsets in some): a call on a tensor of 2^31
# elements or more reads and writes the wrong ones. Such calls run in parts along the batch (at 320x320 the
# 64-channel full-size maps reach the limit at a batch of 328).
INDEX_LIMIT = 2 ** 31
SPLIT_DEVICES = ('cuda',)


class PastIndexLimit(torch.OutOfMemoryError):
    """One image too large for a CUDA pooling call (INDEX_LIMIT): met where running out of GPU memory is, by
    smaller inputs or tiles."""


def in_batch_parts(fn, *tensors, largest):
    """fn(*tensors), on SPLIT_DEVICES run in parts along the batch so that no part's largest tensor (`largest`
    elements for the whole batch) reaches INDEX_LIMIT; the parts' outputs (tensors or tuples) concatenated."""
    n = tensors[0].shape[0]
    if largest < INDEX_LIMIT or tensors[0].device.type not in SPLIT_DEVICES:
        return fn(*tensors)
    per_part = (INDEX_LIMIT - 1) // (largest // n)
    if per_part == 0:
        raise PastIndexLimit(f"one image's map of {largest // n} elements is past the 2^31 that PyTorch's CUDA "
                             f"pooling can index")
    outs = [fn(*(t[i:i + per_part] for t in tensors)) for i in range(0, n, per_part)]
    return tuple(map(torch.cat, zip(*outs))) if isinstance(outs[0], tuple) else torch.cat(outs)


def unpool_by_selection(x, indices, size):
    """F.max_unpool2d(x, indices, 2, 2, output_size=size) as a comparison and a selection instead of a scatter:
    the same numbers bit for bit, forward and backward. PyTorch refuses max_unpool2d under
    torch.use_deterministic_algorithms (a scatter's indices may collide; a 2x2 pool's never do) but allows
    these. Several times slower than max_unpool2d on the CPU, so `unpool` takes it only in deterministic mode
    (train.py --deterministic)."""
    n, c, h, w = x.shape
    height, width = size
    rows = torch.arange(2 * h, device=x.device)[:, None] * width
    flat = (rows + torch.arange(2 * w, device=x.device)).view(h, 2, w, 2)  # each pixel's index, by window, corner
    at_max = indices[:, :, :, None, :, None] == flat  # N,C,h,2,w,2
    x = torch.where(at_max, x[:, :, :, None, :, None], 0).reshape(n, c, 2 * h, 2 * w)
    odd = (width - 2 * w, height - 2 * h)  # the row and column a pool of an odd size dropped come back as zeros
    return F.pad(x, (0, odd[0], 0, odd[1])) if any(odd) else x


class Refiner(nn.Module):
    """Refinement: refine_conv1..3 (3x3, 64 channels, ReLU) and refine_pred (3x3, 64->1).

    forward(img N,3,H,W normalised, alpha N,1,H,W in [0,1], raw N,1,H,W logits) -> N,1,H,W in [0,1]:
    sigmoid(raw + refine_pred(...)), a residual in logit space. refine_pred starts at zero (`init_weights`),
    so an untrained refiner returns the encoder-decoder alpha exactly and stage 2 starts from stage 1's matte.
    """

    def __init__(self):
        super().__init__()
        self.refine_conv1 = conv(4, 64, 3)
        self.refine_conv2 = conv(64, 64, 3)
        self.refine_conv3 = conv(64, 64, 3)
        self.refine_pred = conv(64, 1, 3)

    def forward(self, img, alpha, raw):
        x = torch.cat([img, alpha], 1)  # N,4,H,W
        x = F.relu_(self.refine_conv1(x))
        x = F.relu_(self.refine_conv2(x))
        x = F.relu_(self.refine_conv3(x))
        return torch.sigmoid(raw.float() + self.refine_pred(x).float())


class DIM(nn.Module):
    """The whole network. skip=True adds each encoder block's map to the decoder (a variant, off by default).

    forward(img N,3,H,W normalised with the ImageNet mean/std, trimap N,1,H,W holding 0/128/255,
    refine=True) -> (alpha_ed, alpha_refined), both N,1,H,W in [0,1]; alpha_refined is None when
    refine=False (saves the refiner's time where the stage does not use it). Any H, W >= 32.
    Works in channels_last (the faster layout: README, "Deploying") and under torch.autocast (the alphas
    are float32 either way).
    """

    def __init__(self, skip=False, init='xavier'):
        super().__init__()
        self.skip = skip
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.refiner = Refiner()
        init_weights(self, init)

    def forward(self, img, trimap, refine=True):
        if min(img.shape[-2:]) < 32:
            raise ValueError(f"DIM needs images of at least 32x32 (five 2x2 poolings), got {tuple(img.shape)}")
        x = torch.cat([img, trimap / 255], 1)  # N,4,H,W
        x, pools, features = self.encoder(x, keep_features=self.skip)
        raw = self.decoder(x, pools, features)  # N,1,H,W
        alpha_ed = torch.sigmoid(raw.float())  # float32 even under autocast: bf16 rounds alpha near 1
        if not refine:
            return alpha_ed, None
        return alpha_ed, self.refiner(img, alpha_ed, raw)


def init_weights(model, scheme='xavier'):
    """Zero biases and Xavier-uniform weights (the paper's scheme) or He-normal ones (scheme='he'), except
    refine_pred, whose weights start at zero too: the refinement is then a residual of exactly zero, so it
    cannot start worse than the encoder-decoder (the paper and mmagic draw it at random like the rest).

    The paper's encoder starts from ImageNet VGG-16 (tools/chg_model.py writes that checkpoint), so
    Xavier only meets the decoder. A network started wholly from Xavier halves its signal's variance
    at each of its 20 ReLU layers: at 64x64 the decoder's logits had std 2e-5 (He: 4e-2), and on a
    tiny set (lr 1e-4, 60 steps) the loss fell to 0.25 against He's 0.16. Runs without VGG weights
    should use 'he'.
    """
    init = {'xavier': nn.init.xavier_uniform_,
            'he': lambda w: nn.init.kaiming_normal_(w, nonlinearity='relu')}[scheme]
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            init(module.weight)
            nn.init.zeros_(module.bias)
    for module in model.modules():  # after the loop above, which visits refine_pred after its Refiner
        if isinstance(module, Refiner):
            nn.init.zeros_(module.refine_pred.weight)


def set_stage(model, stage):
    """Set requires_grad for `stage` 0..3: encoder+decoder (0, 1), refiner only (2), everything (3)."""
    if stage not in STAGE_TRAINS:
        raise ValueError(f"stage must be one of 0, 1, 2, 3, not {stage!r}")
    for part in ('encoder', 'decoder', 'refiner'):
        getattr(model, part).requires_grad_(part in STAGE_TRAINS[stage])


def output_for_stage(alpha_ed, alpha_refined, stage):
    """The alpha that `stage` scores and deploys: the encoder-decoder's (stages 0, 1) or the refined one."""
    if stage not in STAGE_TRAINS:
        raise ValueError(f"stage must be one of 0, 1, 2, 3, not {stage!r}")
    if stage <= 1:
        return alpha_ed
    if alpha_refined is None:
        raise ValueError(f"stage {stage} uses the refined alpha: run the model with refine=True")
    return alpha_refined


def count_flops(h, w, refine=True):
    """Multiply-accumulates (MACs) of the convolutions of one forward pass on a 1x?xhxw input.

    FLOPs = 2 * MACs. Biases, ReLUs, pooling and unpooling are not counted (well under 1%).
    Sizes follow the network: each pool floors odd sizes, each unpooling restores them.
    """
    with torch.device('meta'):  # shapes only: no memory, no initialisation cost
        model = DIM()

    def macs(layer, h, w):
        out_channels, in_channels, kh, kw = layer.weight.shape
        return h * w * out_channels * in_channels * kh * kw

    total, sizes = 0, []
    for block in BLOCKS:
        total += sum(macs(getattr(model.encoder, name), h, w) for name in block)
        sizes.append((h, w))
        h, w = h // 2, w // 2
    total += macs(model.encoder.conv6_1, h, w) + macs(model.decoder.deconv6_1, h, w)
    for name, (h, w) in zip(UNPOOL_CONVS, reversed(sizes)):
        total += macs(getattr(model.decoder, name), h, w)
    total += macs(model.decoder.deconv1, h, w)
    if refine:
        total += sum(macs(layer, h, w) for layer in model.refiner.children())
    return total



# ------------------------------------------------------------------- where and in what precision it runs

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def pick_device(name):
    """'auto' (a GPU when there is one), 'cpu', 'cuda', 'cuda:N'; ValueError for anything else."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device (cpu, cuda, cuda:N)") from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for, but no CUDA device is available (leave it out to run on "
                         f"the CPU)")
    return device


def cpu_has_bf16():
    """Whether the CPU multiplies bf16 natively (AMX-BF16 or AVX512-BF16), where bf16 autocast pays; on
    other CPUs it is emulated and slower than fp32. torch's probes are private, so a missing one means no."""
    probes = [getattr(torch.cpu, name, None) for name in ('_is_amx_tile_supported', '_is_avx512_bf16_supported')]
    return any(probe is not None and probe() for probe in probes)


def pick_precision(name, device):
    """The dtype the network runs in on `device` for --precision `name` (auto, fp32, bf16, fp16).

    auto: on a GPU bf16 from compute capability 8.0 (tensor cores for bf16), fp16 with a gradient scaler
    below (`torch.cuda.is_bf16_supported()` is true on T4 and V100 too, which only emulate bf16); on the CPU
    bf16 where it has bf16 units (cpu_has_bf16), fp32 elsewhere. Alphas come out in float32 either way.
    """
    if name not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    if name == 'fp16' and device.type != 'cuda':
        raise ValueError(f"--precision fp16 is for CUDA GPUs; on {device.type} use bf16 or fp32")
    if name != 'auto':
        return DTYPES[name]
    if device.type == 'cuda':
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    return torch.bfloat16 if device.type == 'cpu' and cpu_has_bf16() else torch.float32


def autocast(device, dtype):
    """torch.autocast to `dtype` on `device`; nothing for float32."""
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)

def save_checkpoint(ckpt, path):
    """Write `ckpt` (a dict of tensors and plain values) to `path` whole or not at all, creating its folder.

    The file is written to PATH.PID.tmp in the same folder and then renamed over PATH (`data.write_atomic`),
    so PATH is always a whole checkpoint, even if the process dies while saving. ValueError("PATH: cannot
    write it (why)") on a full disk or an unwritable place.
    """
    data.write_atomic(path, lambda f: torch.save(ckpt, f))


def _pickled_globals(f):
    """The classes and functions (module.name) that the pickles at the start of file object `f` refer to,
    found with pickletools without running anything; None when `f` does not start with a pickle."""
    names, strings, memo, pickles = [], [], {}, 0
    try:
        while True:
            for op, arg, _ in pickletools.genops(f):
                if op.name == 'GLOBAL':
                    names.append(arg.replace(' ', '.'))
                elif op.name == 'STACK_GLOBAL' and len(strings) >= 2:
                    names.append('.'.join(strings[-2:]))
                elif isinstance(arg, str):
                    strings.append(arg)
                elif op.name in ('BINPUT', 'LONG_BINPUT', 'PUT', 'MEMOIZE') and strings:
                    memo[len(memo) if arg is None else arg] = strings[-1]
                elif op.name in ('BINGET', 'LONG_BINGET', 'GET') and arg in memo:
                    strings.append(memo[arg])
            pickles += 1
    except Exception:  # the end of the pickles: raw tensor data, or the end of the file
        pass
    return sorted(set(names)) if pickles else None


def _refused_globals(path):
    """What a weights_only load of `path` refuses: the names of its pickled classes and functions that
    torch does not allow (a list, maybe empty), or None when the file is no torch file or pickle at all.
    Read with pickletools from the zip format's data.pkl or the legacy file itself, the same on every torch
    (`torch.serialization.get_unsafe_globals_in_checkpoint` is new in 2.6)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                member = next(n for n in z.namelist() if n.endswith('data.pkl'))
                with z.open(member) as f:
                    names = _pickled_globals(f)
        else:
            with open(path, 'rb') as f:
                names = _pickled_globals(f)
    except (zipfile.BadZipFile, StopIteration, OSError):
        return None
    if names is None:
        return None
    return [n for n in names if not n.startswith(('torch.', 'collections.OrderedDict'))]


def torch_load(path, trust=False):
    """torch.load onto the CPU, weights_only unless `trust`; every failure becomes ValueError("PATH: why").

    A file that weights_only loading refuses (it pickles classes or functions: an argparse.Namespace, numpy
    scalars, a plain pickle) is named with what it holds and the way out (--trust, for trusted files only).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol of a file it then refuses
            warnings.filterwarnings('ignore', module='torch._weights_only_unpickler')
            return torch.load(path, map_location='cpu', weights_only=not trust)
    except pickle.UnpicklingError:
        refused = None if trust else _refused_globals(path)
        if refused is None:
            raise ValueError(f"{path}: cannot read it as a torch file ({_unreadable(path)})") from None
        held = f"pickled {', '.join(refused[:5])}," if refused else "a plain pickle, not a torch.save file,"
        raise ValueError(f"{path}: holds {held} which weights_only=True refuses to load; load it with "
                         f"--trust (trust=True) only if you trust the file") from None
    except Exception as e:  # torch raises many types for a bad file, with long texts; all mean "cannot read it"
        raise ValueError(f"{path}: cannot read it as a torch file ({_unreadable(path)}; "
                         f"{type(e).__name__})") from None


def _unreadable(path):
    """What a file that torch.load cannot read looks like, from its first bytes."""
    with open(path, 'rb') as f:
        head = f.read(2)
    if not head:
        return "the file is empty"
    if head == b'PK':
        return "a zip file, damaged or cut short"
    if head[0] == 0x80:  # a pickle's PROTO opcode: the legacy format or a plain pickle
        return "a pickle, damaged or cut short"
    return "neither torch's zip format nor a pickle"


def check_finite(state, path):
    """ValueError naming the tensors of a state dict that hold NaN or infinity (a diverged run's weights
    would deploy "successfully" as a matte with nothing in the unknown region)."""
    bad = [k for k, v in state.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinity, e.g. {', '.join(bad[:3])}")


def load_state(model, state, path):
    """Load a state dict into `model`: keys saved from a DDP- or torch.compile-wrapped model (module.,
    _orig_mod.) are read as the plain model's. ValueError naming the missing, unexpected and mis-shaped
    keys when it does not fit."""
    for prefix in ('module.', '_orig_mod.'):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    expected = model.state_dict()
    problems = []
    missing, unexpected = [k for k in expected if k not in state], [k for k in state if k not in expected]
    if missing:
        problems.append(f"missing {len(missing)} keys ({', '.join(missing[:4])})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys ({', '.join(unexpected[:4])})")
    shapes = [f"{k} is {tuple(v.shape)}, the model's {tuple(expected[k].shape)}" for k, v in state.items()
              if k in expected and tuple(getattr(v, 'shape', ())) != tuple(expected[k].shape)]
    if shapes:
        problems.append(f"{len(shapes)} wrong shapes: {'; '.join(shapes[:4])}")
    if problems:
        raise ValueError(f"{path}: does not fit the {type(model).__name__} model: {'; '.join(problems)}")
    model.load_state_dict(state)


def recorded_skip(ckpt):
    """Whether a checkpoint holds the skip variant: its 'skip' key, else the --skip of the run that wrote it
    (files from before the key); None when it records neither (tools/chg_model.py's conversions). The variant
    adds no parameters, so only this tells a skip model's weights from a plain one's."""
    if 'skip' in ckpt:
        return bool(ckpt['skip'])
    args = ckpt.get('args')
    return bool(args['skip']) if isinstance(args, dict) and 'skip' in args else None


def load_checkpoint(path, trust=False):
    """Read a checkpoint of this project onto the CPU; trust=True allows full unpickling (trusted files only).

    Raises FileNotFoundError("checkpoint not found: PATH") or ValueError("PATH: <what is wrong>"), also for
    weights that are not finite.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch_load(path, trust)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('model'), dict):
        found = f"a dict with keys {list(ckpt)[:5]}" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a checkpoint of this project: expected a dict with a 'model' state "
                         f"dict, found {found}")
    if ckpt.get('format', CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {ckpt['format']!r}, this code reads format "
                         f"{CHECKPOINT_FORMAT}")
    check_finite(ckpt['model'], path)
    return ckpt
