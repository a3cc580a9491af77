"""The analysis as a picture: spectrogram, TV signal with inflection points, alphas."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ganterp_fast.engine.analysis.analyze import Analysis
from ganterp_fast.engine.errors import InputError, MissingExtraError
from ganterp_fast.engine.files import atomic_output

# Image formats the plot is written in, by file suffix (none: PNG).
PLOT_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg")


def plot_format(path: str | os.PathLike[str]) -> str:
    """The image format of a plot's file name; InputError naming the name for any other suffix."""
    suffix = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if suffix and suffix not in PLOT_FORMATS:
        raise InputError(f"plot {os.fspath(path)} must end in one of {', '.join('.' + f for f in PLOT_FORMATS)}")
    return suffix or "png"


def plot_analysis(
    analysis: Analysis, path: str | os.PathLike[str], *, overwrite: bool = False, latent: Any = None
) -> None:
    """Draw what the seed shows, on one time axis in seconds, into an image file (PNG, SVG, PDF).

    When the analysis has them, it also shows librosa's beats, the points before and after
    snapping to them, and the onset strength envelope; with `latent` (a `LatentPath` drawn
    from a cue sheet or --classes-at) the cues and their classes.
    """
    image_format = plot_format(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError("--plot", "plot") from None

    onsets = analysis.onset_envelope
    rows = 4 if onsets is not None else 3
    fig, axes = plt.subplots(rows, 1, figsize=(12, 2.7 * rows), sharex=True, constrained_layout=True)
    title = os.path.basename(analysis.source) if analysis.source else "audio"
    fig.suptitle(
        f"{title}: {analysis.duration_s:.1f} s at {analysis.sample_rate} Hz, "
        f"{len(analysis.inflection_points)} inflection points"
    )
    cues = latent if getattr(latent, "options", None) is not None and latent.options.cues is not None else None
    _spectrogram_panel(axes[0], analysis)
    _signal_panel(axes[1], analysis)
    _alpha_panel(axes[2], analysis, cues)
    if onsets is not None:
        _onset_panel(axes[3], analysis)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0, max(analysis.duration_s, 1e-3))
    try:
        with atomic_output(path, overwrite=overwrite) as temporary:
            fig.savefig(temporary, dpi=110, format=image_format)
    finally:
        plt.close(fig)


def _spectrogram_panel(ax: Any, analysis: Analysis) -> None:
    image = analysis.plot_spectrogram
    if image is not None:
        low, high = np.percentile(image, [5, 99.5])
        ax.imshow(
            image,
            origin="lower",
            aspect="auto",
            extent=(0, analysis.duration_s, 0, analysis.sample_rate / 2 / 1000),
            vmin=low,
            vmax=high,
            cmap="magma",
            interpolation="nearest",
        )
    ax.set_ylabel("frequency (kHz)")
    ax.set_title("spectrogram (dB)", loc="left", fontsize=9)


def _signal_panel(ax: Any, analysis: Analysis) -> None:
    """The TV distances, the smoothed signal, the inflection points (before snapping too) and the beats."""
    times = analysis.column_times()
    tv_times = times[1:] if len(times) > 1 else times
    ax.plot(tv_times[: len(analysis.tv)], analysis.tv, color="0.75", linewidth=0.5, label="TV distance")
    ax.plot(times, analysis.signal, color="tab:blue", linewidth=1.0, label="smoothed signal")
    points = analysis.inflection_points
    ax.scatter(times[points], analysis.signal[points], color="tab:red", zorder=3, s=18, label="inflection points")
    if analysis.unsnapped_points is not None:
        before = analysis.unsnapped_points
        ax.scatter(
            times[before],
            analysis.signal[before],
            facecolors="none",
            edgecolors="0.4",
            zorder=3,
            s=22,
            label="before snapping to beats",
        )
    if analysis.beat_times is not None:
        ax.vlines(
            analysis.beat_times,
            0,
            1,
            transform=ax.get_xaxis_transform(),
            color="tab:orange",
            linewidth=0.5,
            alpha=0.6,
            label="beats",
        )
    upper = float(analysis.signal.max()) if len(analysis.signal) else 1.0
    ax.set_ylim(0, max(upper * 1.3, 1e-3))
    ax.set_ylabel("normalised TV")
    ax.legend(loc="upper right", fontsize=8)


