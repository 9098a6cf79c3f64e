"""Report figures drawn with matplotlib (Agg), returned as PNG bytes."""

from __future__ import annotations

import io

import librosa
import librosa.display
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from polymuse.melody_report import draw_melody  # noqa: E402
from polymuse.render.summary import chord_name  # noqa: E402
from polymuse.report import AnalysisReport  # noqa: E402

PLOT_SR = 11025
HOP = 256
WIDTH = 12


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def draw_figures(report: AnalysisReport, y: np.ndarray, sr: int) -> dict[str, bytes]:
    """Waveform with beats, spectrogram, chromagram with chords, structure and loudness plots."""
    y = (
        librosa.resample(y, orig_sr=sr, target_sr=PLOT_SR, res_type="soxr_qq")
        if sr != PLOT_SR
        else y
    )
    f = report.features
    figures = {"waveform": _waveform(y, report)}
    if report.facts.silent:
        return figures
    figures["spectrogram"] = _spectrogram(y)
    if (png := draw_melody(report)) is not None:
        figures["melody"] = png
    if f and f.chords:
        figures["chroma"] = _chroma(y, report)
    if f and f.structure:
        figures["structure"] = _structure(report)
    if f and f.loudness and f.loudness.short_term_times:
        figures["loudness"] = _loudness(report)
    return figures


def _waveform(y: np.ndarray, report: AnalysisReport) -> bytes:
    fig, ax = plt.subplots(figsize=(WIDTH, 2.6))
    librosa.display.waveshow(y, sr=PLOT_SR, ax=ax, color="#557", max_points=20000)
    r = report.features.rhythm if report.features else None
    if r and r.beats:
        ax.vlines(r.beats, -1, 1, color="#e90", lw=0.5, alpha=0.6, label="beats")
        ax.vlines(r.downbeats, -1, 1, color="#c22", lw=1.0, label="downbeats")
        ax.legend(loc="upper right", fontsize=8)
    ax.set(title="Waveform", xlabel="time (s)", ylim=(-1, 1))
    return _png(fig)


def _spectrogram(y: np.ndarray) -> bytes:
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    spec = librosa.amplitude_to_db(np.abs(librosa.stft(y, n_fft=1024, hop_length=HOP)), ref=np.max)
    img = librosa.display.specshow(
        spec, sr=PLOT_SR, hop_length=HOP, x_axis="time", y_axis="log", ax=ax, cmap="magma"
    )
    fig.colorbar(img, ax=ax, format="%+2.0f dB")
    ax.set(title="Spectrogram")
    return _png(fig)


def _chroma(y: np.ndarray, report: AnalysisReport) -> bytes:
    fig, (ax, bar) = plt.subplots(
        2, 1, figsize=(WIDTH, 3.6), sharex=True, gridspec_kw={"height_ratios": [4, 1]}
    )
    chroma = librosa.feature.chroma_cqt(y=y, sr=PLOT_SR, hop_length=HOP * 2)
    librosa.display.specshow(
        chroma, sr=PLOT_SR, hop_length=HOP * 2, x_axis="time", y_axis="chroma", ax=ax, cmap="Blues"
    )
    ax.set(title="Chromagram and chords", xlabel="")
    for seg in report.features.chords:
        bar.axvspan(seg.start, seg.end, color="#dde" if seg.label == "N" else "#9ac", ec="w")
        if seg.end - seg.start > 0.6:
            bar.text(
                (seg.start + seg.end) / 2,
                0.5,
                chord_name(seg.label),
                ha="center",
                va="center",
                fontsize=7,
            )
    bar.set(yticks=[], xlabel="time (s)")
    return _png(fig)


def _structure(report: AnalysisReport) -> bytes:
    fig, ax = plt.subplots(figsize=(WIDTH, 1.2))
    letters = sorted({s.label.rstrip("'") for s in report.features.structure})
    colours = plt.get_cmap("tab10")
    for seg in report.features.structure:
        ax.axvspan(
            seg.start,
            seg.end,
            color=colours(letters.index(seg.label.rstrip("'")) % 10),
            alpha=0.7,
            ec="w",
        )
        ax.text((seg.start + seg.end) / 2, 0.5, seg.label, ha="center", va="center")
    ax.set(yticks=[], xlim=(0, report.source.duration_s), xlabel="time (s)", title="Structure")
    return _png(fig)


def _loudness(report: AnalysisReport) -> bytes:
    lo = report.features.loudness
    fig, ax = plt.subplots(figsize=(WIDTH, 2.4))
    values = [np.nan if v is None else v for v in lo.short_term_lufs]
    ax.plot(lo.short_term_times, values, color="#357", label="short-term (3 s)")
    if lo.integrated_lufs is not None:
        ax.axhline(lo.integrated_lufs, color="#c22", ls="--", label="integrated")
    ax.set(title="Loudness", xlabel="time (s)", ylabel="LUFS")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)
