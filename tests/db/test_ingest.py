"""Ingest against the real server: acceptance folder, resume, songs, safety, cascade."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from polymuse.commands.catalog import app as catalog_app
from polymuse.ingest import IngestOptions, run_ingest
from polymuse.ingest.decode import plan_windows
from polymuse.ingest.extractors import DebugExtractor, Fact, SpectralStatsExtractor
from polymuse.ingest.testdata import CORRUPT_KINDS, write_corpus
from polymuse.store import catalog, queries
from polymuse.store.pool import connect
from polymuse.tools.chromaprint import fpcalc_version

pytestmark = pytest.mark.db


def _options(**kw) -> IngestOptions:
    kw.setdefault("extractors", [DebugExtractor()])
    kw.setdefault("jobs", 2)
    return IngestOptions(**kw)


def test_acceptance_folder_small(store, tmp_path: Path, table_counts) -> None:
    """Valid files all in, every corrupt kind quarantined with a reason, second run no-op."""
    corpus = write_corpus(tmp_path / "lib", n_valid=8, seconds=2.0)
    first = run_ingest(store, [corpus.root], _options(set_name="mine"))
    assert sorted(o.path for o in first.added) == sorted(str(p) for p in corpus.valid)
    bad = {Path(o.path).name: o.reason for o in first.quarantined}
    assert set(bad) == set(CORRUPT_KINDS)
    assert all(bad.values())
    assert "empty" in bad["empty.wav"] and "empty" in bad["nothing.ogg"]
    assert "truncated" in bad["cut.mp3"] and "truncated" in bad["cut.wav"]
    assert "not a readable audio file" in bad["readme.wav"]
    with store.connection() as conn:
        recorded = {Path(r["file_path"]).name: r for r in queries.list_quarantine(conn)}
        assert set(recorded) == set(CORRUPT_KINDS)
        assert all(r["content_hash"] or r["file_size"] == 0 for r in recorded.values())
        stored = {r[0] for r in conn.execute("SELECT file_path FROM audio_object").fetchall()}
    assert not stored & {str(p) for p in corpus.corrupt}
    before = table_counts(store.dsn)

    started = time.monotonic()
    second = run_ingest(store, [corpus.root], _options(set_name="mine"))
    assert time.monotonic() - started < 3.0
    assert second.added == [] and second.quarantined == []
    assert len(second.skipped) == len(corpus.valid) + len(corpus.corrupt)
    after = table_counts(store.dsn)
    assert after["quarantine"] == before["quarantine"]
    assert {k: v for k, v in after.items() if k != "quarantine"} == {
        k: v for k, v in before.items() if k != "quarantine"
    }
    assert all(p.exists() for p in corpus.corrupt)  # never moved unless asked


def test_reingest_after_touch_rename_and_copy(
    store, make_song, tmp_path: Path, table_counts
) -> None:
    a = make_song("A - One.wav", seed=1)
    make_song("B - Two.flac", seed=2)
    first = run_ingest(store, [tmp_path / "music"], _options())
    assert len(first.added) == 2
    before = table_counts(store.dsn)
    os.utime(a, ns=(time.time_ns(), time.time_ns()))  # touched: hashed again, same content
    moved = a.rename(a.with_name("A - One (moved).wav"))
    (tmp_path / "music" / "copy.wav").write_bytes(moved.read_bytes())
    second = run_ingest(store, [tmp_path / "music"], _options())
    reasons = {Path(o.path).name: o.reason for o in second.skipped}
    assert second.added == [] and second.quarantined == []
    assert "moved from" in reasons["A - One (moved).wav"]
    assert "same content as" in reasons["copy.wav"]
    assert table_counts(store.dsn) == before
    with store.connection() as conn:
        paths = {
            r[0]
            for r in conn.execute(
                "SELECT file_path FROM audio_object WHERE object_type = 'asset'"
            ).fetchall()
        }
    assert str(moved) in paths


def test_stored_files_added_again_join_the_new_set(store, make_song, tmp_path: Path) -> None:
    """`--set` puts every song of the folder in the set, stored before or not: unchanged,
    moved and copied files too."""
    a = make_song("A - One.wav", seed=1)
    make_song("B - Two.flac", seed=2)
    first = run_ingest(store, [tmp_path / "music"], _options(set_name="old"))
    songs = {o.song_id for o in first.added}
    a.rename(a.with_name("A - One (moved).wav"))
    (tmp_path / "music" / "copy.flac").write_bytes(
        (tmp_path / "music" / "B - Two.flac").read_bytes()
    )
    make_song("C - Three.wav", seed=3)
    second = run_ingest(store, [tmp_path / "music"], _options(set_name="favourites"))
    assert len(second.skipped) == 3 and len(second.added) == 1
    with store.connection() as conn:
        members = queries.list_songs(conn, set_name="favourites", limit=10)
        old = queries.list_songs(conn, set_name="old", limit=10)
    assert {m["song_id"] for m in members} == songs | {second.added[0].song_id}
    assert {m["song_id"] for m in old} == songs


def test_files_of_one_song_share_a_media_entity(store, make_song, tmp_path: Path) -> None:
    make_song("cd/Band - Tune.wav", seed=10)
    make_song("phone/Band - Tune.mp3", seed=11)  # other audio, same artist and title
    make_song("x/tagged.ogg", seed=12, tags={"artist": "band", "title": "TUNE"})
    if fpcalc_version():
        # Same recording, no usable names: Chromaprint joins them (needs > 5 s of audio).
        from polymuse.ingest.testdata import render_song, write_audio

        y = render_song(20, seconds=9.0)
        write_audio(tmp_path / "music" / "rip1.wav", y, 22050)
        write_audio(tmp_path / "music" / "rip2.mp3", y, 22050)
        make_song("other.wav", seed=21, seconds=9.0)
    summary = run_ingest(store, [tmp_path / "music"], _options())
    assert summary.quarantined == []
    by_name = {Path(o.path).name: o for o in summary.added}
    tune = {by_name[n].song_id for n in ("Band - Tune.wav", "Band - Tune.mp3", "tagged.ogg")}
    assert len(tune) == 1
    if fpcalc_version():
        assert by_name["rip1.wav"].song_id == by_name["rip2.mp3"].song_id
        assert by_name["other.wav"].song_id != by_name["rip1.wav"].song_id
        reasons = {by_name["rip1.wav"].reason, by_name["rip2.mp3"].reason}
        assert reasons == {"new song", "joined song by Chromaprint"}
    with store.connection() as conn:
        song = queries.get_song(conn, tune.pop())
    assert song["artist"] == "Band" and len(song["files"]) == 3


def test_bad_extractor_output_quarantines_only_that_file(store, make_song, tmp_path: Path) -> None:
    for i in range(4):
        make_song(f"ok{i}.wav", seed=30 + i)
    make_song("boom.wav", seed=40)
    summary = run_ingest(
        store,
        [tmp_path / "music"],
        _options(extractors=[DebugExtractor(fail_on="boom")], batch_size=8),
    )
    assert len(summary.added) == 4
    [bad] = summary.quarantined
    assert bad.path.endswith("boom.wav") and "debug: ValueError" in bad.reason
    with store.connection() as conn:
        stage = conn.execute("SELECT stage FROM quarantine").fetchone()[0]
    assert stage == "extract"


def test_write_is_all_or_nothing(store, table_counts) -> None:
    """A failure in the middle of a file's write leaves no trace of it."""
    asset = catalog.AssetRecord(
        path="/music/x.wav",
        content_hash="0" * 64,
        size=1,
        mtime_ns=1,
        duration_s=12.0,
        sample_rate=22050,
        channels=1,
        codec="pcm_16",
        container="wav",
        tags={},
        song=catalog.SongInfo(title="X", artist="Y", match_key="y / x"),
        windows=[(0, 0.0, 10.0), (1, 2.0, 12.0)],
        chromaprint=np.arange(50, dtype=np.int32),
    )
    facts = [catalog.FactRecord("descriptor", "m", "1", "s", window=7, payload={})]
    before = table_counts(store.dsn)
    with pytest.raises(Exception, match="window 7"), store.transaction() as conn:
        catalog.add_asset(conn, asset, facts)
    assert table_counts(store.dsn) == before


