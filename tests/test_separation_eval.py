"""`eval separation`: the metrics against mir_eval, and the rendered multitrack set."""

from __future__ import annotations

import shutil

import mir_eval
import numpy as np
import pytest

from polymuse.evaluation.separation import (
    evaluate_separation,
    load_stems,
    looped_set,
    multitrack_set,
    sdr,
    si_sdr,
)
from polymuse.tools.separation import STEMS


def test_sdr_equals_mir_eval_bss_eval_images():
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((3, 2, 4000))
    ests = refs + 0.5 * rng.standard_normal(refs.shape) + 0.3 * refs[[1, 2, 0]]
    with pytest.warns(FutureWarning):  # deprecated in mir_eval 0.8, still the reference
        expected = mir_eval.separation.bss_eval_images(
            refs.transpose(0, 2, 1), ests.transpose(0, 2, 1), compute_permutation=False
        )[0]
    np.testing.assert_allclose(
        [sdr(r, e) for r, e in zip(refs, ests, strict=True)], expected, atol=1e-6
    )


def test_si_sdr_ignores_scale_and_knows_a_perfect_estimate():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((2, 1000))
    est = ref + 0.1 * rng.standard_normal(ref.shape)
    assert abs(si_sdr(ref, 3.0 * est) - si_sdr(ref, est)) < 1e-9
    assert si_sdr(ref, ref) > 100
    # 10 log10(1 / 0.01) = 20 dB for independent noise at a tenth of the amplitude.
    assert 17 < si_sdr(ref, est) < 23


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth is not installed")
def test_multitrack_set_stems_sum_to_the_mix_and_evaluate(tmp_path):
    pieces = multitrack_set(1, tmp_path, max_seconds=12.0)
    mix, stems = load_stems(pieces[0])
    np.testing.assert_allclose(sum(stems.values()), mix, atol=1e-5)
    assert all(np.sqrt(np.mean(stems[s] ** 2)) > 1e-3 for s in STEMS)
    again = multitrack_set(1, tmp_path, max_seconds=12.0)  # cached: same piece
    assert again[0].piece_id == pieces[0].piece_id
    result = evaluate_separation(
        separator="unittest", pieces=1, cache_dir=tmp_path, max_seconds=12.0
    )
    summary = result.summary()
    assert set(summary) == set(STEMS)
    assert summary["drums"]["baseline_sdr"] < 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth is not installed")
def test_looped_set_repeats_the_accompaniment_under_the_same_soprano(tmp_path):
    chorale = multitrack_set(1, tmp_path, max_seconds=12.0)[0]
    piece = looped_set(1, tmp_path, max_seconds=12.0, bars=1)[0]
    mix, stems = load_stems(piece)
    np.testing.assert_allclose(sum(stems.values()), mix, atol=1e-5)
    _, originals = load_stems(chorale)
    # The soprano is the chorale's, up to the mixture's scale.
    scale = np.sum(stems["vocals"] * originals["vocals"]) / np.sum(originals["vocals"] ** 2)
    np.testing.assert_allclose(stems["vocals"], scale * originals["vocals"], atol=1e-5)
    first, second = [d for d in piece.truth.downbeats if d >= piece.truth.start][:2]
    bar = round(second * 44100) - round(first * 44100)
    drums = stems["drums"]
    np.testing.assert_allclose(drums[:, bar : 2 * bar], drums[:, :bar], atol=1e-6)
    result = evaluate_separation(
        separator="unittest", pieces=1, cache_dir=tmp_path, max_seconds=12.0, test_set="looped"
    )
    assert result.test_set == "looped" and set(result.summary()) == set(STEMS)
