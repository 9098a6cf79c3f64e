"""Score -> calibrated confidence: a small monotone logistic model fitted on evaluation queries.

Features of a query's best candidate (see `Evidence`): log(1 + reference peaks its
verification found), log(1 + the same for the best other song), the fraction found,
log(1 + its hash score), the share of the query's own dominant peaks it explains, the share
of the checked reference peaks the query is quiet at (absent notes, not masked ones), how far
below its local maximum the query lies there on average (dB), log(1 + the query's steady
dominant peaks it explains) and log(1 + those it leaves unexplained) (noise is seldom steady,
a look-alike's other notes are; see `listening`), and the share of the checked reference peaks
where the query stands above its usual level in that band (masked notes still raise it,
missing ones do not), and how far the matched line lies from the query's own pitch and tempo
(|pitch shift| in semitones, |log tempo ratio|). Counts, not their ratio: three of three
explained is weak evidence, not perfect evidence; a clip longer than `COUNT_SECONDS` has its
counts scaled down to that length.

Each feature enters through a monotone piecewise-linear function (knots at quantiles of the
fitting data, one weight per segment, every weight of the feature's sign in `SIGNS`), so the
model is additive and never lets more evidence for a match lower the confidence, but it can
read a depth of 1 dB against 9 dB very differently from 11 against 19. A straight line per
feature cannot: the weight that keeps look-alikes out then rejects reverberant true matches.
The model is fitted by `polymuse eval recognition` on known queries (label: the top match is
right) and out-of-catalogue queries (label: 0), and stored as JSON in the package
(`polymuse/data/recognition_calibration.json`) with the acceptance threshold chosen on the
same run; clips shorter than `SHORT_SECONDS` get a model and threshold of their own.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np

from polymuse.errors import ParameterError
from polymuse.recognition.models import SongMatch

CALIBRATION_FILE = "recognition_calibration.json"
FEATURES = (
    "log1p_found",
    "log1p_second_found",
    "fraction",
    "log1p_score",
    "precision",
    "absence",
    "depth_db",
    "log1p_steady_explained",
    "log1p_steady_unexplained",
    "raised",
    "abs_pitch_shift",
    "abs_log_tempo_ratio",
)
SIGNS = (1, -1, 1, 1, 1, -1, -1, 1, -1, 1, -1, -1)
"""Which way each feature may push the confidence: evidence for a match never counts against
it. Unconstrained, correlated features take opposite weights that cancel on the fitting data
and give far look-alikes a high confidence. A line off the query's pitch or tempo counts
against a match: the verification takes the best of some 40 pitch shifts and the vote the best
of some 20 tempo ratios, so a look-alike's best line lies anywhere in that range, while most
queries play at the reference's own pitch and tempo (a dev grid with 6840 out-of-catalogue
clips, at 0.3 % false positives: 0 dB babble, 3 s, 59 -> 74 % accepted; mean of 18 cells 84.0
-> 89.7 %)."""
KNOTS = 5
"""Knots per feature of a fitted model."""
COUNT_SECONDS = 5.0
"""Counts from a longer clip are scaled to this many seconds before they enter the model: they
grow with a clip's length, not its credibility (a noisy 10 s clip leaves twice the unexplained
steady peaks of a 5 s one), so scaled, clips of 3 to 10 s share one model. Shorter clips are
not scaled up: their few counts are their doubt."""
SHORT_SECONDS = 2.5
"""Clips shorter than this are judged by a model of their own (`Calibration.short`), fitted on
short clips. A second of music holds a chord or two, which many songs share: out-of-catalogue
1 s clips show 10 to 15 reference peaks of some song, all explained and none absent, which from
a 3 s clip is a sure match. The model fitted on 3 to 10 s clips accepted 30.3 % of them, 3.3 %
of 2 s ones, and answered 7.7 % of in-catalogue 1 s clips with a wrong song; one model fitted on
all lengths instead rejects most noisy 3 s clips to keep the 1 s look-alikes out. Fitted apart
on 1 and 2 s clips, the short model accepts 0.1 % of the out-of-catalogue 1 s clips and 0.7 % of
the 2 s ones, and a wrong song for 2 of 4140 in-catalogue ones."""


@dataclass(frozen=True)
class Evidence:
    """What the matcher knows about a query's best candidate."""

    found: int
    """Reference peaks the verification found in the query."""
    second_found: int
    """The most `found` of any other song's best candidate (0 if none)."""
    fraction: float
    """`found` over the reference peaks checked."""
    score: int
    """Distinct reference hashes on the matched line."""
    precision: float = 0.0
    """Share of the query's own dominant peaks the reference explains."""
    absence: float = 0.0
    """Share of the checked reference peaks where the query is quiet (`matching.QUIET_DB`)."""
    depth_db: float = 0.0
    """Mean dB the query lies below its local maximum at the checked reference peaks."""
    steady: int = 0
    """The query's steady dominant peaks (held notes, not glides or bursts) ..."""
    steady_explained: int = 0
    """... that the reference explains."""
    raised: float = 0.0
    """Share of the checked reference peaks where the query stands above its usual level in
    that band (`matching.RAISED_DB`)."""
    seconds: float = 0.0
    """Length of the clip (or timeline window) checked; 0: unknown, counts are not scaled."""
    pitch_shift: float = 0.0
    """Semitones of the matched line, query relative to reference."""
    tempo_ratio: float = 1.0
    """Reference time per query time of the matched line."""

    @classmethod
    def of(cls, match: SongMatch, *, seconds: float) -> Evidence:
        """The evidence of a reported match (the recognizer and the evaluation both read it so,
        from the same rounded fields)."""
        checked = match.peaks_checked

        def share(count: int) -> float:
            return count / checked if checked else 0.0

        return cls(
            found=match.peaks_found,
            second_found=match.rival_peaks_found,
            fraction=share(match.peaks_found),
            score=match.score,
            precision=match.precision,
            absence=share(match.peaks_absent),
            depth_db=match.depth_db,
            steady=match.steady_peaks,
            steady_explained=match.steady_explained,
            raised=share(match.peaks_raised),
            seconds=seconds,
            pitch_shift=match.pitch_shift,
            tempo_ratio=match.tempo_ratio,
        )

    @property
    def count_scale(self) -> float:
        """What the counts are multiplied by before they enter the model (`COUNT_SECONDS`)."""
        return min(1.0, COUNT_SECONDS / self.seconds) if self.seconds > 0 else 1.0


