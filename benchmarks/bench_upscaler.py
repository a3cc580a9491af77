"""A learned upscaler's cost per frame beside the generator's, 128 -> 512 px, on this machine.

Two random-weight x4 networks in Real-ESRGAN's published layouts are built with torch and
exported to ONNX: SRVGGNetCompact (realesr-animevideov3: 64 channels, 16 convolutions,
PReLU, PixelShuffle x4, the input added back nearest-upscaled) and RRDBNet
(RealESRGAN_x4plus: 64 channels, growth 32, `--rrdb-blocks` residual-in-residual dense
blocks, two nearest x2 upsamplings with convolutions). Each runs through the engine's
`Upscaler` on 128 px frames, beside the random-weight BigGAN-deep-128 fp32 generator at its
CPU batch, in one run: fp32 (ONNX Runtime, the generator's providers) whole and in tiles,
and bf16 (OpenVINO's CPU plugin, where the CPU has AVX512-BF16 or AMX) whole, with the
quality gate's PSNR (bf16 against fp32 on the gate's sample frames, `open_upscaler`) and the
PSNR of bf16 against fp32 on the timed frames. Timings are the best of `--repeats` after a
warm-up; the load average, CPU and versions are recorded.

    python -m benchmarks.bench_upscaler --out benchmarks/results
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, measure, write_results
from benchmarks.prepare import DEFAULT_WORK, load_average


def compact_x4(torch: Any, feat: int = 64, convs: int = 16) -> Any:
    """SRVGGNetCompact, as realesr-animevideov3 (x4)."""
    nn = torch.nn

    class Compact(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[Any] = [nn.Conv2d(3, feat, 3, padding=1), nn.PReLU(feat)]
            for _ in range(convs):
                layers += [nn.Conv2d(feat, feat, 3, padding=1), nn.PReLU(feat)]
            layers += [nn.Conv2d(feat, 3 * 16, 3, padding=1), nn.PixelShuffle(4)]
            self.body = nn.Sequential(*layers)

        def forward(self, x: Any) -> Any:
            return self.body(x) + nn.functional.interpolate(x, scale_factor=4, mode="nearest")

    return Compact()


def rrdb_x4(torch: Any, blocks: int, feat: int = 64, growth: int = 32) -> Any:
    """RRDBNet, as RealESRGAN_x4plus (23 blocks there)."""
    nn = torch.nn

    class Dense(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList(
                nn.Conv2d(feat + i * growth, growth if i < 4 else feat, 3, padding=1) for i in range(5)
            )
            self.act = nn.LeakyReLU(0.2)

        def forward(self, x: Any) -> Any:
            features = [x]
            for i, conv in enumerate(self.convs):
                out = conv(torch.cat(features, 1))
                if i < 4:
                    features.append(self.act(out))
            return x + 0.2 * out

    class RRDB(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Sequential(Dense(), Dense(), Dense())

        def forward(self, x: Any) -> Any:
            return x + 0.2 * self.dense(x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = nn.Conv2d(3, feat, 3, padding=1)
            self.body = nn.Sequential(*(RRDB() for _ in range(blocks)))
            self.trunk = nn.Conv2d(feat, feat, 3, padding=1)
            self.up1, self.up2 = nn.Conv2d(feat, feat, 3, padding=1), nn.Conv2d(feat, feat, 3, padding=1)
            self.hr, self.last = nn.Conv2d(feat, feat, 3, padding=1), nn.Conv2d(feat, 3, 3, padding=1)
            self.act = nn.LeakyReLU(0.2)

        def forward(self, x: Any) -> Any:
            feature = self.first(x)
            feature = feature + self.trunk(self.body(feature))
            up = nn.functional.interpolate
            feature = self.act(self.up1(up(feature, scale_factor=2, mode="nearest")))
            feature = self.act(self.up2(up(feature, scale_factor=2, mode="nearest")))
            return self.last(self.act(self.hr(feature)))

    return Net()


def export(torch: Any, module: Any, path: Path, *, calibrate: bool = False) -> Path:
    """`module` with tamer random weights, exported with dynamic sizes; `calibrate`: its last convolution
    rescaled so the output is a picture (mean 0.5, std 0.25 per channel on a sample) rather than ~0,
    which every precision clips to the same black frame (RRDBNet has no skip from the input)."""
    if path.is_file():
        return path
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.dim() > 1:  # tamer random weights, so activations stay in range through the depth
                parameter.mul_(0.1)
        if calibrate:
            from benchmarks.bench_output import gan_like

            sample = torch.from_numpy(gan_like(1, 64).transpose(0, 3, 1, 2).astype("float32") / 255)
            out = module.eval()(sample)
            mean, std = out.mean((0, 2, 3)), out.std((0, 2, 3))
            scale = 0.25 / std
            module.last.weight.mul_(scale[:, None, None, None])
            module.last.bias.copy_((module.last.bias - mean) * scale + 0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        module.eval(),
        (torch.rand(1, 3, 64, 64),),
        str(path),
        input_names=["image"],
        output_names=["upscaled"],
        dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "upscaled": {0: "n", 2: "H", 3: "W"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rrdb-blocks", type=int, default=23, help="RRDBNet's blocks (RealESRGAN_x4plus: 23)")
    parser.add_argument("--frames", type=int, default=4, help="frames per timed call (the generator's CPU batch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tile", type=int, default=64, help="the tiled run's tile (px of the 128 px frame)")
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--no-tiles", action="store_true", help="leave out the tiled fp32 runs")
    parser.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or bf16 (bf16: native-bf16 CPUs)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", default=None, help="folder for upscaler.json / upscaler.md")
    args = parser.parse_args(argv)

    import onnxruntime
    import torch

    from benchmarks.bench_output import gan_like
    from ganterp_fast.engine.backends.capability import bf16_capability
    from ganterp_fast.engine.backends.choice import open_generator
    from ganterp_fast.engine.backends.contract import psnr
    from ganterp_fast.engine.backends.gate import stored_gate
    from ganterp_fast.engine.backends.models import resolve_model
    from ganterp_fast.engine.backends.upscaler import Upscaler, open_upscaler
    from ganterp_fast.engine.backends.upscaler_graph import describe_upscaler, read_upscaler

    precisions = [item.strip() for item in args.precisions.split(",") if item.strip()]
    capability = bf16_capability()
    if "bf16" in precisions and not capability.native:
        print(f"bf16 left out: {capability.describe()} has no native bf16")
        precisions.remove("bf16")

    load_before = load_average()
    folder = args.work / "upscalers"
    models = {
        "SRVGGNetCompact x4 (64 ch, 16 convs)": export(torch, compact_x4(torch), folder / "compact-x4.onnx"),
        f"RRDBNet x4 (64 ch, {args.rrdb_blocks} blocks)": export(
            torch, rrdb_x4(torch, args.rrdb_blocks), folder / f"rrdb{args.rrdb_blocks}-x4-v2.onnx", calibrate=True
        ),
    }
    generator_path = resolve_model("biggan-deep-128", precision="fp32", weights="random", seed=0)
    generator = open_generator(generator_path, device="cpu", precision="fp32")
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((args.frames, 128)) * 0.4).astype(np.float32)
    classes = np.eye(1000, dtype=np.float32)[rng.integers(0, 1000, args.frames)]
    frames = gan_like(args.frames, 128)

    rows: list[list[Any]] = []
    records: list[dict[str, Any]] = []
    timing = measure(lambda: generator(z, classes, truncation=0.4), args.repeats)
    per_frame = timing["seconds_best"] / args.frames
    gen_ms = 1000 * per_frame
    gflop = 17.9  # BigGAN-deep-128 with the RGB conv cut to 3 channels, counted from its graph
    rows.append(["BigGAN-deep-128 generator (random weights)", "fp32", gflop, f"{gen_ms:.0f}", "1.00", "-", "-"])
    records.append({"stage": "generator", "ms_per_frame": round(gen_ms, 1), **timing})
    for name, path in models.items():
        info = describe_upscaler(path, size=128)
        exact = None
        for precision in precisions:
            for tile in (0, args.tile) if precision == "fp32" and not args.no_tiles else (0,):
                plan = read_upscaler(path, tile=tile, overlap=args.overlap)
                gate = None
                if precision == "bf16":  # the engine's gate (measured once, then stored); timed even below it
                    open_upscaler(replace(plan, precision="bf16"), device="cpu")
                    gate = stored_gate(plan.path, "bf16", capability=capability)
                upscaler = Upscaler(plan, device="cpu", precision=precision)
                timing = measure(lambda upscaler=upscaler: upscaler(frames), args.repeats)
                ms = 1000 * timing["seconds_best"] / args.frames
                out = upscaler(frames)
                if precision == "fp32" and tile == 0:
                    exact = out
                match = (
                    None
                    if exact is None or upscaler.precision == "fp32"
                    else min(99.0, round(psnr(_mse(out, exact)), 1))
                )
                how = f"{upscaler.precision}, " + ("whole frames" if tile == 0 else f"tiles {tile} + {args.overlap}")
                gate_db = "-" if gate is None else f"{gate.psnr_db:.1f}" + ("" if gate.passed else " (failed)")
                row = [name, how, info["gflop_per_frame"], f"{ms:.0f}", f"{ms / gen_ms:.2f}", gate_db, match or "-"]
                rows.append(row)
                records.append(
                    {
                        "stage": name,
                        "how": how,
                        "precision": upscaler.precision,
                        "ms_per_frame": round(ms, 1),
                        "gate": None if gate is None else asdict(gate),
                        "psnr_vs_fp32_db": match,
                        "info": info,
                        **timing,
                    }
                )
    table = markdown_table(
        ["stage (128 -> 512 px)", "how", "GFLOP/frame", "ms/frame", "x generator", "gate PSNR dB", "PSNR vs fp32 dB"],
        rows,
    )
    import openvino

    note = (
        f"\n\n{capability.describe()}; onnxruntime {onnxruntime.__version__} (fp32), OpenVINO "
        f"{openvino.__version__} (bf16); {args.frames} frames a call, best of {args.repeats}; "
        f"load average {load_before} before, {load_average()} after."
    )
    settings = vars(args) | {"work": str(args.work), "cpu": capability.describe()}
    write_results(
        "upscaler",
        {"settings": settings, "results": records, "load": [load_before, load_average()]},
        table + note,
        args.out,
    )


if __name__ == "__main__":
    main()
