"""BigGAN-deep rewritten for export: the same function as the reference, as one clean graph.

Exact rewrites of pytorch-pretrained-biggan's generator (equal in exact arithmetic; float
rounding differs within a few ulps):

- spectral norms removed: each weight divided once by its sigma (what eval mode computes;
  the model is read, never copied);
- truncation as a run-time input: the reference picks two of the 51 statistics rows with
  Python arithmetic on the truncation; here the host computes the 51 mixing weights
  (`truncation_weights`, one row per sample) and the graph takes a matrix product;
- every batch norm folded to a per-sample, per-channel affine `x * a + b`, with `a` and `b`
  for all ~40 batch norms computed by three small matrix products on [B, 256] vectors;
- gen_z's output rows reordered so its result is already NCHW (no transpose);
- self-attention: its three 1x1 projections as one convolution, phi and g max-pooled
  together, gamma folded into the output projection;
- nearest upsampling followed by a 3x3 convolution computed as four 2x2 convolutions, one
  per output phase (16/36 of the multiply-adds; see `_UpsampleConv`);
- the last convolution cut to the 3 channels the reference keeps;
- the uint8 conversion `clip((x + 1) / 2 * 256, 0, 255)` and NHWC layout inside the graph.

In fp16 the convolutions and activations are half precision; the batch-norm statistics
math (mixing, rsqrt) stays in fp32 and only the resulting `a`, `b` are cast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_pretrained_biggan import BigGAN
from pytorch_pretrained_biggan.model import BigGANBatchNorm, GenBlock, SelfAttn
from torch import nn

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}


def plain_weight(module: nn.Module) -> torch.Tensor:
    """The weight eval mode uses: a spectrally normalised one divided by its sigma = u . (W v).

    What `torch.nn.utils.spectral_norm` computes without power iteration, without copying the model.
    """
    if not hasattr(module, "weight_orig"):
        return module.weight.detach()
    weight = module.weight_orig.detach()
    sigma = torch.dot(module.weight_u, torch.mv(weight.reshape(weight.shape[0], -1), module.weight_v))
    return weight / sigma


def _conv(conv: nn.Conv2d, dtype: torch.dtype, weight: torch.Tensor | None = None) -> nn.Conv2d:
    """A plain convolution with `conv`'s shape and its eval-mode weight (or `weight`), in `dtype`."""
    plain = torch.nn.utils.skip_init(
        nn.Conv2d,
        conv.in_channels if weight is None else weight.shape[1],
        conv.out_channels if weight is None else weight.shape[0],
        conv.kernel_size if weight is None else tuple(weight.shape[2:]),
        padding=conv.padding,
        bias=conv.bias is not None,
        dtype=dtype,
    )
    plain.weight.data = (plain_weight(conv) if weight is None else weight).to(dtype)
    if conv.bias is not None:
        plain.bias.data = conv.bias.detach()[: plain.out_channels].to(dtype)
    return plain