def test_remove_cascades_everywhere(store, make_song, tmp_path: Path, table_counts) -> None:
    make_song("Keep - Me.wav", seed=50, seconds=12.0)
    make_song("Drop - Me.wav", seed=51, seconds=12.0)
    make_song("Drop2 - Too.flac", seed=52)
    summary = run_ingest(
        store,
        [tmp_path / "music"],
        _options(
            extractors=[DebugExtractor(), SpectralStatsExtractor()],
            set_name="s",
            window_s=4.0,
            hop_s=2.0,
        ),
    )
    ids = {Path(o.path).stem: (o.song_id, o.asset_id) for o in summary.added}
    full = table_counts(store.dsn)
    assert full["vectors"] > 0 and full["fingerprint_posting"] > 0 and full["chromaprint"] > 0
    with store.transaction() as conn:
        removed = catalog.remove_songs(conn, [ids["Drop - Me"][0]])
        gone_asset = catalog.remove_assets(conn, [ids["Drop2 - Too"][1]])
    assert removed["songs"] == 1 and removed["windows"] == len(
        plan_windows(12.0, window_s=4, hop_s=2)
    )
    assert gone_asset["songs"] == 1  # its last file: the song goes too
    with store.connection() as conn:
        keep_song, keep_asset = ids["Keep - Me"]
        left = {
            "songs": conn.execute("SELECT array_agg(entity_id) FROM media_entity").fetchone()[0],
            "objects": conn.execute(
                "SELECT count(*) FROM audio_object WHERE entity_id <> %(s)s", {"s": keep_song}
            ).fetchone()[0],
            "facts": conn.execute(
                "SELECT count(*) FROM feature_fact f JOIN audio_object o USING (object_id) "
                "WHERE o.entity_id <> %(s)s",
                {"s": keep_song},
            ).fetchone()[0],
            "postings": conn.execute(
                "SELECT count(*) FROM fingerprint_posting WHERE asset_id <> %(a)s",
                {"a": keep_asset},
            ).fetchone()[0],
            "sets": conn.execute(
                "SELECT count(*) FROM set_membership WHERE entity_id <> %(s)s", {"s": keep_song}
            ).fetchone()[0],
            "prints": conn.execute(
                "SELECT count(*) FROM chromaprint WHERE entity_id <> %(s)s", {"s": keep_song}
            ).fetchone()[0],
        }
        vectors = sum(t["rows"] for t in queries.vector_tables(conn))
        kept_vectors = sum(
            conn.execute(
                f"SELECT count(*) FROM {t['table_name']} WHERE entity_id = %(s)s",  # noqa: S608
                {"s": keep_song},
            ).fetchone()[0]
            for t in queries.vector_tables(conn)
        )
    assert left == {
        "songs": [keep_song],
        "objects": 0,
        "facts": 0,
        "postings": 0,
        "sets": 0,
        "prints": 0,
    }
    assert vectors == kept_vectors > 0