@dataclass(frozen=True)
class Calibration:
    """Logistic weights (bias first, then one per basis function of `design`), the knots of
    each feature's piecewise-linear function (none: the feature is linear) and the acceptance
    threshold."""

    weights: tuple[float, ...] = (
        -10.0,
        2.0,
        -2.0,
        5.0,
        1.0,
        1.0,
        -15.0,
        -0.2,
        0.5,
        -1.0,
        2.0,
        -1.0,
        -10.0,
    )
    threshold: float = 0.5
    knots: tuple[tuple[float, ...], ...] = ()
    fingerprint_version: str = ""
    fitted_on: dict[str, float | int | str] = field(default_factory=dict)
    short: Calibration | None = None
    """The model, with its own threshold, for clips shorter than `SHORT_SECONDS` (None: this
    one judges every clip)."""

    def __post_init__(self) -> None:
        if self.knots and len(self.knots) != len(FEATURES):
            raise ParameterError(f"calibration needs knots for {len(FEATURES)} features")
        expected = 1 + sum(_width(k) for k in self.all_knots)
        if len(self.weights) != expected:
            raise ParameterError(f"calibration needs {expected} weights, got {len(self.weights)}")

    @property
    def all_knots(self) -> tuple[tuple[float, ...], ...]:
        return self.knots or ((),) * len(FEATURES)

    def for_clip(self, seconds: float) -> Calibration:
        """The model that judges a clip (or timeline window) this many seconds long (0:
        unknown length, the main model)."""
        return self.short if self.short is not None and 0 < seconds < SHORT_SECONDS else self

    def confidence(self, evidence: Evidence) -> float:
        """Probability that a best candidate with this evidence is the right song."""
        return float(self.confidences([evidence])[0])

    def confidences(self, evidence: list[Evidence]) -> np.ndarray:
        judges = [self.for_clip(e.seconds) for e in evidence]
        out = np.zeros(len(evidence))
        for model in (self, self.short):
            rows = [i for i, judge in enumerate(judges) if judge is model]
            if rows:
                x = design(features([evidence[i] for i in rows]), model.all_knots)
                out[rows] = _sigmoid(x @ np.asarray(model.weights))
        return out

    def accepts(self, evidence: Evidence) -> bool:
        """Whether the best candidate is taken for the right song (its model's threshold)."""
        return self.confidence(evidence) >= self.for_clip(evidence.seconds).threshold

    def without_threshold(self) -> Calibration:
        """The same confidences, every candidate accepted (to see every answer ranked)."""
        short = None if self.short is None else replace(self.short, threshold=0.0)
        return replace(self, threshold=0.0, short=short)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        return cls._of(json.loads(text))

    @classmethod
    def _of(cls, data: dict) -> Calibration:
        return cls(
            weights=tuple(float(w) for w in data["weights"]),
            threshold=float(data["threshold"]),
            knots=tuple(tuple(float(k) for k in ks) for ks in data.get("knots", ())),
            fingerprint_version=str(data.get("fingerprint_version", "")),
            fitted_on=dict(data.get("fitted_on", {})),
            short=cls._of(data["short"]) if data.get("short") else None,
        )