class _UpsampleConv(nn.Module):
    """Nearest 2x upsampling then a 3x3 convolution, as one 2x2 convolution per output phase.

    Output pixel (2i + a, 2j + b) of conv3x3(upsample(x)) sees input rows {i-1, i} (a = 0) or
    {i, i+1} (a = 1), and likewise columns: its 3x3 kernel collapses to a 2x2 one whose taps
    are sums of the original taps. One 2x2 convolution with padding 1 computes all four phases
    (4x the channels on an (H+1)x(W+1) grid); each phase is the HxW window at offset (a, b),
    and the phases interleave into the 2Hx2W output. 16/36 of the multiply-adds, the same
    function up to float rounding.
    """

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype) -> None:
        super().__init__()
        weight = plain_weight(conv).float()
        rows = {
            0: (weight[:, :, 0], weight[:, :, 1] + weight[:, :, 2]),
            1: (weight[:, :, 0] + weight[:, :, 1], weight[:, :, 2]),
        }
        phases = []
        for a in (0, 1):
            row = torch.stack(rows[a], dim=2)  # [out, in, 2, 3]
            for b in (0, 1):
                cols = (row[..., 0], row[..., 1] + row[..., 2]) if b == 0 else (row[..., 0] + row[..., 1], row[..., 2])
                phases.append(torch.stack(cols, dim=3))
        self.out_channels = conv.out_channels
        self.conv = torch.nn.utils.skip_init(
            nn.Conv2d, conv.in_channels, 4 * conv.out_channels, 2, padding=1, dtype=dtype
        )
        self.conv.weight.data.copy_(torch.cat(phases))
        self.conv.bias.data.copy_(conv.bias.detach().repeat(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width, channels = int(x.shape[2]), int(x.shape[3]), self.out_channels
        out = self.conv(x)
        p00 = out[:, :channels, :height, :width]
        p01 = out[:, channels : 2 * channels, :height, 1:]
        p10 = out[:, 2 * channels : 3 * channels, 1:, :width]
        p11 = out[:, 3 * channels :, 1:, 1:]
        rows = torch.stack([torch.stack([p00, p01], dim=-1), torch.stack([p10, p11], dim=-1)], dim=3)
        return rows.reshape(-1, channels, 2 * height, 2 * width)


class _Block(nn.Module):
    """One GenBlock: four (affine, ReLU, conv) steps and the residual path."""

    def __init__(self, block: GenBlock, norm_slices: list[tuple[int, int]], dtype: torch.dtype) -> None:
        super().__init__()
        self.up_sample = bool(block.up_sample)
        self.drop_channels = bool(block.drop_channels)
        convs: list[nn.Module] = [_conv(getattr(block, f"conv_{i}"), dtype) for i in range(4)]
        if self.up_sample:
            convs[1] = _UpsampleConv(block.conv_1, dtype)
        self.convs = nn.ModuleList(convs)
        self.norm_slices = norm_slices

    def forward(self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """`a`, `b`: [B, total, 1, 1] affines of all batch norms; this block's are sliced out."""
        h = x
        for index, conv in enumerate(self.convs):
            start, stop = self.norm_slices[index]
            h = conv(torch.relu(h * a[:, start:stop] + b[:, start:stop]))
        skip = x[:, : x.shape[1] // 2] if self.drop_channels else x
        if self.up_sample:
            skip = F.interpolate(skip, scale_factor=2.0, mode="nearest")
        return h + skip


class _Attention(nn.Module):
    """SelfAttn with fused projections; gamma folded into the output convolution."""

    def __init__(self, attn: SelfAttn, dtype: torch.dtype) -> None:
        super().__init__()
        channels = attn.in_channels
        self.channels = channels
        projections = (attn.snconv1x1_theta, attn.snconv1x1_phi, attn.snconv1x1_g)
        self.project = _conv(attn.snconv1x1_theta, dtype, torch.cat([plain_weight(conv) for conv in projections]))
        self.output = _conv(attn.snconv1x1_o_conv, dtype, plain_weight(attn.snconv1x1_o_conv) * attn.gamma.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = int(x.shape[2]), int(x.shape[3])
        eighth, half = self.channels // 8, self.channels // 2
        theta, pooled = torch.split(self.project(x), [eighth, eighth + half], dim=1)
        phi, g = torch.split(F.max_pool2d(pooled, 2, 2), [eighth, half], dim=1)
        attn = torch.softmax(torch.matmul(theta.flatten(2).transpose(1, 2), phi.flatten(2)), dim=-1)
        attn_g = torch.matmul(g.flatten(2), attn.transpose(1, 2))
        attn_g = attn_g.reshape(-1, half, height, width)
        return x + self.output(attn_g)


class ExportableBigGAN(nn.Module):
    """BigGAN-deep as `(z, class_vector, truncation_weights) -> uint8 frames [B, H, W, 3]`.

    `z` [B, 128] is already scaled by the truncation (as the reference expects),
    `class_vector` [B, 1000] may mix classes, `truncation_weights` [B, 51] are the statistics
    mixing weights of each sample's truncation (see `engine.generator.truncation_weights`).
    """

    def __init__(self, model: BigGAN, *, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: use one of {sorted(PRECISIONS)}")
        dtype = PRECISIONS[precision]
        self.dtype = dtype
        generator = model.generator
        self.width = 16 * int(model.config.channel_width)
        self.register_buffer("embed", model.embeddings.weight.detach().float().clone())

        # gen_z: reorder output rows from (h, w, c) to (c, h, w) so the result is NCHW.
        weight = plain_weight(generator.gen_z)
        bias = generator.gen_z.bias.detach()
        rows = self.width
        self.register_buffer(
            "gen_z_w", weight.view(4, 4, rows, -1).permute(2, 0, 1, 3).reshape(rows * 16, -1).to(dtype)
        )
        self.register_buffer("gen_z_b", bias.view(4, 4, rows).permute(2, 0, 1).reshape(-1).to(dtype))

        # All batch norms in forward order; their statistics, conditioning weights and eps stacked.
        means, variances, cond_weights, cond_bias, eps = [], [], [], [], []
        stages: list[nn.Module] = []
        offset = 0

        def add_norm(norm: BigGANBatchNorm) -> tuple[int, int]:
            nonlocal offset
            channels = norm.num_features
            means.append(norm.running_means.detach().float())
            variances.append(norm.running_vars.detach().float())
            eps.append(torch.full((channels,), float(norm.eps)))
            if norm.conditional:
                cond_weights.append((plain_weight(norm.scale).float(), plain_weight(norm.offset).float()))
                cond_bias.append((torch.zeros(channels), torch.zeros(channels)))
            else:  # fixed affine: scale = weight - 1 (the graph adds 1 back), offset = bias
                dim = cond_weights[0][0].shape[1]
                cond_weights.append((torch.zeros(channels, dim), torch.zeros(channels, dim)))
                cond_bias.append((norm.weight.detach().float() - 1.0, norm.bias.detach().float()))
            span = (offset, offset + channels)
            offset += channels
            return span

        for layer in generator.layers:
            if isinstance(layer, GenBlock):
                spans = [add_norm(getattr(layer, f"bn_{i}")) for i in range(4)]
                stages.append(_Block(layer, spans, dtype))
            elif isinstance(layer, SelfAttn):
                stages.append(_Attention(layer, dtype))
            else:
                raise TypeError(f"unexpected generator layer {type(layer).__name__}")
        self.final_span = add_norm(generator.bn)
        self.stages = nn.ModuleList(stages)
        self.total = offset

        self.register_buffer("stat_means", torch.cat(means, dim=1))  # [51, total] fp32
        self.register_buffer("stat_vars", torch.cat(variances, dim=1))
        self.register_buffer("stat_eps", torch.cat(eps))
        scale_w = torch.cat([w for w, _ in cond_weights])
        offset_w = torch.cat([w for _, w in cond_weights])
        self.register_buffer("cond_w", torch.cat([scale_w, offset_w]).to(dtype))  # [2 * total, 256]
        self.register_buffer(
            "cond_b", torch.cat([torch.cat([s for s, _ in cond_bias]), torch.cat([o for _, o in cond_bias])])
        )

        rgb = generator.conv_to_rgb
        self.to_rgb = _conv(rgb, dtype, plain_weight(rgb)[:3])

    def norm_affines(self, cond: torch.Tensor, truncation_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample `a`, `b` [B, total, 1, 1] of every batch norm: x_norm = x * a + b."""
        conditioning = (torch.matmul(cond.to(self.dtype), self.cond_w.t())).float() + self.cond_b
        scale, offset = torch.split(conditioning, [self.total, self.total], dim=1)
        mean = torch.matmul(truncation_weights, self.stat_means)
        var = torch.matmul(truncation_weights, self.stat_vars)
        a = (1.0 + scale) * torch.rsqrt(var + self.stat_eps)
        b = offset - mean * a
        return a.to(self.dtype)[:, :, None, None], b.to(self.dtype)[:, :, None, None]

    def forward(self, z: torch.Tensor, class_vector: torch.Tensor, truncation_weights: torch.Tensor) -> torch.Tensor:
        cond = torch.cat([z, torch.matmul(class_vector, self.embed.t())], dim=1)
        a, b = self.norm_affines(cond, truncation_weights)
        x = torch.matmul(cond.to(self.dtype), self.gen_z_w.t()) + self.gen_z_b
        x = x.reshape(-1, self.width, 4, 4)
        for stage in self.stages:
            x = stage(x, a, b) if isinstance(stage, _Block) else stage(x)
        start, stop = self.final_span
        x = torch.relu(x * a[:, start:stop] + b[:, start:stop])
        x = torch.tanh(self.to_rgb(x)).float()
        frames = torch.clamp((x + 1.0) * 128.0, 0.0, 255.0).to(torch.uint8)
        return frames.permute(0, 2, 3, 1)
