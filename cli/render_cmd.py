"""`ganterp-fast render INPUT [-o OUTPUT]`: the music video, with a progress bar and a summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganterp_fast.cli.direct import add_direction_args, directed_options
from ganterp_fast.cli.options import add_analysis_args, add_input_args, default_output, resolve_input
from ganterp_fast.cli.scale_out import add_cluster_args, wants_scale_out
from ganterp_fast.engine.api import render
from ganterp_fast.engine.backends.contract import PRECISIONS, parse_device
from ganterp_fast.engine.errors import InputError
from ganterp_fast.engine.latent.path import Z_MODES, PathOptions
from ganterp_fast.engine.options import ModelOptions, OutputOptions, RenderOptions
from ganterp_fast.engine.video.compose import FITS, LAYOUTS, PIP_CORNERS, SIZE_PRESETS
from ganterp_fast.engine.video.encode import H264_ENCODERS, X264_PRESETS, EncodeOptions

_DEFAULTS = RenderOptions()
_MODEL_DEFAULTS = ModelOptions()
_ENCODE_DEFAULTS = EncodeOptions()
_PATH_DEFAULTS = PathOptions()
_OUTPUT_DEFAULTS = OutputOptions()


def register(subparsers: argparse._SubParsersAction) -> None:
    from ganterp_fast.cli.options import add_common_flags

    parser = subparsers.add_parser(
        "render",
        help="render a music video of an audio or video file",
        description=(
            "Render INPUT's soundtrack as a music video: the analysis finds where the sound "
            "changes, each change gets an ImageNet class, and BigGAN draws the path between "
            "them, frame by frame, into an H.264 mp4 with the original audio."
        ),
        epilog=(
            "examples:\n"
            "  ganterp-fast render song.mp3 -o song.mp4 --classes 'jellyfish, mountain bike, boa constrictor'\n"
            "  ganterp-fast render clip.mp4 --model biggan-deep-256 --fps 24 --seed 3\n"
            "  ganterp-fast render --example --weights random -o demo.mp4    # offline try-out"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_args(parser, many=True)
    parser.add_argument(
        "-o", "--output", metavar="OUTPUT", help="video file to write (default: INPUT's name with .mp4, beside it)"
    )
    parser.add_argument("-y", "--overwrite", action="store_true", help="replace OUTPUT if it exists")

    path = parser.add_argument_group("the path through latent space")
    path.add_argument(
        "--classes",
        metavar="LIST",
        help="comma-separated ImageNet class names or indices, one per inflection point in "
        "order; missing ones are drawn at random (see 'ganterp-fast classes')",
    )
    path.add_argument(
        "--z-mode",
        choices=Z_MODES,
        default=_PATH_DEFAULTS.z_mode,
        help="one z per inflection point (the paper) or one for the whole "
        "video (the original code) (default: %(default)s)",
    )
    path.add_argument(
        "--truncation",
        type=float,
        default=_PATH_DEFAULTS.truncation,
        help="BigGAN truncation in (0, 1]: lower is cleaner, higher more varied (default: %(default)s)",
    )
    path.add_argument(
        "--seed",
        type=int,
        default=_PATH_DEFAULTS.seed,
        help="seed of the random classes and z: the same seed gives the same frames (default: %(default)s)",
    )
    add_direction_args(
        path,
        cues_help="render from a cue sheet (from 'analyze --cues'; edited or not) instead of the inflection points",
    )

    video = parser.add_argument_group("video")
    video.add_argument(
        "--fps",
        default=str(_DEFAULTS.fps),
        help="frame rate: 24, 25, 30, 30000/1001, 60, ... or 'native' (sample rate / 128, "
        "one frame per spectrogram column) (default: %(default)s)",
    )
    video.add_argument(
        "--crf",
        type=int,
        default=_ENCODE_DEFAULTS.crf,
        help="x264 quality, 0-51, lower is better (default: %(default)s)",
    )
    video.add_argument(
        "--encoder-threads",
        type=int,
        default=_ENCODE_DEFAULTS.threads,
        metavar="N",
        help="x264 threads; 0: automatic (default: %(default)s)",
    )
    video.add_argument(
        "--codec",
        choices=(*H264_ENCODERS, "auto"),
        default=_ENCODE_DEFAULTS.codec,
        help="H.264 encoder: libx264 (CPU), h264_nvenc (NVIDIA GPUs with NVENC), or auto: "
        "NVENC where it opens, else libx264 (default: %(default)s)",
    )
    video.add_argument(
        "--preset",
        choices=X264_PRESETS,
        default=_ENCODE_DEFAULTS.preset,
        help="x264 speed/size trade-off (default: %(default)s)",
    )

    picture = parser.add_argument_group("size, layout and preview")
    picture.add_argument(
        "--size",
        metavar="WxH|PRESET",
        help=f"output size: WxH (even numbers) or {', '.join(SIZE_PRESETS)} (default: the model's resolution)",
    )
    picture.add_argument(
        "--fit",
        choices=FITS,
        default=_OUTPUT_DEFAULTS.fit,
        help="a square frame in a frame of another aspect: black bars, the centre cropped, or on a blurred "
        "copy of itself (default: %(default)s)",
    )
    picture.add_argument(
        "--layout",
        choices=LAYOUTS,
        help="show the input's own video beside the GAN frames (source left), above them, or as an inset",
    )
    picture.add_argument(
        "--pip-corner",
        choices=PIP_CORNERS,
        default=_OUTPUT_DEFAULTS.pip_corner,
        help="--layout pip: the inset's corner (default: %(default)s)",
    )
    picture.add_argument(
        "--pip-size",
        type=float,
        default=_OUTPUT_DEFAULTS.pip_size,
        metavar="FRACTION",
        help="--layout pip: the inset's width as a fraction of the output's (default: %(default)s)",
    )
    picture.add_argument(
        "--preview",
        action="store_true",
        help="a quick proxy of the same render: --preview-fps frames/s, x264 ultrafast, at most 512 px; "
        "says how long the full render would take",
    )
    picture.add_argument(
        "--preview-fps",
        default=str(_OUTPUT_DEFAULTS.preview_fps),
        metavar="F",
        help="--preview: its frame rate (default: %(default)s)",
    )

    model = parser.add_argument_group("model and hardware")
    model.add_argument(
        "--model",
        default=_MODEL_DEFAULTS.model,
        help="biggan-deep-128|256|512 (pretrained, fetched once), a checkpoint directory "
        "(config.json + pytorch_model.bin), or an exported .onnx (default: %(default)s)",
    )
    model.add_argument(
        "--weights",
        choices=("random",),
        help="use the model's architecture with seeded random weights (offline try-outs, benchmarks)",
    )
    model.add_argument(
        "--device",
        type=_device,
        metavar="auto|cpu|cuda|cuda:N",
        default=_MODEL_DEFAULTS.device,
        help="where the generator runs; cuda:N: the N-th GPU (default: %(default)s: CUDA when available)",
    )
    model.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=_MODEL_DEFAULTS.precision,
        help="auto: fp16 on CUDA; on the CPU bf16 (OpenVINO) where the CPU has native bf16 (AVX512-BF16 or AMX) "
        "and the model passes its quality gate, else fp32 (exact) (default: %(default)s)",
    )
    model.add_argument(
        "--batch-size", type=int, default=None, help="frames per generator call (default: 4 on the CPU, 16-64 on CUDA)"
    )
    model.add_argument("--threads", type=int, default=None, help="CPU threads for the generator (default: all cores)")
    model.add_argument(
        "--cuda-graph",
        action="store_true",
        help="CUDA: capture one CUDA graph per batch size and replay it (less launch overhead at small batches)",
    )
    model.add_argument(
        "--tensorrt",
        action="store_true",
        help="CUDA: run through ONNX Runtime's TensorRT provider (fp16; the engine is built once and cached)",
    )

    add_analysis_args(parser)
    add_cluster_args(parser)
    add_common_flags(parser)
    parser.set_defaults(func=run)


def _device(text: str) -> str:
    """A --device value: one of DEVICES or cuda:N (argparse's exit 2 with the reason otherwise)."""
    try:
        parse_device(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip().lower()


def options_from_args(args: argparse.Namespace) -> RenderOptions:
    analysis, path = directed_options(args, read_cues=True)
    return RenderOptions(
        model=ModelOptions(
            model=args.model,
            weights=args.weights,
            precision=args.precision,
            device=args.device,
            batch_size=args.batch_size,
            threads=args.threads,
            cuda_graph=args.cuda_graph,
            tensorrt=args.tensorrt,
        ),
        fps=args.fps,
        encode=EncodeOptions(crf=args.crf, preset=args.preset, threads=args.encoder_threads, codec=args.codec),
        overwrite=args.overwrite,
        analysis=analysis,
        path=path,
        output=OutputOptions(
            size=args.size,
            fit=args.fit,
            layout=args.layout,
            pip_corner=args.pip_corner,
            pip_size=args.pip_size,
            preview=args.preview,
            preview_fps=args.preview_fps,
        ),
    )


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    if wants_scale_out(args):  # several inputs, or --ray
        from ganterp_fast.cli import scale_out

        return scale_out.run(args, options)
    args.input = args.input[0] if args.input else None
    source = resolve_input(args)
    output = Path(args.output) if args.output else default_output(source, args.example)
    if args.preview and not args.output:  # beside the full render's name, not in its place
        output = output.with_name(f"{output.stem}.preview{output.suffix}")

    bar = None
    messages = {
        "model": f"preparing model {options.model.model} (a name or checkpoint is exported once, then cached)",
        "analysis": f"analysing {source}",
    }

    def on_progress(update) -> None:  # type: ignore[no-untyped-def]
        nonlocal bar
        if args.quiet:
            return
        if update.stage in messages:
            print(messages[update.stage], file=sys.stderr, flush=True)
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(
                total=update.frames_total,
                unit="frame",
                dynamic_ncols=True,
                desc="render",
                file=sys.stderr,
                mininterval=0.5,
            )
        bar.update(update.frames_done - bar.n)

    try:
        result = render(
            source,
            output,
            options,
            start=args.start,
            duration=args.duration,
            progress=on_progress,
            segment_seconds=args.segment_seconds,
            resume=args.resume,
        )
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        t = result.times
        print(
            f"{result.output}: {result.frames} frames at {float(result.fps):g} "
            f"fps, {result.width or result.resolution}x{result.height or result.resolution}, "
            f"{result.analysis.duration_s:.1f} s of audio"
        )
        print(
            f"{t.wall:.1f} s in all, {result.frames_per_second:.1f} frames/s on {result.device} "
            f"({', '.join(result.providers)}, batch {result.batch_size}; "
            f"model {t.model:.1f} s, analysis {t.analysis:.2f} s, path {t.path:.2f} s, "
            f"inference {t.inference:.1f} s, {f'compose {t.compose:.1f} s, ' if t.compose else ''}"
            f"encode {t.encode:.1f} s; bound by {t.bound()})"
        )
        if result.full_frames:
            print(
                f"preview: the full render ({result.full_frames} frames at {args.fps} fps) would take about "
                f"{result.full_render_seconds:.0f} s here, at this preview's {1000 * result.seconds_per_frame:.0f} "
                "ms per frame (more where the full render's size is larger)"
            )
        schedule = ", ".join(f"{time:.1f}s:{index}" for time, index in result.classes[:12])
        more = " ..." if len(result.classes) > 12 else ""
        print(f"{len(result.classes)} inflection points, classes (time:index): {schedule}{more}")
        if result.unused_classes:
            print(f"unused classes (more than inflection points): {', '.join(map(str, result.unused_classes))}")
    return 0
