"""The options of a render, composed of the parts' own: each part validates its fields once.

`RenderOptions` holds the model/device options (`ModelOptions`), the encoder's
(`encode.EncodeOptions`), the analysis's (`analysis.AnalysisOptions`) and the latent
path's (`path.PathOptions`), the output picture's (`OutputOptions`), plus the frame rate.
The excerpt (`audio.excerpt.Excerpt`: start, duration) belongs to the input and is passed
beside the options (`source.open_source`, `render(start=...)`). Every field is declared once with
`fields.option`: its default, rule, help, flag and label.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.backends.contract import PRECISIONS, parse_device
from ganterp_fast.engine.backends.roles import VALUE_RANGES, parse_inputs
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.fields import Options, by_parser, error, one_of, option, optional, real, whole
from ganterp_fast.engine.latent.path import PathOptions, parse_fps
from ganterp_fast.engine.video.compose import FITS, LAYOUTS, PIP_CORNERS, SIZE_PRESETS, parse_size
from ganterp_fast.engine.video.encode import EncodeOptions

DEFAULT_MODEL = "biggan-deep-128"


def _device(value: Any) -> str:
    """One of DEVICES or cuda:N, in its plain form ("CUDA:1 " -> "cuda:1")."""
    by_parser(parse_device, "device")(value)
    return str(value).strip().lower()


def _upscaler_file(value: Any) -> str:
    """The path of an existing file (its graph is read when the model is planned)."""
    if not isinstance(value, (str, os.PathLike)) or not os.path.isfile(value):
        raise ValueError(
            f"{value}: no such file; give a super-resolution .onnx (one float NCHW RGB input in [0, 1], "
            "its output the same scaled by a whole factor, as Real-ESRGAN's exports)"
        )
    return os.fspath(value)


def _model_inputs(value: Any) -> str:
    """ROLE=INPUT pairs (a string or a mapping) in their plain form: "latent=z,class=c"."""
    return ",".join(f"{role}={name}" for role, name in parse_inputs(value).items())


@dataclass(frozen=True)
class ModelOptions(Options):
    """Which model, on which device, in which precision, and how it is fed."""

    model: str = option(
        DEFAULT_MODEL,
        flag="--model",
        check=str,
        help="biggan-deep-128|256|512 (pretrained, fetched once), a checkpoint directory (config.json + "
        "pytorch_model.bin), an exported .onnx, or a model on the Hugging Face Hub: hf:OWNER/REPO (a checkpoint) "
        "or hf:OWNER/REPO/FILE.onnx, with an optional @REVISION (cached; HF_HUB_OFFLINE=1 uses the cache alone)",
    )
    weights: str | None = option(
        None,
        flag="--weights",
        choices=("random",),
        check=one_of(("random",), none=True),
        help="use the model's architecture with seeded random weights (offline try-outs, benchmarks)",
    )
    weights_seed: int = option(0, check=whole(0))  # the seed of weights="random"
    device: str = option(
        "auto",
        flag="--device",
        check=_device,
        metavar="auto|cpu|cuda|cuda:N",
        help="where the generator runs; cuda:N: the N-th GPU (default: %(default)s: CUDA when available)",
    )
    precision: str = option(
        "auto",
        flag="--precision",
        choices=PRECISIONS,  # see backends.plan_precision
        help="auto: fp16 on CUDA; on the CPU bf16 (OpenVINO) where the CPU has native bf16 (AVX512-BF16 or AMX) "
        "and the model passes its quality gate, else fp32 (exact)",
    )
    batch_size: int | None = option(
        None,
        flag="--batch-size",
        parse=int,
        check=optional(whole(1)),
        help="frames per generator call (default: 4 on the CPU, 16-64 on CUDA)",
    )
    threads: int | None = option(
        None,
        flag="--threads",
        parse=int,
        check=optional(whole(1)),
        help="CPU threads for the generator (default: all cores)",
    )
    cuda_graph: bool = option(
        False,
        flag="--cuda-graph",
        help="CUDA: capture one CUDA graph per batch size and replay it (less launch overhead at small batches)",
    )
    tensorrt: bool = option(
        False,
        flag="--tensorrt",
        help="CUDA: run through ONNX Runtime's TensorRT provider (fp16; the engine is built once and cached)",
    )
    model_inputs: str | None = option(
        None,
        flag="--model-inputs",
        check=optional(_model_inputs),
        metavar="ROLE=INPUT,...",
        help="a foreign .onnx: which input is which where names do not tell, e.g. latent=z,class=c,truncation=psi",
    )
    model_range: str = option(
        "-1,1",
        flag="--model-range",
        choices=VALUE_RANGES,
        help="a foreign .onnx with a float image output: its value range (default: %(default)s, the GAN convention)",
    )
    upscaler: str | None = option(
        None,
        flag="--upscaler",
        parse=str,
        check=optional(_upscaler_file),
        metavar="SR.onnx",
        help="a learned super-resolution model (Real-ESRGAN-style ONNX: NCHW float RGB in [0, 1] in, the same "
        "x2 or x4 out) run on the generator's frames, on its device, before --size and --fit",
    )
    upscaler_tile: int = option(
        512,
        flag="--upscaler-tile",
        check=whole(0, note="0: whole frames"),
        metavar="PX",
        help="--upscaler: frames with a side over PX are upscaled in tiles of PX (less memory); 0: whole frames",
    )
    upscaler_overlap: int = option(
        16,
        flag="--upscaler-overlap",
        check=whole(0),
        metavar="PX",
        help="--upscaler: context around each tile, cropped from its output (exact where it covers the "
        "model's receptive field)",
    )


def _preview_fps(value: Any) -> Any:
    if str(value).strip().lower() == "native":
        raise ValueError(f"must be a number of frames per second such as 6, not {value!r}")
    return by_parser(parse_fps, "fps", keep=True)(value)


@dataclass(frozen=True)
class OutputOptions(Options):
    """The output picture: size, fit, a layout with the input's own video, and previews."""

    size: str | tuple[int, int] | None = option(
        None,
        flag="--size",
        check=by_parser(parse_size, "size"),
        metavar="WxH|PRESET",
        label="size (or WxH)",
        help=f"output size: WxH (even numbers) or {', '.join(SIZE_PRESETS)} (default: the model's resolution)",
    )
    fit: str = option(
        "blur",
        flag="--fit",
        choices=FITS,
        help="a square frame in a frame of another aspect: black bars, the centre cropped, or on a blurred "
        "copy of itself",
    )
    layout: str | None = option(
        None,
        flag="--layout",
        choices=LAYOUTS,
        check=one_of(LAYOUTS, none=True),
        label="layout with the input's video",
        help="show the input's own video beside the GAN frames (source left), above them, or as an inset",
    )
    pip_corner: str = option(
        "bottom-right",
        flag="--pip-corner",
        choices=PIP_CORNERS,
        help="--layout pip: the inset's corner",
    )
    pip_size: float = option(
        0.3,
        flag="--pip-size",
        check=real(0.05, 0.9, rule="must be a fraction of the width from 0.05 to 0.9"),
        metavar="FRACTION",
        help="--layout pip: the inset's width as a fraction of the output's",
    )
    preview: bool = option(
        False,
        flag="--preview",
        help="a quick proxy of the same render: --preview-fps frames/s, x264 ultrafast, at most 512 px; "
        "says how long the full render would take; with --start/--duration, a preview of that section: the "
        "whole input (or a cue sheet's excerpt) is analysed, so it shows the full render's path there",
    )
    preview_fps: str | float | Fraction = option(
        "6",
        flag="--preview-fps",
        check=_preview_fps,
        metavar="F",
        help="--preview: its frame rate",
    )


