"""The written summary that opens a report, built from the facts by a template."""

from __future__ import annotations

from collections import Counter

from polymuse.recognition.models import RecognitionSection
from polymuse.report import BasicFacts, MusicFeatures, Separation, SourceInfo
from polymuse.semantic_report import SemanticSection


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def chord_name(label: str) -> str:
    """Harte `D:maj` / `B:min` / `N` to lead-sheet `D` / `Bm` / `N.C.`."""
    if label == "N":
        return "N.C."
    root, _, quality = label.partition(":")
    return root + ("m" if quality.startswith("min") else "")


def top_descriptors(semantic: SemanticSection | None, category: str, n: int = 2) -> list[str]:
    """Labels of the `n` most confident descriptors of a category, if any were scored."""
    if semantic is None:
        return []
    return [d.label for d in semantic.categories.get(category, [])[:n]]


def summarise(
    source: SourceInfo,
    facts: BasicFacts,
    features: MusicFeatures | None,
    semantic: SemanticSection | None = None,
    separation: Separation | None = None,
    recognition: RecognitionSection | None = None,
) -> str:
    """A few sentences stating only what the report contains."""
    parts = [
        f"{source.file_name} lasts {_clock(source.duration_s)} "
        f"({source.channels} channel{'s' if source.channels != 1 else ''}, "
        f"{source.sample_rate} Hz, {source.codec})."
    ]
    if facts.silent:
        parts.append("The audio is silent, so no musical features were extracted.")
        return " ".join(parts)
    f = features or MusicFeatures()
    music = []
    if f.key:
        music.append(f"in {f.key.label} (confidence {f.key.confidence:.2f})")
    if f.rhythm and f.rhythm.tempo_bpm:
        music.append(f"at about {f.rhythm.tempo_bpm:.0f} BPM")
        if f.rhythm.beats_per_bar:
            music.append(f"with {f.rhythm.beats_per_bar} beats per bar")
    if music:
        parts.append("It is " + ", ".join(music) + ".")
    if f.chords:
        weight = Counter()
        for seg in f.chords:
            if seg.label != "N":
                weight[chord_name(seg.label)] += seg.end - seg.start
        if weight:
            top = ", ".join(name for name, _ in weight.most_common(5))
            parts.append(f"The most-used chords are {top}.")
    if f.structure and len(f.structure) > 1:
        form = " ".join(s.label for s in f.structure)
        parts.append(f"Its form reads {form} ({len(f.structure)} sections).")
    if f.loudness and f.loudness.integrated_lufs is not None:
        text = f"Integrated loudness is {f.loudness.integrated_lufs:.1f} LUFS"
        if f.loudness.loudness_range_lu is not None:
            text += f", loudness range {f.loudness.loudness_range_lu:.1f} LU"
        if f.loudness.true_peak_dbtp is not None:
            text += f", true peak {f.loudness.true_peak_dbtp:.1f} dBTP"
        parts.append(text + ".")
    if facts.clipped_samples:
        parts.append(f"{facts.clipped_samples} samples are at or near full scale (clipping).")
    sound = [
        f"{category} {' / '.join(labels)}"
        for category in ("genre", "instruments", "mood")
        if (labels := top_descriptors(semantic, category))
    ]
    if sound:
        parts.append("It sounds like: " + "; ".join(sound) + ".")
    if recognition is not None and (found := recognition.recognition) is not None:
        hit = found.match if found.status == "match" else None
        parts.append(
            f"The catalogue recognises it as {hit.title} "
            f"(from {round(hit.reference_offset_s, 1) + 0.0:.1f} s, "
            f"confidence {hit.confidence:.2f}, decided by the {found.decided_by} lane"
            + (f" on the {recognition.decided_on} stem" if recognition.decided_on != "mix" else "")
            + ")."
            if hit
            else "It is not in the catalogue."
        )
    if separation:
        shares = sorted(
            (s for s in separation.stems if s.name != "instrumental"),
            key=lambda s: s.energy_share,
            reverse=True,
        )
        parts.append(
            "Stem energy ("
            + separation.backend
            + "): "
            + ", ".join(f"{s.name} {s.energy_share:.0%}" for s in shares)
            + "."
        )
    if f.errors:
        parts.append("Not available: " + ", ".join(sorted(f.errors)) + " (see Nodes).")
    return " ".join(parts)