def default_calibration() -> Calibration:
    """The calibration shipped with the package (the built-in guess if none was fitted)."""
    entry = resources.files("polymuse").joinpath("data", CALIBRATION_FILE)
    if not entry.is_file():
        return Calibration()
    return Calibration.from_json(entry.read_text(encoding="utf-8"))


def features(evidence: list[Evidence]) -> np.ndarray:
    """One row of `FEATURES` per evidence, counts scaled by `Evidence.count_scale`."""
    rows = [_row(e, e.count_scale) for e in evidence]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))


def _row(e: Evidence, k: float) -> tuple[float, ...]:
    return (
        np.log1p(e.found * k),
        np.log1p(e.second_found * k),
        e.fraction,
        np.log1p(e.score * k),
        e.precision,
        e.absence,
        e.depth_db,
        np.log1p(e.steady_explained * k),
        np.log1p((e.steady - e.steady_explained) * k),
        e.raised,
        abs(e.pitch_shift),
        abs(np.log(e.tempo_ratio)),
    )


def design(x: np.ndarray, knots: tuple[tuple[float, ...], ...]) -> np.ndarray:
    """A column of ones, then each feature's basis: the feature itself when it has no knots,
    else its part below the first knot, its run across each pair of knots, and its part above
    the last. Every basis function rises with the feature, so weights of one sign make the
    feature's function monotone.

    Beyond the outer knots (the 2 % and 98 % quantiles of the fitting data) a feature only ever
    lowers the confidence: the part that would raise it (above the last knot for evidence for a
    match, below the first for evidence against it) reads 0. Outside what it was fitted on, the
    model is never surer: a catalogue of one song leaves a query no rival peaks at all, which a
    fit on 500 songs never saw."""
    columns = [np.ones(len(x))]
    for j, k in enumerate(knots):
        v = x[:, j]
        if not k:
            columns.append(v)
            continue
        below, above = np.minimum(v - k[0], 0.0), np.maximum(v - k[-1], 0.0)
        columns.append(below if SIGNS[j] > 0 else np.zeros_like(v))
        columns += [np.clip(v - a, 0.0, b - a) for a, b in zip(k[:-1], k[1:], strict=True)]
        columns.append(above if SIGNS[j] < 0 else np.zeros_like(v))
    return np.stack(columns, axis=1)


def fit(
    evidence: list[Evidence],
    correct: np.ndarray,
    *,
    knots: int = KNOTS,
    l2: float = 1.0,
    iterations: int = 50,
) -> Calibration:
    """The monotone model (threshold 0.5) fitted by L2-regularised logistic regression.

    Knots sit at `knots` quantiles of each feature (2 % to 98 %; 0: linear features). Basis
    functions are scaled to unit spread for the fit, so one `l2` suits them all. Active set:
    fit, drop the basis function whose weight has the wrong sign by the most, refit, until
    every weight left has its feature's sign; dropped ones weigh 0.
    """
    x = features(evidence)
    y = np.asarray(correct, dtype=np.float64)
    if len(np.unique(y)) < 2:
        raise ParameterError("calibration needs both right and wrong answers")
    levels = np.linspace(0.02, 0.98, knots)
    feature_knots = tuple(
        tuple(float(q) for q in np.unique(np.quantile(x[:, j], levels))) if knots else ()
        for j in range(x.shape[1])
    )
    basis = design(x, feature_knots)
    scale = basis.std(axis=0)
    scale[0] = 1.0
    scale[scale == 0] = 1.0
    basis /= scale
    signs = np.concatenate(
        [[0]] + [[s] * _width(k) for s, k in zip(SIGNS, feature_knots, strict=True)]
    )
    active = np.ones(basis.shape[1], dtype=bool)
    while True:
        w = np.zeros(basis.shape[1])
        w[active] = _newton(basis[:, active], y, l2=l2, iterations=iterations)
        wrong = signs * w < 0
        if not wrong.any():
            break
        active[np.argmin(np.where(wrong, signs * w, 0.0))] = False
    return Calibration(
        weights=tuple(float(v) for v in w / scale),
        knots=feature_knots if knots else (),
    )


def _width(knots: tuple[float, ...]) -> int:
    """Basis functions of a feature with these knots."""
    return len(knots) + 1 if knots else 1


def _newton(x: np.ndarray, y: np.ndarray, *, l2: float, iterations: int) -> np.ndarray:
    """Unconstrained logistic regression by Newton's method."""
    w = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = _sigmoid(x @ w)
        grad = x.T @ (p - y) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(len(w))
        delta = np.linalg.solve(hess, grad)
        w -= delta
        if np.abs(delta).max() < 1e-8:
            break
    return w


def save(calibration: Calibration, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(calibration.to_json() + "\n", encoding="utf-8")
    return path


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
