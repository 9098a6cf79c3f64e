"""`review DIR` over new, known, corrupt and duplicate files; the re-run is a no-op."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents_data import make_report
from polymuse.agents.review import review_folder
from polymuse.agents.tools import run_catalogue_query
from polymuse.ingest import IngestOptions, build_extractor, run_ingest
from polymuse.ingest.testdata import render_song, write_audio, write_corrupt

pytestmark = pytest.mark.db


def test_review_new_known_corrupt_duplicate(store, make_song, tmp_path: Path) -> None:
    known = make_song("known/Artist - Known.wav", seed=1, seconds=2.0)
    run_ingest(store, [known], IngestOptions(jobs=1))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(known, inbox / "known copy.wav")
    new = make_song("x/Artist - Fresh.wav", seed=2, seconds=2.0)
    shutil.copy(new, inbox / "Artist - Fresh.wav")
    shutil.copy(new, inbox / "Artist - Fresh (dup).wav")
    bad = write_corrupt(tmp_path / "bad")[0]
    shutil.copy(bad, inbox / "broken.wav") if bad.stat().st_size else (
        inbox / "broken.wav"
    ).write_text("not audio")

    analysed = []

    def analyse(path: Path):
        analysed.append(path.name)
        return make_report(3, path.stem), f"reports/{path.stem}"

    result = review_folder(store, inbox, output_dir=tmp_path / "reports", analyse=analyse)
    outcomes = {Path(f.path).name: f.outcome for f in result.files}
    assert outcomes == {
        "known copy.wav": "known",
        "Artist - Fresh (dup).wav": "new",
        "Artist - Fresh.wav": "duplicate",
        "broken.wav": "failed",
    } or outcomes == {
        "known copy.wav": "known",
        "Artist - Fresh.wav": "new",
        "Artist - Fresh (dup).wav": "duplicate",
        "broken.wav": "failed",
    }
    assert len(analysed) == 1 and result.exit_code == 1
    md = (Path(result.out_dir) / "review.md").read_text()
    for heading in (
        "Summary",
        "Unknown songs",
        "Low-confidence",
        "Failures",
        "Changes since",
        "Plan",
    ):
        assert heading in md
    assert any("failed" in a for a in result.alerts)
    assert any(a.kind == "retry_quarantine" for a in result.plan)
    indexed = run_catalogue_query(store, "songs_by_key", mode=make_report(3, "x").features.key.mode)
    assert [f.value["report_path"] for f in indexed] == [f"reports/{Path(analysed[0]).stem}"]

    again = review_folder(store, inbox, output_dir=tmp_path / "reports", analyse=analyse)
    assert again.status == "noop" and again.files == [] and len(analysed) == 1
    assert len(list((tmp_path / "reports" / "reviews").iterdir())) == 1


def test_review_recognises_an_excerpt_of_a_catalogue_song(store, tmp_path: Path) -> None:
    """A quieter 8 s excerpt of a catalogue song, as Ogg, is known; a different song is new."""
    song = render_song(11, seconds=24.0)
    landmarks = [build_extractor("polymuse-triplets")]
    library = write_audio(tmp_path / "lib/Artist - Long.wav", song, 22050)
    run_ingest(store, [library], IngestOptions(extractors=landmarks, jobs=1))
    inbox = tmp_path / "inbox"
    write_audio(inbox / "clip.ogg", 0.5 * song[10 * 22050 : 18 * 22050], 22050)
    write_audio(inbox / "Artist - Other.wav", render_song(12, seconds=24.0), 22050)

    result = review_folder(store, inbox, output_dir=tmp_path / "reports", extractors=landmarks)
    files = {Path(f.path).name: f for f in result.files}
    assert files["clip.ogg"].outcome == "known"
    assert "recording of 'Long'" in files["clip.ogg"].detail
    assert files["Artist - Other.wav"].outcome == "new"
    with store.connection() as conn:
        assert conn.execute("SELECT count(*) FROM media_entity").fetchone()[0] == 2
