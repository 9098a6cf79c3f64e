"""`dsp`: the offline default separator, signal processing only (no weights).

Per chunk of audio (30 s, cross-faded over 4 s with the next), on the STFT of the channel mix:

1. Harmonic vs the rest: median-filtering HPSS (FitzGerald 2010) on a long window (4096
   samples): a median along time keeps sustained partials, a median along frequency keeps
   broadband onsets; the fine frequency grid keeps low partials (bass) harmonic.
2. Drums: the same HPSS on a short window (1024) applied to what stage 1 did not call
   harmonic (Driedger et al. 2014's cascade): its percussive part, with sharp onsets, is the
   drum stem; what is neither harmonic nor percussive (noise, breath) stays for `other`.
3. Bass: what the vocal comb (4) leaves of the harmonic part, below a soft low-pass
   (8th-order Butterworth shape, 200 Hz).
4. Vocals: the predominant melody of the harmonic part (`predominant`: spectral peaks,
   Klapuri-weighted harmonic summation with iterative cancellation giving several pitch
   candidates per frame, a Viterbi path in 150-1100 Hz that favours salient, high and
   continuous candidates, a voicing threshold) selects a comb of triangular teeth at its
   partials up to 8 kHz, each 2 bins (the Hann main lobe) plus `comb_cents` per partial wide.
5. Repetition (`repetition`, REPET-SIM, Rafii & Pardo 2012): on the accompaniment estimate
   (the harmonic part below 8 kHz outside the comb of 4), each frame's repeating part is the
   median of its `neighbours` most similar frames (cosine similarity, at least 1 s away from
   it and from each other). The harmonic part minus that model is what does not repeat; the
   melody is tracked again on it (4), and the vocals are the new comb on it. So a loop, riff
   or repeated chord loses its partials under the voice's comb, and cannot be the lead line
   any more when it repeats and the voice does not.
6. Other: everything left.

The bass, vocal and other magnitude estimates become soft masks (magnitude ratios,
`mask_power` 1) on the complex harmonic STFT of every channel, and `other` is the mix minus
the three other stems in the time domain, so the four stems sum to the mix exactly.

On the 24 chorales of `polymuse eval separation` (medians, dB) the SDR gains over the mixture
are drums +13.1, bass +8.3, vocals +8.6, other +5.9, and the SI-SDR gains +12.1, +4.8, +5.6,
+3.9 (vocals without stage 5: SDR +8.3, SI-SDR +5.2). On the same sopranos over two bars of
their accompaniment looped (`--set looped`), vocals gain SDR +8.7, SI-SDR +6.4 (without
stage 5: +8.0, +5.5). No setting depends on the sets (the lead is found by salience, height
and continuity, repetition by similarity alone), but the defaults (mask exponents, comb width)
were compared on the first 8 chorales, and stage 5 was chosen among three variants on both
sets: classic REPET-SIM (similarity and median over the whole harmonic part) lost 4.6 and
5.4 dB of vocal SI-SDR (first 8 pieces of each), because a melody's notes recur and the
voice, the loudest partials, then decides which frames are similar and survives the median;
the model on the accompaniment estimate without tracking again gained +0.3 dB on the looped
set and nothing on the chorales; tracking again on the non-repeating part gained on both.

Good at: drums (hits, hi-hats, snares: the largest gain), a bass line that is the lowest
instrument, one clearly pitched lead line that is the highest or most salient line above
sustained accompaniment, with its partials from f0 up to 8 kHz; accompaniment that repeats
(loops, riffs, a repeated chord pattern) under a line that does not, whose partials under the
voice and whose competing lines the repetition model takes out.
Bad at: anything needing timbre: a lead instrument (a violin above the singer, a guitar solo)
is taken for the voice just as readily, and a voice below a louder or higher line (a descant,
a piano right hand above the singer) is missed for it, unless that line repeats and the voice
does not; where the first melody pass misses a voice that repeats (a hook sung over its own
loop), the repetition model takes it for accompaniment; repetition is sought within a 30 s
chunk, so a pattern longer than ~15 s (a verse's chord sequence) is seen only as similar
frames, whose shared partials the model claims from the voice; the voice's partials that
coincide with the accompaniment's (unisons, octaves, the consonances of close harmony) go to
the vocals whole unless the accompaniment repeats; unpitched or breathy singing, consonants
and reverb tails fall into `other` or `drums`; the low-pass bass takes the fundamentals of low
piano, guitar or male voices below 200 Hz and loses the bass's upper partials to `other`;
kick-drum bodies that ring longer than ~0.2 s count as harmonic bass. Expect several dB of
SDR of trained networks (use `bs_roformer`).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from polymuse.errors import ParameterError
from polymuse.report import ModelInfo
from polymuse.settings import Settings
from polymuse.tools.separation import SAMPLE_RATE
from polymuse.tools.separation.base import ChunkedSeparator
from polymuse.tools.separation.predominant import harmonic_mask, pitch_candidates, track_melody
from polymuse.tools.separation.repetition import repeating_model

EPS = 1e-10
VOCAL_MAX_HZ = 8000.0  # the vocal estimate stops here; above, energy goes to other


def _stft(y: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, dtype=y.dtype)
    return torch.stft(y, n_fft, hop, window=window, center=True, return_complex=True)


def _istft(spec: torch.Tensor, n_fft: int, hop: int, length: int) -> torch.Tensor:
    """Inverse of `_stft` (window-square normalised overlap-add); `hop` must divide `n_fft`.

    The overlap-add is `n_fft / hop` strided additions; `torch.istft` is several times slower.
    """
    window = torch.hann_window(n_fft, dtype=torch.float32)
    frames = torch.fft.irfft(spec.transpose(-1, -2), n=n_fft, dim=-1) * window
    channels, count = frames.shape[0], frames.shape[1]
    overlap = n_fft // hop
    out = torch.zeros(channels, count + overlap - 1, hop)
    env = torch.zeros(count + overlap - 1, hop)
    square = (window**2).reshape(overlap, hop)
    for j in range(overlap):
        out[:, j : j + count] += frames[:, :, j * hop : (j + 1) * hop]
        env[j : j + count] += square[j]
    start = n_fft // 2
    out, env = out.reshape(channels, -1), env.reshape(-1)
    return out[:, start : start + length] / env[start : start + length].clamp_min(1e-8)


def _magnitude(spec: torch.Tensor) -> np.ndarray:
    """RMS over channels of |spec|: (channels, bins, frames) complex -> (bins, frames) float32."""
    return (spec.real.square() + spec.imag.square()).mean(dim=0).sqrt().numpy()


class DspSeparator(ChunkedSeparator):
    """HPSS + repetition model + predominant-melody harmonic mask + band split; see the module."""

    name = "dsp"
    model = ModelInfo(
        name="dsp: HPSS + REPET-SIM + predominant-melody harmonic masks",
        version="3",
        source="polymuse.tools.separation.dsp (no weights)",
        licence="MIT",
    )
    outputs = ("vocals", "drums", "bass", "other")
    chunk = SAMPLE_RATE * 30
    step = SAMPLE_RATE * 26
    fade = SAMPLE_RATE * 4
    pad_last = False

    def __init__(
        self,
        *,
        n_fft: int = 4096,
        hop: int = 1024,
        n_fft_short: int = 1024,
        hop_short: int = 512,
        harmonic_kernel_s: float = 0.4,
        percussive_kernel_hz: float = 600.0,
        bass_cutoff: float = 200.0,
        vocal_range: tuple[float, float] = (150.0, 1100.0),
        voices: int = 6,
        height: float = 1.0,
        jump: float = 1.0,
        voicing: float = 0.2,
        comb_cents: float = 40.0,
        hpss_power: float = 2.0,
        mask_power: float = 1.0,
        neighbours: int = 5,
    ) -> None:
        """Build with the STFT sizes, kernel lengths, band limits and mask shapes to use.

        Args:
            n_fft: Long window (harmonic side, bass, vocals), samples; `hop` divides it.
            hop: Long window hop, samples.
            n_fft_short: Short window (percussive side), samples; `hop_short` divides it.
            hop_short: Short window hop, samples.
            harmonic_kernel_s: Length of the median along time, seconds.
            percussive_kernel_hz: Width of the median along frequency, Hz.
            bass_cutoff: Corner of the bass low-pass, Hz.
            vocal_range: Lowest and highest pitch searched for the lead voice, Hz.
            voices: Pitch candidates per frame (`predominant.pitch_candidates`).
            height: Melody score bonus per octave (`predominant.track_melody`).
            jump: Melody cost per semitone of a pitch change between frames.
            voicing: Salience, relative to the melody's median, below which no voice.
            comb_cents: Pitch uncertainty added to each comb tooth's half-width, cents per
                partial number.
            hpss_power: Exponent of the HPSS soft masks (2: Wiener-like power ratios).
            mask_power: Exponent of the vocal/bass/other soft masks (1: magnitude ratios).
            neighbours: Similar frames whose median is the repetition model (REPET-SIM);
                0 turns the repetition model off.

        Raises:
            ParameterError: `neighbours` is negative.
        """
        if neighbours < 0:
            raise ParameterError(f"neighbours={neighbours}: need 0 (off) or more")
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.n_fft_short, self.hop_short = n_fft_short, hop_short
        self.harmonic_kernel_s = harmonic_kernel_s
        self.percussive_kernel_hz = percussive_kernel_hz
        self.bass_cutoff = bass_cutoff
        self.vocal_range = vocal_range
        self.voices = voices
        self.height = height
        self.jump = jump
        self.voicing = voicing
        self.comb_cents = comb_cents
        self.hpss_power = hpss_power
        self.mask_power = mask_power
        self.neighbours = neighbours

    @classmethod
    def from_settings(cls, settings: Settings | None) -> DspSeparator:
        return cls()

    def cache_key(self) -> str:
        params = (
            self.n_fft,
            self.hop,
            self.n_fft_short,
            self.hop_short,
            self.harmonic_kernel_s,
            self.percussive_kernel_hz,
            self.bass_cutoff,
            self.vocal_range,
            self.voices,
            self.height,
            self.jump,
            self.voicing,
            self.comb_cents,
            self.hpss_power,
            self.mask_power,
            self.neighbours,
        )
        return super().cache_key() + "|" + ",".join(map(str, params))

    def _process(self, batch: np.ndarray) -> np.ndarray:
        out = np.empty((batch.shape[0], 4, *batch.shape[1:]), np.float32)
        for i, chunk in enumerate(batch):
            out[i] = self._separate_chunk(chunk)
        return out

    def _separate_chunk(self, y: np.ndarray) -> np.ndarray:
        """(channels, n) -> (4, channels, n): vocals, drums, bass, other."""
        n, channels = y.shape[-1], y.shape[0]
        x = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        # Stage 1, long window: the harmonic part, with low partials resolved.
        xl = _stft(x, self.n_fft, self.hop)
        ml = _magnitude(xl)
        harmonic = 1.0 - self._percussive_mask(ml, self.n_fft, self.hop)
        xh = xl * torch.from_numpy(harmonic)
        # Stage 2, short window on what is not harmonic: sharp percussive hits.
        xs = _stft(x - _istft(xh, self.n_fft, self.hop, n), self.n_fft_short, self.hop_short)
        mask = self._percussive_mask(_magnitude(xs), self.n_fft_short, self.hop_short)
        drums = _istft(xs * torch.from_numpy(mask), self.n_fft_short, self.hop_short, n)
        # Bass, vocals and other share the harmonic part.
        mh = ml * harmonic  # the magnitude of xh
        freqs = np.fft.rfftfreq(self.n_fft, 1 / self.model_rate).astype(np.float32)
        v_vocals = self._vocals(mh)
        # The low-pass claims only what the lead's partials leave.
        v_bass = self._bass(np.maximum(mh - v_vocals, 0.0), freqs)
        v_other = np.maximum(mh - v_bass - v_vocals, 0.0) + EPS
        p = self.mask_power
        v_bass, v_vocals = v_bass**p, v_vocals**p
        total = v_bass + v_vocals + v_other**p + EPS
        masks = torch.from_numpy(np.stack([v_vocals / total, v_bass / total]))
        parts = _istft(
            (xh[None] * masks[:, None]).reshape(-1, *xh.shape[1:]), self.n_fft, self.hop, n
        )
        vocals, bass = parts.reshape(2, channels, n)
        other = x - drums - vocals - bass
        return torch.stack([vocals, drums, bass, other]).numpy()

    def _percussive_mask(self, m: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
        """The percussive soft mask of median-filtering HPSS (harmonic = 1 - percussive).

        A frequency kernel wider than 15 bins runs on every `stride`-th bin and is spread back:
        the median of a decimated window is as good a broadband estimate and much cheaper.
        """
        sr = self.model_rate
        kt = _odd(self.harmonic_kernel_s * sr / hop)
        kf = _odd(self.percussive_kernel_hz * n_fft / sr)
        stride = max(1, kf // 15)
        harm = running_median(m, kt)
        perc = running_median(np.ascontiguousarray(m[::stride].T), _odd(kf / stride)).T
        perc = np.repeat(perc, stride, axis=0)[: m.shape[0]]
        p = self.hpss_power
        perc, harm = perc**p, harm**p
        return perc / (perc + harm + EPS)

    def _bass(self, m: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        lowpass = 1.0 / np.sqrt(1.0 + (freqs / self.bass_cutoff) ** 8)
        return m * lowpass[:, None]

    def _vocals(self, m: np.ndarray) -> np.ndarray:
        """The lead voice's magnitude: its comb on what the repetition model leaves of `m`."""
        comb = self._lead_comb(m)
        if self.neighbours == 0:
            return m * comb
        top = int(np.ceil(VOCAL_MAX_HZ * self.n_fft / self.model_rate)) + 1
        # Repetition is sought in the accompaniment estimate, so a sung note that comes back
        # (as in every melody) does not explain itself away.
        accompaniment = m[:top] * (1.0 - comb[:top])
        repeating = repeating_model(
            accompaniment, frame_rate=self.model_rate / self.hop, neighbours=self.neighbours
        )
        residual = np.zeros_like(m)
        residual[:top] = np.maximum(m[:top] - repeating, 0.0)
        # The lead is tracked again on what does not repeat: a repeating riff or chord partial
        # no longer outbids the voice.
        return residual * self._lead_comb(residual)

    def _lead_comb(self, m: np.ndarray) -> np.ndarray:
        """The harmonic mask on the partials of the predominant melody of `m`."""
        sr = self.model_rate
        f0, salience = pitch_candidates(m, sr=sr, n_fft=self.n_fft, voices=self.voices)
        lo, hi = self.vocal_range
        lead, voiced = track_melody(
            f0, salience, fmin=lo, fmax=hi, height=self.height, jump=self.jump, voicing=self.voicing
        )
        return harmonic_mask(
            lead * voiced,
            sr=sr,
            n_fft=self.n_fft,
            max_hz=VOCAL_MAX_HZ,
            tolerance_cents=self.comb_cents,
        )


