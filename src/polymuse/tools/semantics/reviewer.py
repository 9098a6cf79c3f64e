"""The semantic reviewer as a library: audio in, `SemanticSection` out (no LangGraph here).

`SemanticReviewer.from_settings` picks the backends: the audio encoder (`audio_encoder`),
the tagger whose outputs give descriptor evidence (the encoder itself when it has tags or a
joint text tower, else musicnn), the instrument-family head when the tagger is the one it
was trained on (musicnn), and the text encoder (`text_encoder`) that maps descriptors onto
tag names. Encodings are cached by content hash and encoder, so re-running with another
calibration or bank recomputes only the cheap scoring.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from polymuse.errors import ModelUnavailableError, PolymuseError
from polymuse.schema import ModelInfo
from polymuse.semantic_report import SemanticSection, StemSemantics
from polymuse.tools.encoders.audio import AudioEncoder, AudioEncoding, build_audio_encoder
from polymuse.tools.semantics.bank import DescriptorBank, load_bank
from polymuse.tools.semantics.features import texture_features
from polymuse.tools.semantics.instrument_head import SAMPLE_RATE as HEAD_RATE
from polymuse.tools.semantics.instrument_head import InstrumentHead, window_segments
from polymuse.tools.semantics.scoring import (
    Calibration,
    DescriptorScorer,
    TextIndex,
    build_text_index,
    rank_categories,
)

log = logging.getLogger(__name__)

MAX_WINDOWS = 16
"""Windows analysed per recording: 16 x 3 s spread evenly over the song (every window of a
song under 48 s). Coverage traded for speed: each window costs two musicnn passes, about
0.1-0.2 s on this 2-core machine; `semantic_max_windows` raises it."""
MAX_STEM_WINDOWS = 8
TOP_PER_CATEGORY = 5
TOP_TAGS = 10
STEM_PRESENT_DBFS = -50.0
FEATURE_RATE = HEAD_RATE
"""Rate of the audio for the texture features and the instrument head's timbre statistics."""


class LoadAudio(Protocol):
    """Returns mono float audio at `sample_rate`: the mix for `path=None`, else that file."""

    def __call__(self, path: str | None, sample_rate: int) -> np.ndarray: ...


@dataclass
class Hints:
    """Facts other nodes found that the texture features reuse instead of estimating."""

    tempo_bpm: float | None = None
    key_mode: str | None = None
    loudness_lufs: float | None = None


