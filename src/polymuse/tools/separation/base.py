"""What all separators share: input checks, channel and rate adaptation, chunked streaming."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import soxr

from polymuse.errors import ParameterError
from polymuse.report import ModelInfo
from polymuse.tools.separation import SAMPLE_RATE, STEMS
from polymuse.tools.separation.chunking import overlap_add

BLOCK = 1 << 18  # samples per block when a whole array is streamed


def check_audio(audio: np.ndarray) -> np.ndarray:
    """Validate (channels, samples) audio up front; return it as float32."""
    y = np.asarray(audio)
    if y.ndim != 2:
        raise ParameterError(f"audio must be (channels, samples), got shape {y.shape}")
    if not 1 <= y.shape[0] <= 2:
        raise ParameterError(f"audio must have 1 or 2 channels, got {y.shape[0]}")
    if not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(f"audio must be floating point, got {y.dtype}")
    if not np.isfinite(y).all():
        raise ParameterError("audio holds NaN or infinite samples")
    return y.astype(np.float32, copy=False)


def to_stereo_or_mono(block: np.ndarray) -> np.ndarray:
    """Fold more than two channels into two (even channels left, odd right)."""
    if block.shape[0] <= 2:
        return block
    return np.stack([block[0::2].mean(axis=0), block[1::2].mean(axis=0)])


class _Fifo:
    """A first-in first-out buffer of (channels, n) audio."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self.size = 0

    def push(self, block: np.ndarray) -> None:
        self._parts.append(block)
        self.size += block.shape[-1]

    def pop(self, n: int) -> np.ndarray:
        joined = np.concatenate(self._parts, axis=-1) if len(self._parts) > 1 else self._parts[0]
        head, rest = joined[..., :n], joined[..., n:]
        self._parts = [rest] if rest.shape[-1] else []
        self.size = rest.shape[-1]
        return head


