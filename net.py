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
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

# The five VGG-16 blocks; each ends with a 2x2 max-pool that returns its indices.
BLOCKS = (
    ('conv1_1', 'conv1_2'),
    ('conv2_1', 'conv2_2'),
    ('conv3_1', 'conv3_2', 'conv3_3'),
    ('conv4_1', 'conv4_2', 'conv4_3'),
    ('conv5_1', 'conv5_2', 'conv5_3'),
)
VGG_LAYERS = tuple(name for block in BLOCKS for name in block)  # the 13 layers ImageNet weights fill
# The decoder's convolution after each unpooling, deepest first (it undoes pool 5, 4, 3, 2, 1).
UNPOOL_CONVS = ('deconv5_1', 'deconv4_1', 'deconv3_1', 'deconv2_1', 'deconv1_1')
# Which parts train in each stage (SPEC section 2); the others are frozen but still exist.
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
            x, indices = F.max_pool2d(x, 2, 2, return_indices=True)  # N,C,floor(H/2),floor(W/2)
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
        x = F.relu_(self.deconv6_1(x))
        skips = list(reversed(features)) or [None] * len(pools)
        for name, (indices, size), skip in zip(UNPOOL_CONVS, reversed(pools), skips):
            x = F.max_unpool2d(x, indices, 2, 2, output_size=size)  # N,C,2h(+1),2w(+1)
            if skip is not None:
                x = x.add_(skip)
            x = F.relu_(getattr(self, name)(x))
        return self.deconv1(x)  # N,1,H,W logits


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
    Works in channels_last and under torch.autocast (the alphas are float32 either way). On CPU,
    `model.to(memory_format=torch.channels_last)` with a channels_last `img` ran 20-25% faster
    (800x800: 3.3 s instead of 4.1 s on 2 cores); converting only `img` gains about half of that.
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


def save_checkpoint(ckpt, path):
    """Write `ckpt` (a dict of tensors and plain values) to `path` atomically, creating its folder.

    The file is written to PATH.tmp in the same folder and then renamed over PATH, so PATH is always
    a whole checkpoint, even if the process dies while saving.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp'
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def torch_load(path, trust=False):
    """torch.load onto the CPU, weights_only unless `trust`; every failure becomes ValueError("PATH: why")."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file not found: {path}")
    try:
        return torch.load(path, map_location='cpu', weights_only=not trust)
    except Exception as e:  # torch raises many types for a bad file; all mean "cannot read it"
        text = str(e)
        # weights_only failures put the reason after 'WeightsUnpickler error:' in a long message
        reason = text.split('WeightsUnpickler error:')[-1]
        reason = next((line.strip() for line in reason.splitlines() if line.strip()), type(e).__name__)
        reason = reason.split('. ')[0]  # the first sentence
        if 'Unsupported global' in reason:
            name = reason.split('GLOBAL ')[-1].split()[0]
            raise ValueError(f"{path}: holds a pickled {name}, which weights_only=True refuses; "
                             f"allow it only if you trust the file (trust=True, --trust)") from None
        raise ValueError(f"{path}: cannot read it as a torch file: {reason}") from None


def load_checkpoint(path, trust=False):
    """Read a checkpoint of this project onto the CPU; trust=True allows full unpickling (trusted files only).

    Raises FileNotFoundError("checkpoint not found: PATH") or ValueError("PATH: <what is wrong>").
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch_load(path, trust)
    if not isinstance(ckpt, dict) or 'model' not in ckpt:
        found = f"a dict with keys {list(ckpt)[:5]}" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a checkpoint of this project: expected a dict with a 'model' key, "
                         f"found {found}")
    if ckpt.get('format', CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {ckpt['format']!r}, this code reads format "
                         f"{CHECKPOINT_FORMAT}")
    return ckpt