class SemanticReviewer:
    """Loaded backends and scorer; `review` analyses one recording (and its stems)."""

    def __init__(
        self,
        *,
        bank: DescriptorBank,
        encoder: AudioEncoder,
        tagger: AudioEncoder,
        scorer: DescriptorScorer,
        text_encoder: ModelInfo | None,
        cache_dir: Path | None,
        max_windows: int = MAX_WINDOWS,
        notes: list[str] | None = None,
        index: TextIndex | None = None,
        text_encode: Callable[[list[str]], np.ndarray] | None = None,
        head: InstrumentHead | None = None,
    ) -> None:
        self.bank = bank
        self.index = index
        """Text embeddings of the descriptors and tag names (None without a text encoder)."""
        self.text_encode = text_encode
        """Embeds texts with the configured text encoder, loading it on first use."""
        self.encoder = encoder
        self.tagger = tagger
        self.scorer = scorer
        self.text_encoder = text_encoder
        self.cache_dir = cache_dir
        self.max_windows = max_windows
        self.notes = list(notes or [])
        self.head = head
        """The instrument-family head, when the tagger is the encoder it was trained on."""

    @classmethod
    def from_settings(
        cls, settings: object, *, calibration: Calibration | None = None
    ) -> SemanticReviewer:
        """Build (or reuse, per process) the reviewer the settings describe.

        Raises:
            UserError: An unknown backend name or a missing model folder.
            ModelUnavailableError: A backend's package or weights are missing.
        """
        audio_spec = str(getattr(settings, "audio_encoder", None) or "musicnn")
        text_spec = str(getattr(settings, "text_encoder", None) or "minilm")
        resolve = getattr(settings, "resolved_device", None)
        device = resolve() if callable(resolve) else "cpu"
        home = getattr(settings, "cache_dir", None)
        cache_dir = Path(home) / "semantic" if home is not None else None
        max_windows = int(getattr(settings, "semantic_max_windows", None) or MAX_WINDOWS)
        key = (
            audio_spec,
            text_spec,
            device,
            str(cache_dir),
            max_windows,
            _settings_dirs(settings),
            id(calibration) if calibration is not None else None,
        )
        with _LOCK:
            if key not in _REVIEWERS:
                _REVIEWERS[key] = cls.build(
                    audio_spec=audio_spec,
                    text_spec=text_spec,
                    settings=settings,
                    device=device,
                    cache_dir=cache_dir,
                    max_windows=max_windows,
                    calibration=calibration,
                )
            return _REVIEWERS[key]

    @classmethod
    def build(
        cls,
        *,
        audio_spec: str = "musicnn",
        text_spec: str = "minilm",
        settings: object = None,
        device: str = "cpu",
        cache_dir: Path | None = None,
        max_windows: int = MAX_WINDOWS,
        calibration: Calibration | None = None,
        bank: DescriptorBank | None = None,
    ) -> SemanticReviewer:
        """Load the backends and prepare the scorer (see the module docstring)."""
        from polymuse.tools.encoders.text import build_text_encoder, text_encoder_card

        bank = bank or load_bank()
        encoder = build_audio_encoder(audio_spec, settings=settings, device=device)
        tagger = (
            encoder
            if encoder.tags or encoder.joint_text
            else build_audio_encoder("musicnn", device=device)
        )
        notes: list[str] = []
        index = None
        text_ref = None

        def encode(texts: list[str]) -> np.ndarray:
            return build_text_encoder(text_spec, settings=settings, device=device).encode(texts)

        if tagger.tags:
            try:
                index = build_text_index(
                    bank,
                    tagger.tags,
                    encoder_name=text_spec.replace(":", "_"),
                    encode=encode,
                    cache_dir=cache_dir,
                )
                text_ref = ModelInfo(**text_encoder_card(text_spec).model_dump())
            except PolymuseError as exc:
                notes.append(f"text encoder unavailable, no borrowed-tag evidence: {exc}")
        head = None
        try:
            head = InstrumentHead.load()
        except ModelUnavailableError as exc:
            notes.append(f"no instrument head: {exc}")
        if head is not None and head.encoder != tagger.name:
            head = None
        joint = None
        if tagger.joint_text:
            joint_index = build_text_index(
                bank,
                (),
                encoder_name=f"joint-{tagger.name}",
                encode=tagger.encode_text,
                cache_dir=cache_dir,
            )
            joint = joint_index.descriptor_vectors
        scorer = DescriptorScorer(
            bank,
            tags=tagger.tags,
            tag_priors=tagger.tag_priors,
            index=index,
            joint_vectors=joint,
            calibration=calibration,
        )
        return cls(
            bank=bank,
            encoder=encoder,
            tagger=tagger,
            scorer=scorer,
            text_encoder=text_ref,
            cache_dir=cache_dir,
            max_windows=max_windows,
            notes=notes,
            index=index,
            text_encode=encode,
            head=head,
        )

    def encode(
        self,
        encoder: AudioEncoder,
        waveform: np.ndarray,
        *,
        sample_rate: int,
        max_windows: int,
        content_hash: str | None = None,
    ) -> tuple[AudioEncoding, Path | None]:
        """Encode, or read the encoding cached for this content hash, encoder and window count."""
        path = None
        if self.cache_dir is not None and content_hash:
            name = f"{content_hash[:24]}-{encoder.name}-w{max_windows}.npz"
            path = self.cache_dir / "encodings" / name
            cached = _read_encoding(path, encoder.name)
            if cached is not None:
                return cached, path
        encoding = encoder.encode(waveform, sample_rate=sample_rate, max_windows=max_windows)
        if path is not None:
            _write_encoding(path, encoding)
        return encoding, path

    def review(
        self,
        load: LoadAudio,
        *,
        content_hash: str | None = None,
        hints: Hints | None = None,
        stems: Mapping[str, str] | None = None,
    ) -> SemanticSection:
        """Review one recording; `load(path_or_none, rate)` returns mono audio at `rate`.

        Args:
            load: Returns the mix (first argument None) or a stem file, mono, at a rate.
            content_hash: The mix's content hash, the key of the encoding cache.
            hints: Tempo, key and loudness found by the features node.
            stems: Stem name -> audio file, when a separator ran.
        """
        started = time.perf_counter()
        hints = hints or Hints()
        mix = load(None, self.encoder.sample_rate)
        encoding, path = self.encode(
            self.encoder,
            mix,
            sample_rate=self.encoder.sample_rate,
            max_windows=self.max_windows,
            content_hash=content_hash,
        )
        tag_encoding = encoding
        if self.tagger is not self.encoder:
            tagger_audio = load(None, self.tagger.sample_rate)
            tag_encoding, _ = self.encode(
                self.tagger,
                tagger_audio,
                sample_rate=self.tagger.sample_rate,
                max_windows=self.max_windows,
                content_hash=content_hash,
            )
        feature_audio = load(None, FEATURE_RATE)
        features = texture_features(
            feature_audio,
            sample_rate=FEATURE_RATE,
            tempo_bpm=hints.tempo_bpm,
            key_mode=hints.key_mode,
            loudness_lufs=hints.loudness_lufs,
        )
        pooled = _pooled(tag_encoding)
        scores = self.scorer.score(
            tag_probabilities=pooled,
            features=features,
            audio_embedding=tag_encoding.embedding if self.tagger.joint_text else None,
            head_probabilities=self._head(tag_encoding, feature_audio),
        )
        if path is not None:
            _write_encoding(
                path,
                encoding,
                descriptor_ids=np.array([s.id for s in scores], dtype=str),
                descriptor_confidences=np.array([s.confidence for s in scores], dtype=np.float32),
            )
        section = SemanticSection(
            encoder=ModelInfo(**self.encoder.model_info.model_dump()),
            tagger=None
            if self.tagger is self.encoder
            else ModelInfo(**self.tagger.model_info.model_dump()),
            text_encoder=self.text_encoder,
            bank_version=self.bank.version,
            bank_hash=self.bank.digest,
            calibration=self.scorer.calibration.name,
            windows=len(encoding.window_times),
            window_seconds=round(encoding.window_seconds, 3),
            features={k: None if v is None else round(v, 4) for k, v in features.items()},
            categories=rank_categories(scores, top=TOP_PER_CATEGORY),
            scores={s.id: round(s.confidence, 4) for s in scores},
            top_tags=_top_tags(tag_encoding, pooled),
            stems=[self._review_stem(name, file, load) for name, file in (stems or {}).items()],
            embeddings_path=str(path) if path is not None else None,
            notes=self.notes,
        )
        section.seconds = round(time.perf_counter() - started, 3)
        return section

    def _review_stem(self, name: str, file: str, load: LoadAudio) -> StemSemantics:
        """Score the descriptors the bank marks for this stem ('other' for unknown stems)."""
        try:
            y = load(file, self.tagger.sample_rate)
            rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if len(y) else 0.0
            level = 20 * np.log10(rms) if rms > 0 else None
            present = level is not None and level > STEM_PRESENT_DBFS
            if not present:
                return StemSemantics(stem=name, present=False, rms_dbfs=level)
            encoding = self.tagger.encode(
                y, sample_rate=self.tagger.sample_rate, max_windows=MAX_STEM_WINDOWS
            )
            y16 = load(file, FEATURE_RATE)
            features = texture_features(y16, sample_rate=FEATURE_RATE)
            kind = name if name in ("vocals", "drums", "bass") else "other"
            chosen = [d for d in self.bank.descriptors if kind in d.stems]
            scores = self.scorer.score(
                tag_probabilities=_pooled(encoding),
                features=features,
                audio_embedding=encoding.embedding if self.tagger.joint_text else None,
                head_probabilities=self._head(encoding, y16),
                descriptors=chosen,
            )
            top = sorted(scores, key=lambda s: -s.confidence)[:TOP_PER_CATEGORY]
            return StemSemantics(
                stem=name,
                present=True,
                rms_dbfs=round(level, 2),
                windows=len(encoding.window_times),
                features={k: None if v is None else round(v, 4) for k, v in features.items()},
                descriptors=top,
            )
        except Exception as exc:  # one bad stem must not lose the others or the mix
            log.debug("stem %s failed", name, exc_info=True)
            reason = str(exc) if isinstance(exc, PolymuseError) else f"{type(exc).__name__}: {exc}"
            return StemSemantics(stem=name, present=False, error=reason)

    def _head(self, encoding: AudioEncoding, y16: np.ndarray) -> dict[str, float] | None:
        """The instrument head's class probabilities over the encoding's windows."""
        if self.head is None or encoding.encoder != self.head.encoder:
            return None
        segments = window_segments(
            y16, encoding.window_times, encoding.window_seconds, sample_rate=FEATURE_RATE
        )
        return self.head.predict(encoding.window_embeddings, segments)