def test_quarantine_dir_moves_only_when_asked(store, tmp_path: Path) -> None:
    music = tmp_path / "music"
    music.mkdir()
    (music / "bad.wav").write_text("not audio")
    run_ingest(store, [music], _options())
    assert (music / "bad.wav").exists()
    (music / "worse.flac").write_bytes(os.urandom(5000))
    summary = run_ingest(store, [music], _options(quarantine_dir=tmp_path / "q"))
    assert [Path(o.path).name for o in summary.quarantined] == ["worse.flac"]
    assert not (music / "worse.flac").exists() and (tmp_path / "q" / "worse.flac").exists()
    with store.connection() as conn:
        moved = dict(conn.execute("SELECT file_path, moved_to FROM quarantine").fetchall())
    assert moved[str(music / "worse.flac")] == str(tmp_path / "q" / "worse.flac")
    assert moved[str(music / "bad.wav")] is None


def test_plugged_in_extractor_batches_across_files(store, make_song, tmp_path: Path) -> None:
    """An extractor defined elsewhere plugs in unchanged and sees batches of several files."""
    calls: list[int] = []

    class Counting:
        name, version, feature_set, sample_rate = "counting", "0", "n-windows", 8000

        def extract_batch(self, items):
            calls.append(len(items))
            assert all(item.sample_rate == 8000 for item in items)
            return [
                [Fact("embedding", w.index, np.array([1.0, w.index + 1.0])) for w in item.windows]
                for item in items
            ]

    for i in range(6):
        make_song(f"n{i}.ogg", seed=60 + i)
    summary = run_ingest(
        store, [tmp_path / "music"], _options(extractors=[Counting()], batch_size=3)
    )
    assert len(summary.added) == 6
    assert sum(calls) == 6 and max(calls) > 1
    with store.connection() as conn:
        [table] = [t for t in queries.vector_tables(conn) if t["model_name"] == "counting"]
    assert table["dim"] == 2 and table["rows"] == 6


