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

    times = analysis.column_times()
    onsets = analysis.onset_envelope
    rows = 4 if onsets is not None else 3
    fig, axes = plt.subplots(rows, 1, figsize=(12, 2.7 * rows), sharex=True, constrained_layout=True)
    ax_spec, ax_signal, ax_alpha = axes[:3]
    title = os.path.basename(analysis.source) if analysis.source else "audio"
    fig.suptitle(
        f"{title}: {analysis.duration_s:.1f} s at {analysis.sample_rate} Hz, "
        f"{len(analysis.inflection_points)} inflection points"
    )

    image = analysis.plot_spectrogram
    if image is not None:
        low, high = np.percentile(image, [5, 99.5])
        ax_spec.imshow(
            image,
            origin="lower",
            aspect="auto",
            extent=(0, analysis.duration_s, 0, analysis.sample_rate / 2 / 1000),
            vmin=low,
            vmax=high,
            cmap="magma",
            interpolation="nearest",
        )
    ax_spec.set_ylabel("frequency (kHz)")
    ax_spec.set_title("spectrogram (dB)", loc="left", fontsize=9)

    tv_times = times[1:] if len(times) > 1 else times
    ax_signal.plot(tv_times[: len(analysis.tv)], analysis.tv, color="0.75", linewidth=0.5, label="TV distance")
    ax_signal.plot(times, analysis.signal, color="tab:blue", linewidth=1.0, label="smoothed signal")
    points = analysis.inflection_points
    ax_signal.scatter(
        times[points], analysis.signal[points], color="tab:red", zorder=3, s=18, label="inflection points"
    )
    if analysis.unsnapped_points is not None:
        before = analysis.unsnapped_points
        ax_signal.scatter(
            times[before],
            analysis.signal[before],
            facecolors="none",
            edgecolors="0.4",
            zorder=3,
            s=22,
            label="before snapping to beats",
        )
    if analysis.beat_times is not None:
        ax_signal.vlines(
            analysis.beat_times,
            0,
            1,
            transform=ax_signal.get_xaxis_transform(),
            color="tab:orange",
            linewidth=0.5,
            alpha=0.6,
            label="beats",
        )
    cues = getattr(latent, "options", None) is not None and latent.options.cues is not None
    if cues:
        from ganterp_fast.engine.latent.classes import all_classes

        for t, cls in latent.schedule():
            ax_alpha.axvline(t, color="tab:purple", linewidth=0.8)
            ax_alpha.text(t, 1.0, f" {all_classes()[cls].name}", rotation=90, va="top", fontsize=7)
        ax_alpha.set_title("cues (alphas between them follow the signal)", loc="left", fontsize=9)
    else:
        for t in times[points]:
            ax_alpha.axvline(t, color="tab:red", linewidth=0.6, alpha=0.5)
    upper = float(analysis.signal.max()) if len(analysis.signal) else 1.0
    ax_signal.set_ylim(0, max(upper * 1.3, 1e-3))
    ax_signal.set_ylabel("normalised TV")
    ax_signal.legend(loc="upper right", fontsize=8)

    alphas = analysis.alphas
    if cues:  # the alphas the cues give: the fraction of the way from one cue to the next
        u = latent.column_positions()
        alphas = np.where(u >= latent.num_points - 1, 1.0, u - np.floor(u))
    ax_alpha.plot(times, alphas, color="tab:green", linewidth=1.0)
    ax_alpha.set_ylabel("alpha")
    ax_alpha.set_ylim(-0.02, 1.02)
    if onsets is not None:
        ax_onset = axes[3]
        onset_times = np.arange(len(onsets)) * analysis.onset_hop_length / analysis.sample_rate
        ax_onset.plot(onset_times, onsets, color="tab:orange", linewidth=0.6)
        ax_onset.set_ylabel("onset strength")
        ax_onset.set_title("onset strength envelope (librosa; drives --pulse)", loc="left", fontsize=9)
    axes[-1].set_xlabel("time (s)")
    ax_alpha.set_xlim(0, max(analysis.duration_s, 1e-3))

    try:
        with atomic_output(path, overwrite=overwrite) as temporary:
            fig.savefig(temporary, dpi=110, format=image_format)
    finally:
        plt.close(fig)