def _fps(value: Any) -> Any:
    """A frame rate parse_fps takes, or 'native' (which needs the audio's rate: see `frame_rate`)."""
    return value if str(value).strip().lower() == "native" else by_parser(parse_fps, "fps", keep=True)(value)


def _part(kind: type) -> Any:
    def check(value: Any) -> Any:
        if kind is ModelOptions and isinstance(value, str):
            return ModelOptions(model=value)
        if not isinstance(value, kind):
            raise ValueError(f"must be {kind.__name__}(...), got {value!r}")
        return value

    return check


@dataclass(frozen=True)
class RenderOptions(Options):
    """Everything a render takes besides its input, its excerpt and its output.

    `model` may be given as a string (the model alone) for `ModelOptions(model=...)`.
    """

    model: ModelOptions = option(factory=ModelOptions, check=_part(ModelOptions))
    fps: str | float | Fraction = option(
        "30",
        flag="--fps",
        check=_fps,
        help="frame rate: 24, 25, 30, 30000/1001, 60, ... or 'native' (sample rate / 128, one frame per "
        "spectrogram column)",
    )
    encode: EncodeOptions = option(factory=EncodeOptions, check=_part(EncodeOptions))
    analysis: AnalysisOptions = option(factory=AnalysisOptions, check=_part(AnalysisOptions))
    path: PathOptions = option(factory=PathOptions, check=_part(PathOptions))
    output: OutputOptions = option(factory=OutputOptions, check=_part(OutputOptions))
    overwrite: bool = option(False, flag="--overwrite", short="-y", help="replace OUTPUT if it exists")

    def frame_rate(self, sample_rate: int) -> Fraction:
        """The video's frame rate for audio at `sample_rate` ('native' is sample_rate / 128)."""
        try:
            return parse_fps(self.fps, sample_rate=sample_rate)
        except InputError as exc:  # 'native' past the limit at this rate
            text = str(exc)
            raise error(self, "fps", text[len("fps") :] if text.startswith("fps") else f": {text}") from None
