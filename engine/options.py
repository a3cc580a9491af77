"""The options of a render, composed of the parts' own: each part validates its fields once.

`RenderOptions` holds the model/device options (`ModelOptions`), the encoder's
(`encode.EncodeOptions`), the analysis's (`analysis.AnalysisOptions`) and the latent
path's (`path.PathOptions`), plus the frame rate. The excerpt (start, duration) belongs to
the input and is passed beside the options (`source.open_source`, `render(start=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from ganterp_fast.engine.analysis.analyze import AnalysisOptions
from ganterp_fast.engine.backends.contract import PRECISIONS, parse_device
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.latent.path import PathOptions, parse_fps
from ganterp_fast.engine.video.compose import FITS, LAYOUTS, PIP_CORNERS, parse_size
from ganterp_fast.engine.video.encode import EncodeOptions

DEFAULT_MODEL = "biggan-deep-128"


@dataclass(frozen=True)
class ModelOptions:
    """Which model, on which device, in which precision, and how it is fed."""

    model: str = DEFAULT_MODEL  # a pretrained name, a checkpoint directory, or an exported .onnx
    weights: str | None = None  # "random": the architecture with seeded random weights
    weights_seed: int = 0
    precision: str = "auto"  # see backends.plan_precision
    device: str = "auto"
    batch_size: int | None = None  # None: a default per device and resolution
    threads: int | None = None  # CPU threads for the generator (None: automatic)
    cuda_graph: bool = False  # CUDA: capture and replay one CUDA graph per batch size
    tensorrt: bool = False  # CUDA: TensorRT provider first (fp16 engines, cached)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", str(self.model))
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        parse_device(self.device)  # one of DEVICES, or cuda:N
        if self.batch_size is not None and (int(self.batch_size) != self.batch_size or self.batch_size < 1):
            raise InputError(f"batch size must be an integer of at least 1, got {self.batch_size}")
        if self.weights not in (None, "random"):
            raise InputError(f"weights must be 'random' or left out (the model's own), got {self.weights!r}")
        if self.threads is not None and (int(self.threads) != self.threads or self.threads < 1):
            raise InputError(f"threads must be an integer of at least 1, got {self.threads}")


@dataclass(frozen=True)
class OutputOptions:
    """The output picture: size, fit, a layout with the input's own video, and previews."""

    size: str | tuple[int, int] | None = None  # "WxH", a preset (compose.SIZE_PRESETS); None: the model's
    fit: str = "blur"  # pad | crop | blur: a square frame in a frame of another aspect
    layout: str | None = None  # side-by-side | stack | pip: the input's video beside the GAN frames
    pip_corner: str = "bottom-right"
    pip_size: float = 0.3  # the inset's width, as a fraction of the output's
    preview: bool = False  # a quick proxy: preview_fps, x264 ultrafast, at most 512 px
    preview_fps: str | float | Fraction = "6"

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", parse_size(self.size))
        if self.fit not in FITS:
            raise InputError(f"fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise InputError(f"layout must be one of {', '.join(LAYOUTS)} or none, got {self.layout!r}")
        if self.pip_corner not in PIP_CORNERS:
            raise InputError(f"pip corner must be one of {', '.join(PIP_CORNERS)}, got {self.pip_corner!r}")
        if not (isinstance(self.pip_size, (int, float)) and 0.05 <= self.pip_size <= 0.9):
            raise InputError(f"pip size must be a fraction of the width from 0.05 to 0.9, got {self.pip_size!r}")
        if str(self.preview_fps).strip().lower() == "native":
            raise InputError("preview fps must be a number of frames per second such as 6, not 'native'")
        parse_fps(self.preview_fps)


@dataclass(frozen=True)
class RenderOptions:
    """Everything a render takes besides its input, its excerpt and its output.

    `model` may be given as a string (the model alone) for `ModelOptions(model=...)`.
    """

    model: ModelOptions = field(default_factory=ModelOptions)
    fps: str | float | Fraction = "30"
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    path: PathOptions = field(default_factory=PathOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    overwrite: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            object.__setattr__(self, "model", ModelOptions(model=self.model))
        for name, kind in (
            ("model", ModelOptions),
            ("encode", EncodeOptions),
            ("analysis", AnalysisOptions),
            ("path", PathOptions),
            ("output", OutputOptions),
        ):
            if not isinstance(getattr(self, name), kind):
                raise InputError(f"RenderOptions.{name} must be a {kind.__name__}, got {getattr(self, name)!r}")
        if str(self.fps).strip().lower() != "native":
            parse_fps(self.fps)  # validate early; 'native' needs the audio's rate