def _alpha_panel(ax: Any, analysis: Analysis, cues: Any) -> None:
    """The alphas, with the inflection points, or with the cues of `cues` (a LatentPath) and their classes."""
    times = analysis.column_times()
    alphas = analysis.alphas
    if cues is not None:
        from ganterp_fast.engine.latent.classes import all_classes

        for t, cls in cues.schedule():
            ax.axvline(t, color="tab:purple", linewidth=0.8)
            ax.text(t, 1.0, f" {all_classes()[cls].name}", rotation=90, va="top", fontsize=7)
        ax.set_title("cues (alphas between them follow the signal)", loc="left", fontsize=9)
        u = cues.column_positions()  # the alphas the cues give: the fraction of the way from one cue to the next
        alphas = np.where(u >= cues.num_points - 1, 1.0, u - np.floor(u))
    else:
        for t in times[analysis.inflection_points]:
            ax.axvline(t, color="tab:red", linewidth=0.6, alpha=0.5)
    ax.plot(times, alphas, color="tab:green", linewidth=1.0)
    ax.set_ylabel("alpha")
    ax.set_ylim(-0.02, 1.02)


def _onset_panel(ax: Any, analysis: Analysis) -> None:
    onsets = analysis.onset_envelope
    onset_times = np.arange(len(onsets)) * analysis.onset_hop_length / analysis.sample_rate
    ax.plot(onset_times, onsets, color="tab:orange", linewidth=0.6)
    ax.set_ylabel("onset strength")
    ax.set_title("onset strength envelope (librosa; drives --pulse)", loc="left", fontsize=9)


def plot_live(live: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Draw the offline signal with the offline points and the live points of a `LiveAnalysis`:
    each live point at its time, with a line to when it became known."""
    image_format = plot_format(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError("--plot", "plot") from None

    analysis = live.offline
    fig, ax = plt.subplots(1, 1, figsize=(12, 3.6), constrained_layout=True)
    title = os.path.basename(analysis.source) if analysis.source else "audio"
    a = live.agreement()
    fig.suptitle(
        f"{title}: {len(live.points)} live points (level {live.level}, delay {live.delay_s:.2f} s), "
        f"{len(analysis.inflection_points)} offline; {a['matched']} matched within {a['tolerance_s']:g} s"
    )
    times = analysis.column_times()
    ax.plot(times, analysis.signal, color="tab:blue", linewidth=1.0, label="smoothed signal (offline)")
    points = analysis.inflection_points
    ax.scatter(times[points], analysis.signal[points], color="tab:red", zorder=3, s=18, label="offline points")
    upper = max(float(analysis.signal.max()) if len(analysis.signal) else 1.0, 1e-3)
    live_times = np.array([p.time_s for p in live.points])
    known = np.array([p.detected_at_s for p in live.points])
    height = np.full(len(live_times), upper * 1.15)
    ax.hlines(height, live_times, known, color="tab:green", linewidth=1.0)
    ax.scatter(live_times, height, marker="v", color="tab:green", zorder=3, s=22, label="live points (at their time)")
    ax.scatter(known, height, marker="|", color="tab:green", zorder=3, s=40, label="... known at")
    ax.set_ylim(0, upper * 1.3)
    ax.set_ylabel("normalised TV")
    ax.set_xlabel("time (s)")
    ax.set_xlim(0, max(analysis.duration_s, 1e-3))
    ax.legend(loc="lower right", fontsize=8, ncol=4)
    try:
        with atomic_output(path, overwrite=overwrite) as temporary:
            fig.savefig(temporary, dpi=110, format=image_format)
    finally:
        plt.close(fig)
