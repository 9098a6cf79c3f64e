"""What the neural backends share: device choice, FP16 autocast, out-of-memory fallbacks, and
filling the stems a model does not make (a vocals-only model) with `dsp` on the remainder."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import numpy as np
import torch

from polymuse.errors import ModelUnavailableError
from polymuse.tools.separation import STEMS
from polymuse.tools.separation.base import ChunkedSeparator, _Fifo
from polymuse.tools.separation.chunking import overlap_add

log = logging.getLogger(__name__)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is a CUDA (or other accelerator) out-of-memory error."""
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_accelerator_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class NeuralSeparator(ChunkedSeparator):
    """A torch model run chunk by chunk on `device`, falling back gracefully.

    Subclasses set `network` (a `torch.nn.Module` taking (batch, channels, samples) and
    returning (batch, stems, channels, samples)), `outputs`, the chunking and `use_fp16`.
    Stems of `STEMS` the model does not produce are made by `dsp` from the mix minus the
    model's stems (e.g. drums, bass and other from the instrumental of a vocals model).
    """

    network: torch.nn.Module
    use_fp16 = False
    min_chunk = 4096  # smallest chunk (samples) tried after running out of GPU memory

    def __init__(self, *, device: str = "cpu") -> None:
        super().__init__()
        self.device = device
        self._dsp: ChunkedSeparator | None = None

    def _move(self, device: str) -> None:
        self.network.to(device)
        self.device = device

    def close(self) -> None:
        """Move the model off the GPU and release cached GPU memory."""
        if getattr(self, "network", None) is not None and self.device != "cpu":
            self._move("cpu")
        free_accelerator_memory()

    def produced_by(self, stem: str) -> str:
        return self.name if stem in self.outputs else f"dsp (on the mix minus {self.name} stems)"

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model on one batch, (batch, channels, n) -> (batch, stems, channels, n)."""
        raise NotImplementedError

    def _run(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device)
        autocast = self.use_fp16 and self.device.startswith("cuda")
        with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=autocast):
            y = self._forward(x)
        return y.float().cpu().numpy()

    def _process(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self._run(batch)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        free_accelerator_memory()
        chunk = batch.shape[-1] // 2
        while chunk >= self.min_chunk:
            try:
                out = np.stack([self._smaller_chunks(item, chunk) for item in batch])
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                free_accelerator_memory()
                chunk //= 2
                continue
            self._note(
                f"{self.name}: out of memory on {self.device}; ran {chunk / self.model_rate:.1f} s "
                f"chunks instead of {batch.shape[-1] / self.model_rate:.1f} s"
            )
            return out
        if self.device == "cpu":
            raise ModelUnavailableError(f"{self.name}: out of memory on the CPU too")
        self._note(
            f"{self.name}: out of memory on {self.device} even with small chunks; fell back to CPU"
        )
        self._move("cpu")
        free_accelerator_memory()
        return self._run(batch)

    def _smaller_chunks(self, item: np.ndarray, chunk: int) -> np.ndarray:
        """One chunk of the stream, run as overlapping sub-chunks of `chunk` samples."""
        parts = overlap_add(
            lambda b: self._run(b), [item], chunk=chunk, step=chunk // 2, fade=chunk // 10
        )
        return np.concatenate(list(parts), axis=-1)

    def _note(self, message: str) -> None:
        if message not in self.notes:
            log.warning("%s", message)
            self.notes.append(message)

    def _finish(
        self, pairs: Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]
    ) -> Iterator[dict[str, np.ndarray]]:
        have = [s for s in STEMS if s in self.outputs]
        if "other" in have and not {"drums", "bass"} <= set(have):
            # A vocals + "other" model (MSST's naming): its "other" is the whole accompaniment.
            have.remove("other")
        missing = [s for s in STEMS if s not in have]
        if not missing:
            yield from super()._finish(pairs)
            return
        from polymuse.tools.separation.dsp import DspSeparator

        self._dsp = self._dsp or DspSeparator()
        self._note(
            f"{', '.join(missing)}: by dsp from the mix minus {self.name}'s {', '.join(have)}"
        )
        fifo = {s: _Fifo() for s in have}

        def residuals() -> Iterator[np.ndarray]:
            for mix, out in pairs:
                for s in have:
                    fifo[s].push(out[s])
                yield mix - sum((out[s] for s in have), np.zeros_like(mix))

        for found in self._dsp.stream(residuals()):
            n = found["other"].shape[-1]
            stems = {s: fifo[s].pop(n) for s in have}
            leftover = sum(found.values())
            for s in missing:
                if s != "other":
                    stems[s] = found[s]
                    leftover = leftover - found[s]
            stems["other"] = stems.get("other", 0) + leftover
            yield {s: stems[s] for s in STEMS}