class ChunkedSeparator:
    """A separator that runs `_process` over fixed-length chunks with overlap-add.

    Subclasses set `name`, `model`, `outputs` (the stems `_process` returns, in order), the
    chunking, and implement `_process`; `model_rate` and `model_channels` say what the model
    wants, and the base class resamples and maps channels around it.
    """

    name = "chunked"
    model = ModelInfo(name="chunked")
    outputs: tuple[str, ...] = STEMS
    model_rate = SAMPLE_RATE
    model_channels: int | None = None  # 1, 2, or None for any
    chunk = SAMPLE_RATE * 10
    step = SAMPLE_RATE * 5
    fade = SAMPLE_RATE
    batch_size = 1
    pad_last = True  # False when `_process` takes any length

    def __init__(self) -> None:
        self.notes: list[str] = []

    def _process(self, batch: np.ndarray) -> np.ndarray:
        """(batch, channels, chunk) at `model_rate` -> (batch, len(outputs), channels, chunk)."""
        raise NotImplementedError

    @classmethod
    def identity(cls, settings) -> str:
        """The cache key of the separator `settings` configure (cheap: loads no weights)."""
        return cls.from_settings(settings).cache_key()

    def cache_key(self) -> str:
        m = self.model
        return "|".join(
            map(
                str,
                (self.name, m.name, m.version, self.model_rate, self.chunk, self.step, self.fade),
            )
        )

    def produced_by(self, stem: str) -> str:
        return self.name

    def close(self) -> None:
        """Nothing to free by default."""

    def separate(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        y = check_audio(audio)
        parts: dict[str, list[np.ndarray]] = {s: [] for s in STEMS}
        blocks = (y[:, i : i + BLOCK] for i in range(0, y.shape[1], BLOCK))
        for stems in self.stream(blocks):
            for s in STEMS:
                parts[s].append(stems[s])
        empty = np.zeros((y.shape[0], 0), np.float32)
        return {s: np.concatenate(p, axis=1) if p else empty for s, p in parts.items()}

    def stream(self, blocks: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        self.notes = []
        return self._finish(self._pairs(blocks))

    def _finish(
        self, pairs: Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]
    ) -> Iterator[dict[str, np.ndarray]]:
        """Turn (mix, model outputs) blocks into the four stems; extra outputs join `other`."""
        for _mix, out in pairs:
            stems = {s: out[s] for s in STEMS if s in out}
            extra = [y for s, y in out.items() if s not in STEMS]
            if extra and "other" in stems:
                stems["other"] = stems["other"] + sum(extra)
            missing = [s for s in STEMS if s not in stems]
            if missing:
                raise ParameterError(f"{self.name} gives no {', '.join(missing)} stem")
            yield stems

    def _pairs(
        self, blocks: Iterable[np.ndarray]
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Stream the model over the input; yield each finished (mix, outputs) block at 44.1 kHz."""
        mix = _Fifo()
        state = {"channels": 0, "total": 0}
        rate_in = rate_out = None
        if self.model_rate != SAMPLE_RATE:
            rate_in, rate_out = (SAMPLE_RATE, self.model_rate), (self.model_rate, SAMPLE_RATE)

        def feed() -> Iterator[np.ndarray]:
            resampler = None
            for block in blocks:
                block = np.asarray(block)
                block = check_audio(to_stereo_or_mono(block) if block.ndim == 2 else block)
                if not state["channels"]:
                    state["channels"] = block.shape[0]
                    if rate_in:
                        resampler = soxr.ResampleStream(*rate_in, block.shape[0], dtype="float32")
                mix.push(block)
                state["total"] += block.shape[1]
                if resampler is None:
                    yield block
                else:
                    yield resampler.resample_chunk(np.ascontiguousarray(block.T)).T
            if resampler is not None:
                tail = np.zeros((0, state["channels"]), np.float32)
                yield resampler.resample_chunk(tail, last=True).T

        step = max(1, min(self.step, self.chunk))
        out = overlap_add(
            self._adapt_channels,
            feed(),
            chunk=self.chunk,
            step=step,
            fade=self.fade,
            batch_size=self.batch_size,
            pad_last=self.pad_last,
        )
        if rate_out:
            out = self._resample_back(out, rate_out, state)
        emitted = 0
        for y in out:
            n = min(y.shape[-1], state["total"] - emitted)
            if n <= 0:
                continue
            emitted += n
            yield mix.pop(n), dict(zip(self.outputs, y[..., :n], strict=True))
        if emitted < state["total"]:  # resampling can end a few samples short
            short = state["total"] - emitted
            y = np.zeros((len(self.outputs), state["channels"], short), np.float32)
            yield mix.pop(short), dict(zip(self.outputs, y, strict=True))

    def _resample_back(
        self, out: Iterator[np.ndarray], rates: tuple[int, int], state: dict
    ) -> Iterator[np.ndarray]:
        resamplers: list[soxr.ResampleStream] = []
        for y in out:
            if not resamplers:
                resamplers = [
                    soxr.ResampleStream(*rates, y.shape[1], dtype="float32") for _ in range(len(y))
                ]
            yield np.stack(
                [
                    r.resample_chunk(np.ascontiguousarray(s.T)).T
                    for r, s in zip(resamplers, y, strict=True)
                ]
            )
        if resamplers:
            tail = np.zeros((0, state["channels"]), np.float32)
            yield np.stack([r.resample_chunk(tail, last=True).T for r in resamplers])

    def _adapt_channels(self, batch: np.ndarray) -> np.ndarray:
        """Give the model the channel count it wants and map its output back."""
        channels = batch.shape[1]
        want = self.model_channels
        if want is None or want == channels:
            return self._process(batch)
        if want == 2 and channels == 1:
            out = self._process(np.repeat(batch, 2, axis=1))
            return out.mean(axis=2, keepdims=True)
        if want == 1 and channels == 2:
            b, c, n = batch.shape
            out = self._process(batch.reshape(b * c, 1, n))
            return out.reshape(b, c, -1, n).transpose(0, 2, 1, 3)
        raise ParameterError(f"{self.name} needs {want}-channel audio, got {channels}")
