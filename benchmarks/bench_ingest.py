"""Catalogue ingest benchmark: the directive's 74-file folder, resume, batching, throughput.

    .venv/bin/python benchmarks/bench_ingest.py [--seconds 30] [--dsn DSN] [--keep DIR]

1. Acceptance: 68 valid short songs in mixed formats (wav, flac, ogg, mp3, aiff, m4a) plus the
   corrupt files (empty .wav, text named .wav, truncated mp3, random bytes .flac, zero-length
   .ogg, truncated wav): no crash, every corrupt file quarantined with a reason, 100 % of the
   valid files stored.
2. First run vs second run (in-process, and the CLI in a fresh process including start-up).
3. Batched vs per-file extractor inference on the same decoded files (spectral-stats, and
   musicnn when its weights are installed).
4. Throughput of the fingerprint-only path (Chromaprint, no embedding) and of the default
   path, in songs/min and × real time.

Everything runs in a temporary POLYMUSE_HOME with its own embedded server (stopped at the
end) unless --dsn is given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from psycopg import sql

from polymuse.ingest import Fact, IngestItem, IngestOptions, run_ingest
from polymuse.ingest.decode import decode_file, hash_file
from polymuse.ingest.extractors import SpectralStatsExtractor
from polymuse.ingest.testdata import write_corpus
from polymuse.ingest.walk import walk
from polymuse.settings import Settings
from polymuse.store import EmbeddedServer, open_store
from polymuse.store.pool import connect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each valid song")
    parser.add_argument("--dsn", help="external PostgreSQL instead of a temporary embedded one")
    parser.add_argument("--keep", type=Path, help="generate the folder here and keep it")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the batching timing")
    parser.add_argument(
        "--model-files",
        type=int,
        default=24,
        help="files used for the (slow) neural batching timing",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="polymuse-bench-"))
    folder = args.keep or work / "music"
    print(f"generating 68 valid songs of {args.seconds:.0f} s + corrupt files in {folder} ...")
    corpus = write_corpus(folder, n_valid=68, seconds=args.seconds)
    audio_s = corpus.seconds
    n_files = len(corpus.valid) + len(corpus.corrupt)
    print(
        f"  {n_files} files: {len(corpus.valid)} valid ({audio_s / 60:.1f} min), "
        f"{len(corpus.corrupt)} corrupt"
    )

    server = None if args.dsn else EmbeddedServer(work / "home")
    started = time.perf_counter()
    base_dsn = args.dsn or server.ensure_running()
    print(f"database ready in {time.perf_counter() - started:.2f} s")
    rows: list[tuple[str, str]] = []
    try:
        dsn = _fresh_database(base_dsn, "bench_default")
        with open_store(Settings(home=work / "home", dsn=dsn)) as store:
            opts = IngestOptions(extractors=[SpectralStatsExtractor()])
            first = _timed(lambda: run_ingest(store, [folder], opts))
            summary, first_s = first
            valid_in = {o.path for o in summary.added} == {str(p) for p in corpus.valid}
            bad = {Path(o.path).name: o.reason for o in summary.quarantined}
            print("\n1. acceptance (74-file folder)")
            for name, reason in sorted(bad.items()):
                print(f"   quarantined {name:<12} {reason}")
            ok = valid_in and set(bad) == {p.name for p in corpus.corrupt}
            print(
                f"   valid stored: {len(summary.added)}/{len(corpus.valid)} "
                f"({100 * len(summary.added) / len(corpus.valid):.0f} %), corrupt quarantined "
                f"{len(bad)}/{len(corpus.corrupt)}, no crash -> {'PASS' if ok else 'FAIL'}"
            )
            second, second_s = _timed(lambda: run_ingest(store, [folder], opts))
        cli_s = _cli_second_run(dsn, folder, work / "home")
        print("\n2. resume")
        print(
            f"   first run  {first_s:6.2f} s  added {len(summary.added)}, "
            f"quarantined {len(summary.quarantined)}"
        )
        print(
            f"   second run {second_s:6.2f} s  added {len(second.added)}, skipped "
            f"{len(second.skipped)} (in-process); CLI in a new process incl. start-up: "
            f"{cli_s:.2f} s"
        )
        rows += [
            ("first run (spectral-stats + Chromaprint)", f"{first_s:.2f} s"),
            ("second run, in-process", f"{second_s:.2f} s"),
            ("second run, CLI incl. Python start-up", f"{cli_s:.2f} s"),
        ]

        print("\n3. batched vs per-file extractor inference (same decoded files)")
        for label, make in _extractors():
            try:
                extractor = make()
            except Exception as exc:  # noqa: BLE001 - optional backends may be missing
                print(f"   {label}: skipped ({type(exc).__name__}: {exc})")
                continue
            items = _decode(corpus.valid, extractor.sample_rate or 22050)
            if isinstance(extractor, MusicnnBench):
                items = items[: len(items) if extractor.clip else args.model_files]
                extractor.extract_batch(items)  # fills the log-mel cache
            batched, per_file = _batch_timing(extractor, items, repeat=args.repeat)
            ratio = per_file / batched
            print(
                f"   {label}: batched {batched:.3f} s, per-file {per_file:.3f} s over "
                f"{len(items)} files -> batched is {ratio:.2f}x faster"
            )
            rows.append((f"batched speed-up, {label}", f"{ratio:.2f}x"))

        print("\n4. throughput")
        with open_store(
            Settings(home=work / "home", dsn=_fresh_database(base_dsn, "bench_fp"))
        ) as store:
            _, fp_s = _timed(lambda: run_ingest(store, [folder], IngestOptions(extractors=[])))
        for label, took in (
            ("fingerprint only (Chromaprint)", fp_s),
            ("default (spectral-stats + Chromaprint)", first_s),
        ):
            per_min = len(corpus.valid) / took * 60
            print(
                f"   {label}: {took:.2f} s -> {per_min:.0f} songs/min, "
                f"{audio_s / took:.0f}x real time ({os.cpu_count()} cores)"
            )
            rows.append(
                (
                    f"throughput, {label}",
                    f"{per_min:.0f} songs/min, {audio_s / took:.0f}x real time",
                )
            )
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)  # --keep folders live outside it
    print("\nsummary")
    for key, value in rows:
        print(f"  {key:<62} {value}")


def _timed(fn: Callable):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def _fresh_database(dsn: str, name: str) -> str:
    from psycopg import conninfo

    with connect(dsn) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return conninfo.make_conninfo(dsn, dbname=name)


def _cli_second_run(dsn: str, folder: Path, home: Path) -> float:
    code = "import sys; from polymuse.commands.catalog import app; app(sys.argv[1:])"
    env = {**os.environ, "POLYMUSE_HOME": str(home)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, "--dsn", dsn, "add", str(folder)],
        env=env,
        check=False,
        capture_output=True,
    )
    return time.perf_counter() - started


def _decode(paths: Sequence[Path], rate: int) -> list[IngestItem]:
    entries, _ = walk(paths)
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # libmpg123 warns on stderr about the first frames of some mp3s
    try:
        items = _decode_entries(entries, rate)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return items


def _decode_entries(entries, rate: int) -> list[IngestItem]:
    items = []
    for entry in entries:
        _, digest, _ = hash_file(entry)
        item = decode_file(
            entry, digest or "", sample_rate=rate, window_s=10.0, hop_s=5.0, with_chromaprint=False
        )
        if isinstance(item, IngestItem):
            items.append(item)
    return items


def _batch_timing(extractor, items: list[IngestItem], *, repeat: int) -> tuple[float, float]:
    extractor.extract_batch(items[:2])  # warm-up: lazy set-up, allocator
    batched = min(_timed(lambda: extractor.extract_batch(items))[1] for _ in range(repeat))
    per_file = min(
        _timed(lambda: [extractor.extract_batch([item]) for item in items])[1]
        for _ in range(repeat)
    )
    return batched, per_file


def _extractors() -> list[tuple[str, Callable]]:
    return [
        ("spectral-stats", SpectralStatsExtractor),
        ("musicnn, one 3 s clip per file (like CLAP)", lambda: MusicnnBench(clip=True)),
        ("musicnn, every 3 s patch of each file", MusicnnBench),
    ]


class MusicnnBench:
    """A musicnn embedding extractor written against the ingest protocol (benchmark only).

    Every 3 s patch of every file in the batch goes through the network together (`clip`:
    only the first patch of each file, one fixed-length input per file as CLAP takes). The log-mel
    front end is computed once per file and cached by content hash (it is per-file work either
    way), so the timing compares network inference: batched across files vs one call per file.
    """

    name, version, feature_set, sample_rate = "musicnn-bench", "MSD_musicnn", "penultimate", 16000

    def __init__(self, *, clip: bool = False) -> None:
        import torch

        from polymuse.tools.encoders.musicnn import MusicnnTagger

        self.clip = clip
        torch.set_num_threads(os.cpu_count() or 1)
        self.tagger = MusicnnTagger.from_package("MSD_musicnn")
        self._patches: dict[str, np.ndarray] = {}

    def extract_batch(self, items: Sequence[IngestItem]) -> list[list[Fact]]:
        patches = [self._patches_of(item) for item in items]
        _, embeddings = self.tagger.predict_patches(np.concatenate(patches), batch_size=64)
        bounds = np.cumsum([0] + [len(p) for p in patches])
        return [
            [Fact("embedding", None, embeddings[lo:hi].mean(axis=0))]
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]

    def _patches_of(self, item: IngestItem) -> np.ndarray:
        from polymuse.tools.encoders.musicnn import PATCH_FRAMES, log_mel, patch_starts

        if item.content_hash not in self._patches:
            mel = log_mel(item.audio_at(self.sample_rate), sample_rate=self.sample_rate)
            starts = patch_starts(len(mel))[: 1 if self.clip else None]
            self._patches[item.content_hash] = np.stack([mel[s : s + PATCH_FRAMES] for s in starts])
        return self._patches[item.content_hash]


if __name__ == "__main__":
    main()
