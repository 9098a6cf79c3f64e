"""Chunked overlap-add: run a fixed-length separator over audio of any length, streaming.

Chunks of `chunk` samples start every `step` samples. Each chunk's output is weighted by a
cross-fade window (linear ramps of `fade` samples; no fade-in on the first chunk, no fade-out on
the last) and the sum is divided by the sum of the weights, so the result at every sample is
a weighted mean of the chunks covering it: a model that returns its input gives the input back
exactly, whatever the chunk, step and fade. Output is emitted as soon as no later chunk can
touch it, so memory stays at about `chunk + batch_size * step` samples.

This is the scheme of Music-Source-Separation-Training's `demix` (`num_overlap` chunks per
chunk length, linear fades), made streaming.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from polymuse.errors import ParameterError

ProcessFn = Callable[[np.ndarray], np.ndarray]
"""(batch, channels, chunk) float32 -> (batch, stems, channels, chunk)."""


def fade_window(chunk: int, fade: int, *, first: bool, last: bool) -> np.ndarray:
    """Chunk weights: 1 in the middle, strictly positive linear ramps at the ends."""
    window = np.ones(chunk, np.float32)
    fade = min(fade, chunk // 2)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade + 2)[1:-1]
        if not first:
            window[:fade] = ramp
        if not last:
            window[-fade:] = ramp[::-1]
    return window


def overlap_add(
    process: ProcessFn,
    blocks: Iterable[np.ndarray],
    *,
    chunk: int,
    step: int,
    fade: int,
    batch_size: int = 1,
    pad_last: bool = True,
) -> Iterator[np.ndarray]:
    """Apply `process` chunk by chunk to a stream of (channels, n) blocks.

    Args:
        process: The model: (batch, channels, chunk) -> (batch, stems, channels, chunk).
        blocks: Audio blocks shaped (channels, n), any n, in order.
        chunk: Samples per model call.
        step: Samples between chunk starts, 1..chunk.
        fade: Length of the cross-fade ramps, samples.
        batch_size: Chunks per model call.
        pad_last: Zero-pad a short last chunk to `chunk` samples (for models that need one
            length); when False it runs at its own length.

    Yields:
        Finished output, (stems, channels, m) float32 blocks, in order; their lengths add up
        to the input length.

    Raises:
        ParameterError: Bad sizes, or blocks with changing channel counts.
    """
    if chunk <= 0 or not 0 < step <= chunk:
        raise ParameterError(f"need 0 < step <= chunk, got chunk={chunk}, step={step}")
    if fade < 0 or batch_size < 1:
        raise ParameterError(f"need fade >= 0 and batch_size >= 1, got {fade}, {batch_size}")
    pending: np.ndarray | None = None  # input from absolute sample `pending_start` on
    pending_start = 0
    total = 0  # input samples seen
    next_chunk = 0  # absolute start of the next chunk to queue
    queue: list[tuple[int, np.ndarray, bool]] = []  # (start, audio, last)
    acc: np.ndarray | None = None  # weighted output sum from absolute `acc_start` on
    weights = np.zeros(0, np.float32)
    acc_start = 0

    def run_queue() -> Iterator[np.ndarray]:
        nonlocal acc, weights, acc_start
        if not queue:
            return
        out = np.asarray(process(np.stack([q[1] for q in queue]).astype(np.float32)))
        if out.ndim != 4 or out.shape[0] != len(queue) or out.shape[2:] != queue[0][1].shape:
            raise ParameterError(
                f"separator returned shape {out.shape} for input "
                f"{(len(queue), *queue[0][1].shape)}; expected (batch, stems, channels, chunk)"
            )
        size = queue[-1][1].shape[-1]
        end = queue[-1][0] + size
        if acc is None:
            acc = np.zeros((*out.shape[1:3], 0), np.float32)
        grow = end - (acc_start + acc.shape[-1])
        if grow > 0:
            acc = np.concatenate([acc, np.zeros((*acc.shape[:2], grow), np.float32)], axis=-1)
            weights = np.concatenate([weights, np.zeros(grow, np.float32)])
        for (start, _, last), y in zip(queue, out, strict=True):
            w = fade_window(size, fade, first=start == 0, last=last)
            lo = start - acc_start
            acc[..., lo : lo + size] += y * w if fade else y
            weights[lo : lo + size] += w
        done = (queue[-1][0] + step if not queue[-1][2] else min(end, total)) - acc_start
        queue.clear()
        if done > 0:
            yield acc[..., :done] / weights[:done]
            acc, weights, acc_start = acc[..., done:], weights[done:], acc_start + done

    for block in blocks:
        block = np.asarray(block, np.float32)
        if block.ndim != 2:
            raise ParameterError(f"blocks must be (channels, samples), got shape {block.shape}")
        if pending is None:
            pending = np.zeros((block.shape[0], 0), np.float32)
        if block.shape[0] != pending.shape[0]:
            raise ParameterError(
                f"block has {block.shape[0]} channels, earlier ones {pending.shape[0]}"
            )
        pending = np.concatenate([pending, block], axis=1)
        total += block.shape[1]
        # A full chunk is queued only once input goes past it: then it is surely not the last.
        while next_chunk + chunk < total:
            lo = next_chunk - pending_start
            queue.append((next_chunk, pending[:, lo : lo + chunk], False))
            next_chunk += step
            if len(queue) == batch_size:
                yield from run_queue()
        drop = next_chunk - pending_start
        if drop > 0:
            pending, pending_start = pending[:, drop:], next_chunk
    if pending is None or total == 0:
        return
    while True:
        lo = next_chunk - pending_start
        piece = pending[:, lo : lo + chunk]
        last = next_chunk + chunk >= total
        if piece.shape[1] < chunk:
            if pad_last:
                piece = np.pad(piece, ((0, 0), (0, chunk - piece.shape[1])))
            else:  # a shorter chunk cannot share a batch with full ones
                yield from run_queue()
        queue.append((next_chunk, piece, last))
        if last:
            break
        next_chunk += step
        if len(queue) == batch_size:
            yield from run_queue()
    yield from run_queue()
