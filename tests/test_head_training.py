"""Training the instrument head end to end on a tiny render set (slow: renders and encodes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polymuse.errors import ModelUnavailableError
from polymuse.evaluation.head_training import SOUNDFONTS, SOUNDS, train_head, training_fonts
from polymuse.tools.semantics.instrument_head import CLASSES, InstrumentHead


def test_every_class_has_sounds_and_no_fluidr3_font() -> None:
    assert tuple(SOUNDS) == CLASSES
    assert not any("fluid" in f["path"].lower() for f in SOUNDFONTS.values())


@pytest.mark.slow
def test_train_head_writes_a_loadable_head(tmp_path: Path) -> None:
    try:
        fonts = training_fonts()
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    if len(fonts) < 2:
        pytest.skip("cross-validation needs two training soundfonts")
    path = tmp_path / "head.json"
    # two pieces a class, so both cross-validation halves of every class have a score
    head, report = train_head(per_class=2, cache_dir=tmp_path, seed=0, write=path)
    loaded = InstrumentHead.load(path)
    assert loaded.classes == CLASSES and report.pieces == 2 * len(CLASSES) * len(fonts)
    assert set(report.cross_validation[f"{report.c:g}"]) == {*fonts, "mean"}
    np.testing.assert_allclose(loaded.weights, head.weights, rtol=1e-5, atol=1e-6)