class _Seen:
    """An extractor that notes the names of the files it is given."""

    def __init__(self, inner) -> None:
        self.inner, self.files = inner, []
        self.name, self.version = inner.name, inner.version
        self.feature_set, self.sample_rate = inner.feature_set, inner.sample_rate

    def extract_batch(self, items):
        self.files += [Path(item.path).name for item in items]
        return self.inner.extract_batch(items)


def _catalogue_rows(store) -> set[tuple]:
    """(asset, object, model or 'window', fact id): every object and fact, by asset."""
    with store.connection() as conn:
        rows = conn.execute(
            "SELECT coalesce(o.parent_object_id, o.object_id), o.object_id, "
            "coalesce(f.model_name, 'window'), f.fact_id "
            "FROM audio_object o LEFT JOIN feature_fact f USING (object_id)"
        ).fetchall()
    return set(rows)


def test_stored_files_get_only_the_missing_extractors(
    store, make_song, tmp_path: Path, table_counts
) -> None:
    """A new extractor runs on stored files alone and adds its facts to the same assets and
    windows; the facts they had stay; a third run has nothing to do."""
    music = tmp_path / "music"
    songs = [make_song(f"Band - Song {i}.wav", seed=500 + i, seconds=4.0) for i in range(3)]
    windows = {"window_s": 2.0, "hop_s": 1.0}
    first = run_ingest(store, [music], _options(extractors=[SpectralStatsExtractor()], **windows))
    assets = {o.path: o.asset_id for o in first.added}
    assert len(assets) == 3
    before = _catalogue_rows(store)
    os.utime(songs[0], ns=(time.time_ns(), time.time_ns()))  # found by its hash this time
    make_song("Band - New.wav", seed=510, seconds=4.0)

    spectral, debug = _Seen(SpectralStatsExtractor()), _Seen(DebugExtractor())
    second = run_ingest(store, [music], _options(extractors=[spectral, debug], **windows))
    assert [Path(o.path).name for o in second.added] == ["Band - New.wav"]
    assert {o.path: o.asset_id for o in second.updated} == assets
    assert {o.reason for o in second.updated} == {"added facts of debug 1"}
    assert second.skipped == second.quarantined == second.failed == []
    assert spectral.files == ["Band - New.wav"]
    assert sorted(debug.files) == sorted([*(Path(p).name for p in assets), "Band - New.wav"])
    after = _catalogue_rows(store)
    stored = set(assets.values())
    assert {r for r in after if r[0] in stored and r[2] != "debug"} == before
    for asset in stored:
        window_ids = [r[1] for r in before if r[0] == asset and r[1] != asset]
        assert len(window_ids) == len(plan_windows(4.0, window_s=2.0, hop_s=1.0))
        # fingerprint and descriptor on the asset, an embedding on each stored window
        debug_on = sorted(r[1] for r in after if r[0] == asset and r[2] == "debug")
        assert debug_on == sorted([asset, asset, *window_ids])
    with store.connection() as conn:
        with_postings = conn.execute(
            "SELECT count(DISTINCT asset_id) FROM fingerprint_posting"
        ).fetchone()[0]
        [debug_vectors] = [t for t in queries.vector_tables(conn) if t["model_name"] == "debug"]
    assert with_postings == 4 and debug_vectors["rows"] == 4 * 3

    counts = table_counts(store.dsn)
    third = run_ingest(
        store, [music], _options(extractors=[SpectralStatsExtractor(), DebugExtractor()], **windows)
    )
    assert len(third.skipped) == 4 and third.added == third.updated == []
    assert all(o.reason.startswith("already stored") for o in third.skipped)
    assert table_counts(store.dsn) == counts


