"""`ganterp-fast render INPUT [-o OUTPUT]`: the music video, with a progress bar and a summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganterp_fast.cli.direct import add_direction_args, add_path_args, directed_options
from ganterp_fast.cli.flags import add_options, from_args
from ganterp_fast.cli.options import add_analysis_args, add_input_args, default_output, resolve_input
from ganterp_fast.cli.scale_out import add_cluster_args, wants_scale_out
from ganterp_fast.engine.api import render
from ganterp_fast.engine.audio.excerpt import Excerpt, Section
from ganterp_fast.engine.backends.preparation import ModelProgress
from ganterp_fast.engine.latent.classes import class_label
from ganterp_fast.engine.options import ModelOptions, OutputOptions, RenderOptions
from ganterp_fast.engine.video.encode import EncodeOptions


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
    add_input_args(
        parser,
        many=True,
        excerpt="--start and --duration cut an excerpt out of INPUT: the excerpt alone is analysed and rendered, "
        "and the video is as long as the excerpt; with --preview they pick a section of the full render instead "
        "(the whole INPUT, or a cue sheet's excerpt, is analysed) and the preview shows the full render's path there",
    )
    parser.add_argument(
        "-o", "--output", metavar="OUTPUT", help="video file to write (default: INPUT's name with .mp4, beside it)"
    )
    add_options(parser, RenderOptions, ("overwrite",))

    path = add_path_args(parser, "the path through latent space")
    add_direction_args(
        path,
        cues_help="render from a cue sheet (from 'analyze --cues'; edited or not) instead of the inflection points",
    )
    video = parser.add_argument_group("video")
    add_options(video, RenderOptions, ("fps",))
    add_options(video, EncodeOptions, ("crf", "threads", "codec", "preset"))
    add_options(parser.add_argument_group("size, layout and preview"), OutputOptions)
    add_options(parser.add_argument_group("model and hardware"), ModelOptions)
    add_analysis_args(parser)
    add_cluster_args(parser)
    add_common_flags(parser)
    parser.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> RenderOptions:
    """The render's options from its flags (and a cue sheet's header with --cues)."""
    analysis, path = directed_options(args, read_cues=True)
    return from_args(
        RenderOptions,
        args,
        model=from_args(ModelOptions, args),
        encode=from_args(EncodeOptions, args),
        analysis=analysis,
        path=path,
        output=from_args(OutputOptions, args),
    )


def preview_section(args: argparse.Namespace) -> Section | None:
    """--preview with --start/--duration: the section of the full render to show (None: all of it).

    The excerpt analysed becomes the full render's (the whole input, or a cue sheet's), so the
    preview shows the full render's path there; without --preview they cut the excerpt itself."""
    if not args.preview:
        return None
    section = from_args(Section, args)  # --start and --duration within their bounds
    whole = Excerpt()
    args.start, args.duration = whole.start, whole.duration
    return None if (section.start, section.duration) == (whole.start, whole.duration) else section


def run(args: argparse.Namespace) -> int:
    section = preview_section(args)
    options = options_from_args(args)
    if wants_scale_out(args):  # several inputs, or --ray
        from ganterp_fast.cli import scale_out

        return scale_out.run(args, options, section)
    args.input = args.input[0] if args.input else None
    source = resolve_input(args)
    output = Path(args.output) if args.output else default_output(source, args.example)
    if args.preview and not args.output:  # beside the full render's name, not in its place
        output = output.with_name(f"{output.stem}.preview{output.suffix}")

    bar = None
    messages = {
        "model": f"preparing model {options.model.model} (a name or checkpoint is exported once, a foreign .onnx "
        "wrapped once, then cached)",
        "analysis": f"analysing {source}",
    }

    def on_progress(update) -> None:  # type: ignore[no-untyped-def]
        nonlocal bar
        if args.quiet:
            return
        if isinstance(update, ModelProgress):  # a first use's export: each step with an ETA
            print(update.line(), file=sys.stderr, flush=True)
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
            section=section,
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
            f"{result.duration_s:.1f} s of audio{_section_note(result)}"
        )
        print(
            f"{t.wall:.1f} s in all, {result.frames_per_second:.1f} frames/s on {result.device} "
            f"({', '.join(result.providers)}, batch {result.batch_size}; "
            f"model {t.model:.1f} s, analysis {t.analysis:.2f} s, path {t.path:.2f} s, "
            f"inference {t.inference:.1f} s, "
            f"{f'upscaler {result.upscaler} {t.upscale:.1f} s, ' if result.upscaler else ''}"
            f"{f'compose {t.compose:.1f} s, ' if t.compose else ''}"
            f"encode {t.encode:.1f} s; bound by {t.bound()})"
        )
        if result.full_frames:
            print(
                f"preview: the full render{' of this section' if result.section_s else ''} "
                f"({result.full_frames} frames at {args.fps} fps) would take about "
                f"{result.full_render_seconds:.0f} s here, at this preview's {1000 * result.seconds_per_frame:.0f} "
                "ms per frame (more where the full render's size is larger)"
            )
        label = class_label if result.num_classes == 1000 else str  # ImageNet's names for 1000-class models alone
        schedule = ", ".join(f"{time:.1f}s {label(index)}" for time, index in result.classes[:12])
        more = " ..." if len(result.classes) > 12 else ""
        if not result.num_classes:  # unconditional: a latent keyframe per point
            schedule = ", ".join(f"{time:.1f}s" for time, _ in result.classes[:12])
        what = "keyframes at" if not result.num_classes else "classes:"
        print(f"{len(result.classes)} inflection points, {what} {schedule}{more}")
        if result.unused_classes:
            unused = ", ".join(class_label(index) for index in result.unused_classes)
            print(f"unused classes (more than inflection points): {unused}")
    return 0


def _section_note(result) -> str:  # type: ignore[no-untyped-def]
    """' (2.0-8.0 s of the full render's 30.0 s)' for a section rendered alone; '' otherwise."""
    if result.section_s is None:
        return ""
    start, length = result.section_s
    return f" ({start:.1f}-{start + length:.1f} s of the full render's {result.analysis.duration_s:.1f} s)"