_REVIEWERS: dict[tuple, SemanticReviewer] = {}
_LOCK = threading.Lock()


def _settings_dirs(settings: object) -> tuple:
    names = ("clap_dir", "clamp3_dir", "mert_dir", "muq_dir", "text_encoder_dir")
    return tuple(str(getattr(settings, n, None)) for n in names)


def _pooled(encoding: AudioEncoding) -> np.ndarray | None:
    if encoding.tag_probabilities is None or not len(encoding.tags):
        return None
    return encoding.tag_probabilities.mean(axis=0)


def _top_tags(encoding: AudioEncoding, pooled: np.ndarray | None) -> dict[str, float]:
    if pooled is None:
        return {}
    order = np.argsort(-pooled)[:TOP_TAGS]
    return {encoding.tags[i]: round(float(pooled[i]), 4) for i in order}


def _read_encoding(path: Path, encoder: str) -> AudioEncoding | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            if str(data["encoder"]) != encoder:
                return None
            probabilities = data["tag_probabilities"]
            return AudioEncoding(
                encoder=encoder,
                window_times=data["window_times"],
                window_embeddings=data["window_embeddings"],
                embedding=data["embedding"],
                tags=tuple(str(t) for t in data["tags"]),
                tag_probabilities=probabilities if probabilities.size else None,
                window_seconds=float(data["window_seconds"]),
            )
    except (OSError, ValueError, KeyError):
        log.warning("encoding cache %s is unreadable; recomputing", path)
        return None


def _write_encoding(path: Path, encoding: AudioEncoding, **extra: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    probabilities = (
        encoding.tag_probabilities
        if encoding.tag_probabilities is not None
        else np.zeros((0, 0), dtype=np.float32)
    )
    np.savez(
        tmp,
        encoder=np.array(encoding.encoder),
        window_times=encoding.window_times,
        window_embeddings=encoding.window_embeddings,
        embedding=encoding.embedding,
        tags=np.array(encoding.tags, dtype=str),
        tag_probabilities=probabilities,
        window_seconds=np.array(encoding.window_seconds),
        **extra,
    )
    tmp.replace(path)
