"""Tiny foreign ONNX generators built with torch: the signatures published GAN exports have."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _torch():
    import pytest

    return pytest.importorskip("torch")


def stylegan_like(
    path: Path,
    *,
    z_dim: int = 16,
    classes: int = 0,
    size: tuple[int, int] = (32, 32),
    output: str = "nchw",
    names: tuple[str, str] = ("z", "c"),
    psi: bool = False,
    seed: int = 0,
) -> Path:
    """A mapping MLP, a learned constant and two modulated 3x3 convolutions (StyleGAN2's, unfused:
    modulate the input channels, convolve, demodulate), upsampled to `size`.

    output: "nchw" (float, tanh: [-1, 1]), "nchw01" (float, [0, 1]), "nhwc-uint8", "none" (a vector).
    """
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(seed)
    height, width = size

    class Modulated(nn.Module):
        def __init__(self, cin: int, cout: int, wdim: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
            self.affine = nn.Linear(wdim, cin)

        def forward(self, x, w):
            style = self.affine(w) + 1.0  # [N, cin]
            y = nn.functional.conv2d(x * style[:, :, None, None], self.weight, padding=1)
            demod = torch.rsqrt((self.weight[None] ** 2 * style[:, None, :, None, None] ** 2).sum((2, 3, 4)) + 1e-8)
            return y * demod[:, :, None, None]

    class Generator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mapping = nn.Sequential(nn.Linear(z_dim + classes, 32), nn.LeakyReLU(0.2), nn.Linear(32, 32))
            self.const = nn.Parameter(torch.randn(1, 8, height // 4, width // 4))
            self.conv1 = Modulated(8, 8, 32)
            self.conv2 = Modulated(8, 3, 32)

        def forward(self, z, c=None, truncation=None):
            w = self.mapping(torch.cat([z, c], 1) if c is not None else z)
            if truncation is not None:
                w = w * truncation.reshape(-1, 1)
            x = self.const.expand(z.shape[0], -1, -1, -1)
            x = nn.functional.leaky_relu(self.conv1(x, w), 0.2)
            x = nn.functional.interpolate(x, scale_factor=4.0, mode="nearest")
            x = self.conv2(x, w)
            if output == "nchw01":
                return torch.sigmoid(x)
            if output == "nhwc-uint8":
                return ((torch.tanh(x) + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            if output == "none":
                return x.mean((2, 3))
            return torch.tanh(x)

    model = Generator().eval()
    args = [torch.randn(2, z_dim)]
    input_names = [names[0]]
    if classes:
        args.append(torch.zeros(2, classes))
        input_names.append(names[1])
    if psi:
        if not classes:
            args.append(None)
        args.append(torch.ones(2))
        input_names.append("truncation_psi")
    axes = {name: {0: "batch"} for name in input_names}
    axes["image"] = {0: "batch"}
    torch.onnx.export(
        model,
        tuple(args),
        str(path),
        input_names=input_names,
        output_names=["image"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    return path


def rank3_latent(path: Path) -> Path:
    """A graph whose latent is [N, 4, 8] (a W+ input): not a generator this engine runs."""
    torch = _torch()

    class Net(torch.nn.Module):
        def forward(self, w):
            return torch.tanh(w.mean(1)[:, :3, None, None].expand(-1, 3, 8, 8))

    torch.onnx.export(Net(), (torch.randn(1, 4, 8),), str(path), input_names=["w"], output_names=["img"], dynamo=False)
    return path


def run_float(path: Path, feeds: dict[str, np.ndarray], value_range: str = "-1,1") -> np.ndarray:
    """The graph run bare by ONNX Runtime, its output as uint8 NHWC (the exports' conversion)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, feeds)[0]
    if out.dtype == np.uint8:
        return out
    out = out.transpose(0, 2, 3, 1).astype(np.float64)
    scaled = (out + 1) * 128 if value_range == "-1,1" else out * 256
    return np.clip(scaled, 0, 255).astype(np.uint8)