@numba.njit(parallel=True, cache=True)
def _running_median_rows(x: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - numba
    rows, n = x.shape
    half = k // 2
    out = np.empty_like(x)
    for r in numba.prange(rows):
        padded = np.empty(n + 2 * half, x.dtype)
        padded[half : half + n] = x[r]
        for i in range(half):
            padded[half - 1 - i] = x[r, min(i + 1, n - 1)]
            padded[half + n + i] = x[r, max(n - 2 - i, 0)]
        window = np.sort(padded[:k].copy())
        out[r, 0] = window[half]
        for i in range(1, n):
            old, new = padded[i - 1], padded[i - 1 + k]
            j = np.searchsorted(window, old)
            # Remove `old` at j, then slide `new` into its sorted place.
            if new >= old:
                while j + 1 < k and window[j + 1] < new:
                    window[j] = window[j + 1]
                    j += 1
            else:
                while j > 0 and window[j - 1] > new:
                    window[j] = window[j - 1]
                    j -= 1
            window[j] = new
            out[r, i] = window[half]
    return out


def running_median(x: np.ndarray, k: int) -> np.ndarray:
    """Median over a centred window of `k` (odd) samples along the last axis, reflect padding."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if k <= 1 or x.shape[-1] < 2:
        return x.copy()
    return _running_median_rows(x, k)


def _odd(value: float) -> int:
    n = max(1, round(value))
    return n if n % 2 else n + 1
