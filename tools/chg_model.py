"""Make this project's starting checkpoint from ImageNet VGG-16 weights, or convert an mmagic DIM checkpoint.

  python tools/chg_model.py --vgg vgg16-397923af.pth --out pretrained/dim_vgg16.pth   # torchvision
  python tools/chg_model.py --npz vgg16_weights.npz --out pretrained/dim_vgg16.pth    # Davi Frossard's
  python tools/chg_model.py --mmagic dim_stage3_v16_pln_1x1_1000k_comp1k_SAD-50.6_....pth --out dim_mmagic.pth
  python tools/chg_model.py --out pretrained/dim_vgg16.pth    # downloads torchvision's file if it can

From VGG-16 the 13 convolutions land in conv1_1 ... conv5_3 (conv1_1's trimap channel starts at zero) and
every other layer gets the paper's Xavier initialisation: a stage-0 checkpoint for `train.py --pretrain`.
From mmagic every layer is copied: a stage-1 checkpoint (no refiner in the file; the refiner is then
Xavier-initialised) or a stage-3 one (refiner included), ready for deploy.py.
"""
import argparse
import os
import re
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python tools/chg_model.py`: net.py lives one folder up
    sys.path.insert(0, ROOT)
import net  # noqa: E402

TORCHVISION_URL = 'https://download.pytorch.org/models/vgg16-397923af.pth'
# torchvision's vgg16 `features` index of each convolution, in the order of net.VGG_LAYERS.
TORCHVISION_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
# Frossard's model takes RGB pixels in 0..255 minus this mean (his vgg16.py and post say so); ours takes
# (pixel / 255 - IMAGENET_MEAN) / IMAGENET_STD. conv1_1 is rescaled so that both give the same output.
FROSSARD_MEAN = (123.68, 116.779, 103.939)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the same numbers as data.py, beside the conversion that uses them
IMAGENET_STD = (0.229, 0.224, 0.225)


def name_list(names, limit=6):
    """'a, b, c and 4 more': names for a one-line message."""
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


def check_keys(path, found, expected, what):
    """Raise one ValueError naming the missing and unexpected keys, if any."""
    missing, unexpected = set(expected) - set(found), set(found) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys ({name_list(missing)})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys ({name_list(unexpected)})")
    if problems:
        raise ValueError(f"{path}: not {what}: " + '; '.join(problems))


def check_shapes(path, pairs):
    """pairs: (source key, source shape, expected shape); raise one ValueError naming every mismatch."""
    wrong = [f"{key} is {tuple(shape)}, expected {tuple(want)}" for key, shape, want in pairs
             if tuple(shape) != tuple(want)]
    if wrong:
        more = f" and {len(wrong) - 4} more" if len(wrong) > 4 else ''
        raise ValueError(f"{path}: wrong shapes: " + '; '.join(wrong[:4]) + more)


def vgg_from_torchvision(state, path):
    """torchvision's vgg16 state dict -> {layer: (weight OIHW, bias, source name)}; classifier.* is unused."""
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    keys = {f'features.{i}.{p}' for i in TORCHVISION_INDICES for p in ('weight', 'bias')}
    found = {k for k in state if not str(k).startswith('classifier.')}
    check_keys(path, found, keys, "torchvision's VGG-16 state dict")
    not_tensors = [k for k in keys if not isinstance(state[k], torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: not tensors: {name_list(not_tensors)}")
    return {name: (state[f'features.{i}.weight'], state[f'features.{i}.bias'], f'features.{i}')
            for name, i in zip(net.VGG_LAYERS, TORCHVISION_INDICES)}


def vgg_from_npz(arrays, path):
    """Frossard's arrays (conv1_1_W HWIO, conv1_1_b, ...) -> {layer: (weight OIHW, bias, source name)}.

    conv1_1 is rescaled from his input (RGB 0..255 minus FROSSARD_MEAN) to ours (ImageNet mean/std):
    pixel - mean_f = 255 * std * x + (255 * mean - mean_f), so the weight of input channel c is multiplied
    by 255 * std[c] and the constant term is folded into the bias (exact away from the zero padding).
    """
    keys = {f'{name}_{p}' for name in net.VGG_LAYERS for p in ('W', 'b')}
    found = {k for k in arrays if not re.fullmatch(r'fc[678]_[Wb]', k)}
    check_keys(path, found, keys, "Frossard's VGG-16 npz")
    layers = {}
    for name in net.VGG_LAYERS:
        kernel, bias = arrays[f'{name}_W'], arrays[f'{name}_b']
        if kernel.ndim != 4 or bias.ndim != 1:
            raise ValueError(f"{path}: {name}_W must be 4-d (HWIO) and {name}_b 1-d, found shapes "
                             f"{kernel.shape} and {bias.shape}")
        weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).float()  # HWIO -> OIHW
        layers[name] = (weight, torch.from_numpy(bias.copy()).float(), name)
    weight, bias, _ = layers['conv1_1']
    if weight.shape[1] == 3:  # a wrong shape is reported, with all others, when the layers are copied
        scale = 255 * torch.tensor(IMAGENET_STD, dtype=torch.float64)
        shift = 255 * torch.tensor(IMAGENET_MEAN, dtype=torch.float64) - torch.tensor(FROSSARD_MEAN,
                                                                                       dtype=torch.float64)
        w64 = weight.double()
        bias = (bias.double() + (w64 * shift[None, :, None, None]).sum((1, 2, 3))).float()
        layers['conv1_1'] = ((w64 * scale[None, :, None, None]).float(), bias, 'conv1_1')
    return layers


def read_npz(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as e:  # not a zip, a pickled array, a truncated file ...
        raise ValueError(f"{path}: cannot read it as an npz file: {e}") from None


def vgg_checkpoint(layers, path, source, seed):
    """(stage-0 checkpoint, {key: values copied}): Xavier everywhere (seeded), then the 13 VGG layers."""
    torch.manual_seed(seed)
    state = net.DIM().state_dict()
    pairs = []
    for name, (weight, bias, source_name) in layers.items():
        want = state[f'encoder.{name}.weight'].shape
        want = (want[0], 3) + tuple(want[2:]) if name == 'conv1_1' else want  # RGB part of conv1_1
        pairs += [(f'{source_name} weight (OIHW)', weight.shape, want),
                  (f'{source_name} bias', bias.shape, (want[0],))]
    check_shapes(path, pairs)
    for name, (weight, bias, _) in layers.items():
        target = state[f'encoder.{name}.weight']
        if name == 'conv1_1':
            target[:, :3] = weight  # RGB in the same order and normalisation as ours
            target[:, 3:] = 0  # the trimap channel starts at zero
        else:
            target.copy_(weight)
        state[f'encoder.{name}.bias'].copy_(bias)
    copied = {f'encoder.{name}.{p}': t.numel() for name, (weight, bias, _) in layers.items()
              for p, t in (('weight', weight), ('bias', bias))}
    return {'format': net.CHECKPOINT_FORMAT, 'model': state, 'stage': 0, 'step': 0, 'source': source}, copied


def mmagic_key(key):
    """Our state-dict key -> the key of the same tensor in mmagic's DIM."""
    part, layer, param = key.split('.')
    if part == 'encoder' and layer == 'conv6_1':
        return f'backbone.encoder.conv6.{param}'
    if part == 'encoder':
        block, k = (int(n) for n in layer[len('conv'):].split('_'))
        return f'backbone.encoder.layer{block}.{2 * (k - 1)}.{param}'  # Sequential(conv, ReLU, conv, ...)
    if part == 'decoder':
        return f'backbone.decoder.{layer}.{param}'
    return f'refiner.{layer}.{param}'


def mmagic_checkpoint(obj, path, source, seed):
    """mmagic's {'state_dict': ..., 'meta': ...} (or a bare state dict) -> (checkpoint, {key: values copied}).

    The checkpoint is stage 3 when the file has a refiner, else stage 1 (its refiner Xavier-initialised).
    Keys in mmcv's ConvModule form (`backbone.encoder.conv6.conv.weight`) are read as the plain form
    (`backbone.encoder.conv6.weight`); data_preprocessor.* buffers (mean, std) are not weights: skipped.
    """
    source_state = obj.get('state_dict', obj) if isinstance(obj, dict) else None
    if not isinstance(source_state, dict):
        raise ValueError(f"{path}: expected a dict with a 'state_dict', found {type(obj).__name__}")
    found = {}
    for key, value in source_state.items():
        if str(key).startswith('data_preprocessor.'):
            continue
        found[re.sub(r'\.conv\.(weight|bias)$', r'.\1', str(key))] = value
    torch.manual_seed(seed)
    state = net.DIM().state_dict()
    has_refiner = any(k.startswith('refiner.') for k in found)
    ours = [k for k in state if has_refiner or not k.startswith('refiner.')]
    names = {mmagic_key(k): k for k in ours}
    check_keys(path, found, names, "an mmagic DIM checkpoint" + (" with a refiner" if has_refiner else ''))
    not_tensors = [k for k in names if not isinstance(found[k], torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: not tensors: {name_list(not_tensors)}")
    check_shapes(path, [(k, found[k].shape, state[names[k]].shape) for k in sorted(names)])
    for k, ours_key in names.items():
        state[ours_key].copy_(found[k])
    ckpt = {'format': net.CHECKPOINT_FORMAT, 'model': state, 'stage': 3 if has_refiner else 1, 'step': 0,
            'source': source}
    return ckpt, {ours_key: found[k].numel() for k, ours_key in names.items()}


def download_vgg():
    """torchvision's VGG-16 file through torch.hub's cache (no torchvision needed)."""
    try:
        return torch.hub.load_state_dict_from_url(TORCHVISION_URL, map_location='cpu', check_hash=True,
                                                  weights_only=True)
    except Exception as e:  # no network, a proxy, a partial download ...
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        hub = os.path.join(torch.hub.get_dir(), 'checkpoints')
        raise ValueError(f"cannot download {TORCHVISION_URL} ({detail}); fetch that file on a machine with a "
                         f"network, then run: python tools/chg_model.py --vgg vgg16-397923af.pth --out OUT "
                         f"(or put it in {hub})") from None


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0], allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--vgg', help="torchvision's ImageNet VGG-16 state dict (vgg16-397923af.pth)")
    source.add_argument('--npz', help="Davi Frossard's vgg16_weights.npz (HWIO arrays conv1_1_W ...)")
    source.add_argument('--mmagic', help="one of mmagic's released DIM checkpoints (dim_stage1/2/3_...pth)")
    parser.add_argument('--out', required=True, help='the checkpoint to write')
    parser.add_argument('--seed', type=int, default=0, help='seed of the Xavier initialisation of the rest')
    parser.add_argument('--trust', action='store_true',
                        help='allow full unpickling of the source (only for files you trust)')
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        if args.mmagic:
            source = net.torch_load(args.mmagic, args.trust)
            ckpt, copied = mmagic_checkpoint(source, args.mmagic, os.path.basename(args.mmagic), args.seed)
        else:
            if args.vgg:
                path = args.vgg
                layers = vgg_from_torchvision(net.torch_load(args.vgg, args.trust), args.vgg)
            elif args.npz:
                path, layers = args.npz, vgg_from_npz(read_npz(args.npz), args.npz)
            else:
                path, layers = TORCHVISION_URL, vgg_from_torchvision(download_vgg(), TORCHVISION_URL)
            ckpt, copied = vgg_checkpoint(layers, path, os.path.basename(path), args.seed)
        net.check_finite(ckpt['model'], args.mmagic or path)  # refused by every loader: refuse to write it
        net.save_checkpoint(ckpt, args.out)
    except (ValueError, OSError) as e:
        print(f"chg_model: error: {e}", file=sys.stderr)
        return 1
    values = sum(copied.values())
    rest = len(ckpt['model']) - len(copied)
    notes = [" (conv1_1's trimap channel set to zero)" if ckpt['stage'] == 0 else '',
             " (conv1_1 rescaled from 0..255 mean-subtracted RGB to ImageNet mean/std)" if args.npz else '']
    print(f"copied {len(copied)} tensors ({values:,} values) from {ckpt['source']}{''.join(notes)}; "
          f"{rest} tensors Xavier-initialised (seed {args.seed}); wrote {args.out} (stage {ckpt['stage']})")
    return 0


if __name__ == '__main__':
    sys.exit(main())
