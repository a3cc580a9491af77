"""A foreign generator through the engine against the same graph run bare by ONNX Runtime.

A random-weight StyleGAN2-like generator (an 8-layer 512-wide mapping network, a learned 4x4
constant, two modulated 3x3 convolutions per resolution up to `--size`, unfused modulation
and demodulation, tanh to [-1, 1]) is built with torch and exported with a foreign signature
(`z` [N, 512] -> `image` [N, 3, H, W] float). The engine wraps it (uint8 NHWC out, in the
graph) and runs it through its ONNX Runtime generator; the bare runs use one
`InferenceSession` on the original file with the engine's session options, alone and with
numpy's conversion to uint8 NHWC. Runs alternate call by call, so load on a shared machine
falls on both alike; rates use the median call.

    python -m benchmarks.bench_foreign --out benchmarks/results
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import markdown_table, write_results
from benchmarks.prepare import DEFAULT_WORK, load_average


def stylegan_like(torch: Any, size: int, z_dim: int = 512) -> Any:
    """Mapping MLP + per-resolution modulated convolutions (StyleGAN2's, unfused)."""
    nn = torch.nn

    class Modulated(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) / (cin * 9) ** 0.5)
            self.affine = nn.Linear(z_dim, cin)

        def forward(self, x: Any, w: Any) -> Any:
            style = self.affine(w) + 1.0
            y = nn.functional.conv2d(x * style[:, :, None, None], self.weight, padding=1)
            demod = torch.rsqrt((self.weight[None] ** 2 * style[:, None, :, None, None] ** 2).sum((2, 3, 4)) + 1e-8)
            return nn.functional.leaky_relu(y * demod[:, :, None, None], 0.2)

    class Generator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[Any] = []
            for _ in range(8):
                layers += [nn.Linear(z_dim, z_dim), nn.LeakyReLU(0.2)]
            self.mapping = nn.Sequential(*layers)
            self.const = nn.Parameter(torch.randn(1, 256, 4, 4))
            widths, side, blocks = [], 4, []
            while side < size:
                side *= 2
                widths.append(max(32, min(256, 4096 // side)))
            cin = 256
            for cout in widths:
                blocks.append(nn.ModuleList([Modulated(cin, cout), Modulated(cout, cout)]))
                cin = cout
            self.blocks = nn.ModuleList(blocks)
            self.rgb = nn.Conv2d(cin, 3, 1)

        def forward(self, z: Any) -> Any:
            w = self.mapping(z)
            x = self.const.expand(z.shape[0], -1, -1, -1)
            for first, second in self.blocks:
                x = nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
                x = second(first(x, w), w)
            return torch.tanh(self.rgb(x))

    return Generator().eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="output side in px (a power of 2)")
    parser.add_argument("--batch", type=int, default=4, help="images per call (the engine's CPU batch)")
    parser.add_argument("--calls", type=int, default=12, help="timed calls of each, alternating")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", default=None, help="folder for foreign.json / foreign.md")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    from ganterp_fast.engine.backends.describe import graph_gflop
    from ganterp_fast.engine.backends.onnxruntime_generator import Generator

    path = args.work / "foreign" / f"stylegan-like-{args.size}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.onnx.export(
        stylegan_like(torch, args.size),
        (torch.randn(2, 512),),
        str(path),
        input_names=["z"],
        output_names=["image"],
        dynamic_axes={"z": {0: "batch"}, "image": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    load_before = load_average()
    engine = Generator(path, device="cpu")
    options = ort.SessionOptions()  # the engine's own settings (onnxruntime_generator._make_session)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = engine.threads or 0
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    bare = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((args.batch, 512)).astype(np.float32)

    def bare_float() -> Any:
        return bare.run(None, {"z": z})[0]

    def bare_uint8() -> Any:
        out = bare.run(None, {"z": z})[0].transpose(0, 2, 3, 1)
        return np.clip((out + 1.0) * 128.0, 0, 255).astype(np.uint8)

    runs = {"bare ONNX Runtime (float NCHW)": bare_float, "bare + numpy to uint8 NHWC": bare_uint8}
    runs["engine (wrapped, uint8 NHWC in the graph)"] = lambda: engine(z)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up
        run()
    for _ in range(args.calls):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    diff = np.abs(engine(z).astype(int) - bare_uint8().astype(int)).max()
    reference = args.batch / statistics.median(times["bare ONNX Runtime (float NCHW)"])
    rows, figures = [], {}
    for name, values in times.items():
        rate = args.batch / statistics.median(values)
        figures[name] = {"images_per_s": round(rate, 3), "vs_bare": round(rate / reference, 4)}
        rows.append([name, f"{rate:.2f}", f"{rate / reference:.3f}"])
    table = markdown_table(["run", "images/s (median call)", "vs bare"], rows)
    write_results(
        "foreign",
        {
            "settings": {"size": args.size, "batch": args.batch, "calls": args.calls, "threads": engine.threads},
            "gflop_per_image": round(graph_gflop(path), 3),
            "max_uint8_difference_engine_vs_bare": int(diff),
            "load_average": {"before": load_before, "after": load_average()},
            "results": figures,
        },
        table,
        args.out,
    )


if __name__ == "__main__":
    main()