def test_a_failed_update_leaves_the_stored_file_as_it_was(
    store, make_song, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refusing one file's update rolls all of it back (its new windows too); the
    file is reported, not quarantined; the others are updated, and it is on the next run."""
    music = tmp_path / "music"
    for i in range(3):
        make_song(f"Band - Song {i}.wav", seed=520 + i, seconds=4.0)
    first = run_ingest(store, [music], _options())  # 10 s windows: one per file
    victim = first.added[0]
    before = _catalogue_rows(store)
    insert_facts = catalog._insert_facts

    def refuse(conn, asset_id, *args):
        insert_facts(conn, asset_id, *args)
        if asset_id == victim.asset_id:
            raise psycopg.errors.NumericValueOutOfRange("value out of range")

    monkeypatch.setattr(catalog, "_insert_facts", refuse)
    options = _options(
        extractors=[DebugExtractor(), SpectralStatsExtractor()], window_s=2.0, hop_s=1.0
    )
    second = run_ingest(store, [music], options)
    [failed] = second.failed
    assert failed.path == victim.path and failed.asset_id == victim.asset_id
    assert "out of range" in failed.reason and "not quarantined" in failed.reason
    assert len(second.updated) == 2 and second.quarantined == second.skipped == []
    new_windows = len(plan_windows(4.0, window_s=2.0, hop_s=1.0))
    assert all(
        o.reason == f"added facts of spectral-stats 1; {new_windows} new windows"
        for o in second.updated
    )
    mine = {r for r in _catalogue_rows(store) if r[0] == victim.asset_id}
    assert mine == {r for r in before if r[0] == victim.asset_id}
    with store.connection() as conn:
        assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0

    monkeypatch.undo()
    third = run_ingest(store, [music], options)
    assert [o.path for o in third.updated] == [victim.path] and len(third.skipped) == 2


def test_a_stored_file_removed_during_its_update_fails_alone(
    store, make_song, tmp_path: Path
) -> None:
    """`catalog remove` from another process between the plan and the write: that file is
    reported as failed, the run goes on, and the next run stores it anew."""
    music = tmp_path / "music"
    for i in range(3):
        make_song(f"Band - Song {i}.wav", seed=530 + i, seconds=3.0)
    first = run_ingest(store, [music], _options(extractors=[SpectralStatsExtractor()]))
    victim = first.added[0]

    class Remover(_Seen):
        def extract_batch(self, items):
            with store.transaction() as conn:
                catalog.remove_assets(conn, [victim.asset_id])
            return super().extract_batch(items)

    options = _options(extractors=[SpectralStatsExtractor(), Remover(DebugExtractor())])
    second = run_ingest(store, [music], options)
    [failed] = second.failed
    assert failed.path == victim.path and "removed from the catalogue" in failed.reason
    assert len(second.updated) == 2
    third = run_ingest(store, [music], options)
    assert [o.path for o in third.added] == [victim.path]


def test_catalog_add_reports_updated_files(db_dsn: str, make_song, tmp_path: Path) -> None:
    music = tmp_path / "music"
    one = make_song("Band - One.wav", seed=530)
    make_song("Band - Two.wav", seed=531)
    runner = CliRunner()

    def add(*args: str):
        result = runner.invoke(catalog_app, ["--dsn", db_dsn, "add", *args, "-j", "1"])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    add(str(music), "-x", "debug")
    summary = json.loads(add(str(one), "-x", "debug,spectral-stats", "--json"))
    assert summary["added"] == summary["skipped"] == summary["failed"] == []
    [updated] = summary["updated"]
    assert updated["path"] == str(one) and updated["reason"] == "added facts of spectral-stats 1"
    text = add(str(music), "-x", "spectral-stats")
    assert "0 added, 1 skipped, 0 quarantined, 1 updated of 2 audio files" in text
    assert "updated: added facts of spectral-stats 1: 1" in text


def _run_cli(
    cli_process,
    dsn: str,
    folders: list[Path],
    *extra: str,
    plugin_dir=None,
    extractor: str = "debug",
):
    return cli_process(
        dsn, "add", *map(str, folders), "-x", extractor, "-j", "1", *extra, plugin_dir=plugin_dir
    )


def test_concurrent_ingests_of_overlapping_folders(
    db_dsn: str, make_song, tmp_path: Path, cli_process, table_counts
) -> None:
    for i in range(6):
        make_song(f"d1/Artist - Song {i}.wav", seed=100 + i)
        make_song(f"d2/Other - Song {i}.flac", seed=200 + i)
        make_song(f"d3/Third - Song {i}.ogg", seed=300 + i)
    music = tmp_path / "music"
    (music / "d3" / "dup-of-d1.wav").write_bytes(
        (music / "d1" / "Artist - Song 0.wav").read_bytes()
    )
    make_song("d3/Artist - Song 1.mp3", seed=999)  # another file of a d1 song
    first = _run_cli(cli_process, db_dsn, [music / "d1", music / "d2"])
    second = _run_cli(cli_process, db_dsn, [music / "d2", music / "d3", music / "d1"])
    for proc in (first, second):
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stdout + stderr
    counts = table_counts(db_dsn)
    distinct_contents = 6 * 3 + 1
    assert counts["assets"] == distinct_contents
    assert counts["media_entity"] == 18  # the mp3 joined "Artist - Song 1"
    with connect(db_dsn) as conn:
        dupes = conn.execute(
            "SELECT content_hash FROM audio_object WHERE object_type = 'asset' "
            "GROUP BY 1 HAVING count(*) > 1"
        ).fetchall()
        runs = conn.execute("SELECT status FROM ingest_run").fetchall()
    assert dupes == [] and runs == [("finished",), ("finished",)]


def test_kill_9_leaves_whole_files_and_rerun_finishes(
    db_dsn: str, make_song, tmp_path: Path, cli_process, wait_for, table_counts
) -> None:
    n = 16
    for i in range(n):
        make_song(f"Kill - Song {i:02d}.wav", seed=400 + i, seconds=4.0)
    music = tmp_path / "music"
    args = ("--batch-size", "1", "--window", "2", "--hop", "1")
    proc = _run_cli(
        cli_process,
        db_dsn,
        [music],
        *args,
        plugin_dir=tmp_path,
        extractor="slow_extractor:SlowDebug",
    )
    try:
        assert wait_for(
            lambda: proc.poll() is not None or table_counts(db_dsn)["assets"] >= 3, timeout=60
        )
        assert proc.poll() is None, proc.communicate()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    with connect(db_dsn) as conn:
        conn.execute("SELECT pg_sleep(0.2)")  # let the server notice the dead connections
    partial = table_counts(db_dsn)
    assert 3 <= partial["assets"] < n
    _assert_whole_files(db_dsn)

    rerun = _run_cli(
        cli_process,
        db_dsn,
        [music],
        *args,
        plugin_dir=tmp_path,
        extractor="slow_extractor:SlowDebug",
    )
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stdout + stderr
    assert table_counts(db_dsn)["assets"] == n
    _assert_whole_files(db_dsn)
    with connect(db_dsn) as conn:
        statuses = [
            r[0] for r in conn.execute("SELECT status FROM ingest_run ORDER BY run_id").fetchall()
        ]
    assert statuses == ["interrupted", "finished"]


def _assert_whole_files(dsn: str) -> None:
    """Every stored song has its files; every file all its windows and facts."""
    expected_windows = len(plan_windows(4.0, window_s=2.0, hop_s=1.0))
    with connect(dsn) as conn:
        rows = conn.execute(
            "SELECT a.object_id, "
            "(SELECT count(*) FROM audio_object w WHERE w.parent_object_id = a.object_id), "
            "(SELECT count(*) FROM feature_fact f JOIN audio_object w ON w.object_id = f.object_id "
            " WHERE w.parent_object_id = a.object_id), "
            "(SELECT count(*) FROM feature_fact f WHERE f.object_id = a.object_id), "
            "(SELECT count(*) FROM fingerprint_posting p WHERE p.asset_id = a.object_id) "
            "FROM audio_object a WHERE a.object_type = 'asset'"
        ).fetchall()
        songless = conn.execute(
            "SELECT count(*) FROM media_entity e WHERE NOT EXISTS "
            "(SELECT 1 FROM audio_object a WHERE a.entity_id = e.entity_id)"
        ).fetchone()[0]
    assert songless == 0
    facts_per_asset = 3 if fpcalc_version() else 2  # debug fingerprint + descriptor (+ chromaprint)
    for asset_id, windows, window_facts, asset_facts, postings in rows:
        assert (windows, window_facts, asset_facts, postings) == (
            expected_windows,
            expected_windows,
            facts_per_asset,
            expected_windows,
        ), asset_id


def test_a_file_that_crashes_its_decoder_is_isolated(store, make_song, tmp_path: Path) -> None:
    """A worker dying (a decoder segfault) breaks the pool: the files in flight are retried one
    at a time, the one that kills a worker alone is quarantined, the others are stored."""
    from polymuse.ingest import pipeline

    class CrashingRun(pipeline._Run):
        def _submit_decode(self, entry, digest):
            if "crash" in Path(entry.path).name:
                return self.executor.submit(os._exit, 1)
            return super()._submit_decode(entry, digest)

    for i in range(5):
        make_song(f"fine{i}.wav", seed=70 + i)
    make_song("crash.wav", seed=80)
    summary = CrashingRun(store, _options(jobs=2), None).run([tmp_path / "music"])
    assert sorted(Path(o.path).name for o in summary.added) == [f"fine{i}.wav" for i in range(5)]
    [bad] = summary.quarantined
    assert bad.path.endswith("crash.wav") and "crashed the worker" in bad.reason
