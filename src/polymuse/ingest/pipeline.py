"""`run_ingest`: walk, resume, hash, decode, extract in batches, write each file atomically.

Flow. The main process walks the paths and drops files the catalogue already holds with the
same size and mtime (no hashing). Worker processes hash the rest; stored content hashes are
skipped. Workers then decode, window, read tags and compute Chromaprint; the main process
collects decoded files into batches, runs every extractor once per batch (inference batched
across files) while the workers decode the next files, and writes each file in its own
transaction. Bad files are recorded in the quarantine and never reach the catalogue.

Safety. A file's song, asset, windows, facts, vectors and postings are written in one
transaction, so a killed ingest leaves whole files only; re-running resumes (stored hashes are
skipped). Concurrent ingests serialise the find-or-create-song step with an advisory lock and
rely on the unique content hash, so overlapping folders give no duplicates.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import numpy as np
import psycopg
from psycopg_pool import PoolTimeout

from polymuse.errors import StoreError, UserError
from polymuse.ingest.decode import IngestItem, Rejected, decode_file, hash_file, init_worker
from polymuse.ingest.extractors import Extractor, Fact
from polymuse.ingest.walk import FileEntry, walk
from polymuse.store import Store, catalog
from polymuse.store.pool import scrub
from polymuse.tools import chromaprint

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 22050
CHROMAPRINT_SET = "chromaprint-raw-120s"
_INT32 = (-(2**31), 2**32)


@dataclass(frozen=True)
class IngestOptions:
    """How to ingest. `extractors` are instances (see `build_extractor`)."""

    set_name: str | None = None
    extractors: Sequence[Extractor] = ()
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    batch_size: int = 16
    batch_audio_s: float = 1800.0
    window_s: float = 10.0
    hop_s: float = 5.0
    chromaprint: bool = True
    quarantine_dir: Path | None = None
    retry_quarantined: bool = False


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file."""

    path: str
    status: Literal["added", "skipped", "quarantined"]
    reason: str = ""
    song_id: int | None = None
    asset_id: int | None = None
    duration_s: float = 0.0


@dataclass
class IngestSummary:
    """The result of a run, also recorded in `ingest_run`."""

    run_id: int
    files_seen: int = 0
    ignored: int = 0
    outcomes: list[FileOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def of(self, status: str) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def added(self) -> list[FileOutcome]:
        return self.of("added")

    @property
    def skipped(self) -> list[FileOutcome]:
        return self.of("skipped")

    @property
    def quarantined(self) -> list[FileOutcome]:
        return self.of("quarantined")

    @property
    def audio_s(self) -> float:
        """Seconds of audio added in this run."""
        return sum(o.duration_s for o in self.added)


@dataclass(frozen=True)
class ProgressEvent:
    """Sent after each file: which stage, how far, and the running summary."""

    stage: Literal["hash", "ingest"]
    done: int
    total: int
    summary: IngestSummary


ProgressCallback = Callable[[ProgressEvent], None]


def run_ingest(
    store: Store,
    paths: Sequence[str | Path],
    options: IngestOptions | None = None,
    *,
    on_progress: ProgressCallback | None = None,
) -> IngestSummary:
    """Add the audio files under `paths` to the catalogue; see the module docstring."""
    return _Run(store, options or IngestOptions(), on_progress).run(paths)


class _Run:
    def __init__(
        self, store: Store, options: IngestOptions, on_progress: ProgressCallback | None
    ) -> None:
        _check_extractors(options.extractors)
        self.store = store
        self.options = options
        self.on_progress = on_progress or (lambda event: None)
        self.fpcalc = chromaprint.fpcalc_version() if options.chromaprint else None
        rates = [e.sample_rate for e in options.extractors if e.sample_rate]
        self.sample_rate = max(rates, default=DEFAULT_SAMPLE_RATE)
        self.vector_tables: dict[tuple[str, str, str], str] = {}
        self.summary = IngestSummary(run_id=0)
        self.executor: ProcessPoolExecutor | None = None
        self.total = self.done = 0

    # -- stages ---------------------------------------------------------------------------

    def run(self, paths: Sequence[str | Path]) -> IngestSummary:
        started = time.monotonic()
        entries, ignored = walk(paths)
        self.summary.files_seen, self.summary.ignored = len(entries), ignored
        if self.options.chromaprint and self.fpcalc is None:
            self.summary.notes.append(
                "fpcalc not found (Debian: libchromaprint-tools): files of one song are joined "
                "by their tags or names only"
            )
        with self.store.transaction("starting the ingest run") as conn:
            self.summary.run_id = catalog.start_run(
                conn,
                roots=[str(Path(p).expanduser().resolve()) for p in paths],
                set_name=self.options.set_name,
                extractors=[
                    {"name": e.name, "version": e.version, "feature_set": e.feature_set}
                    for e in self.options.extractors
                ],
                options={
                    "window_s": self.options.window_s,
                    "hop_s": self.options.hop_s,
                    "sample_rate": self.sample_rate,
                    "chromaprint": self.fpcalc,
                },
            )
        status: Literal["finished", "failed", "interrupted"] = "failed"
        try:
            todo = self._resume(entries)
            if todo:
                self.executor = self._new_executor()
                hashed = self._hash(todo)
                self._ingest(self._drop_known_hashes(hashed))
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if self.executor is not None:
                self.executor.shutdown(wait=status == "finished", cancel_futures=True)
            self.summary.elapsed_s = time.monotonic() - started
            self._finish(status)
        return self.summary

    def _resume(self, entries: list[FileEntry]) -> list[FileEntry]:
        """Skip files stored (or quarantined) with the same size and mtime, without hashing."""
        with self.store.connection("checking what is stored") as conn:
            known = catalog.known_files(conn, [e.path for e in entries])
        todo = []
        for entry in entries:
            seen = known.get(entry.path)
            unchanged = seen is not None and (seen.size, seen.mtime_ns) == (
                entry.size,
                entry.mtime_ns,
            )
            if unchanged and seen.kind == "asset":
                self._outcome(FileOutcome(entry.path, "skipped", f"already stored ({seen.detail})"))
            elif unchanged and not self.options.retry_quarantined:
                self._outcome(
                    FileOutcome(entry.path, "skipped", f"quarantined before: {seen.detail}")
                )
            elif entry.size == 0:
                self._reject(
                    Rejected(entry.path, None, 0, entry.mtime_ns, "read", "empty file (0 bytes)")
                )
            else:
                todo.append(entry)
        return todo

    def _hash(self, entries: list[FileEntry]) -> list[tuple[FileEntry, str]]:
        assert self.executor is not None
        hashed = []
        self.on_progress(ProgressEvent("hash", 0, len(entries), self.summary))
        chunk = max(1, min(32, len(entries) // (4 * self.options.jobs) or 1))
        for done, (entry, digest, error) in enumerate(
            self.executor.map(hash_file, entries, chunksize=chunk), start=1
        ):
            if digest is None:
                self._reject(
                    Rejected(
                        entry.path, None, entry.size, entry.mtime_ns, "read", error or "cannot read"
                    )
                )
            else:
                hashed.append((entry, digest))
            self.on_progress(ProgressEvent("hash", done, len(entries), self.summary))
        return hashed

    def _drop_known_hashes(
        self, hashed: list[tuple[FileEntry, str]]
    ) -> list[tuple[FileEntry, str]]:
        """Skip content already stored (and move the stored path if the file moved)."""
        digests = [d for _, d in hashed]
        with self.store.transaction("checking stored content") as conn:
            stored = catalog.assets_by_hash(conn, digests)
            bad = (
                {} if self.options.retry_quarantined else catalog.quarantined_hashes(conn, digests)
            )
            todo, first_seen = [], {}
            for entry, digest in hashed:
                if digest in stored:
                    asset_id, old_path = stored[digest]
                    if old_path != entry.path and not Path(old_path).exists():
                        catalog.relocate_asset(
                            conn,
                            asset_id,
                            path=entry.path,
                            size=entry.size,
                            mtime_ns=entry.mtime_ns,
                        )
                        reason = f"already stored (asset {asset_id}); moved from {old_path}"
                        stored[digest] = (asset_id, entry.path)
                    elif old_path == entry.path:
                        reason = f"already stored (asset {asset_id}; file touched, same content)"
                        catalog.relocate_asset(
                            conn,
                            asset_id,
                            path=entry.path,
                            size=entry.size,
                            mtime_ns=entry.mtime_ns,
                        )
                    else:
                        reason = f"same content as {old_path} (asset {asset_id})"
                    self._outcome(FileOutcome(entry.path, "skipped", reason))
                elif digest in bad:
                    self._outcome(
                        FileOutcome(entry.path, "skipped", f"quarantined before: {bad[digest]}")
                    )
                elif digest in first_seen:
                    self._outcome(
                        FileOutcome(entry.path, "skipped", f"same content as {first_seen[digest]}")
                    )
                else:
                    first_seen[digest] = entry.path
                    todo.append((entry, digest))
        return todo

    def _ingest(self, todo: list[tuple[FileEntry, str]]) -> None:
        """Decode in the workers, extract and write in batches here, overlapping the two."""
        self.total, self.done = len(todo), 0
        self.on_progress(ProgressEvent("ingest", 0, self.total, self.summary))
        queue: Iterator[tuple[FileEntry, str]] = iter(todo)
        pending: dict[Future, tuple[FileEntry, str]] = {}
        # After a worker crash, the files that were in flight run one at a time: a file that
        # crashes a worker alone is the culprit and is quarantined; the others go through.
        suspects: list[tuple[FileEntry, str]] = []
        suspect_set: set[tuple[FileEntry, str]] = set()
        batch: list[IngestItem] = []
        in_flight = 2 * self.options.jobs + self.options.batch_size

        def submit() -> None:
            nonlocal queue
            isolating = suspects or any(job in suspect_set for job in pending.values())
            while len(pending) < (1 if isolating else in_flight):
                from_suspects = bool(suspects)
                job = suspects.pop(0) if from_suspects else next(queue, None)
                if job is None:
                    return
                try:
                    pending[self._submit_decode(*job)] = job
                except BrokenProcessPool:
                    # The pool died since the last wait: put the job back; the futures in
                    # flight report the crash, or, with none left, start a new pool now.
                    if from_suspects:
                        suspects.insert(0, job)
                    else:
                        queue = itertools.chain([job], queue)
                    if pending:
                        return
                    self._restart_executor()

        submit()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            crashed = []
            for future in finished:
                job = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    crashed.append(job)
                    continue
                suspect_set.discard(job)
                if isinstance(result, Rejected):
                    self._reject(result)
                else:
                    batch.append(result)
            if crashed:
                crashed += pending.values()  # the pool is gone: everything in flight failed
                pending.clear()
                if len(crashed) == 1 and crashed[0] in suspect_set:
                    entry, digest = crashed[0]
                    self._reject(
                        Rejected(
                            entry.path,
                            digest,
                            entry.size,
                            entry.mtime_ns,
                            "decode",
                            "decoding crashed the worker process",
                        )
                    )
                else:
                    suspects.extend(crashed)
                    suspect_set.update(crashed)
                self._restart_executor()
            submit()
            audio_s = sum(item.duration_s for item in batch)
            if batch and (
                len(batch) >= self.options.batch_size
                or audio_s >= self.options.batch_audio_s
                or not pending
            ):
                self._flush(batch)
                batch = []
                submit()

    def _flush(self, batch: list[IngestItem]) -> None:
        facts, failures = self._extract(batch)
        for item, item_facts in zip(batch, facts, strict=True):
            if item.path in failures:
                self._reject(
                    Rejected(
                        item.path,
                        item.content_hash,
                        item.size,
                        item.mtime_ns,
                        "extract",
                        failures[item.path],
                    )
                )
                continue
            self._write(item, item_facts)

    def _extract(
        self, batch: list[IngestItem]
    ) -> tuple[list[list[catalog.FactRecord]], dict[str, str]]:
        """Every extractor once over the batch; on failure, item by item to isolate bad files."""
        records: list[list[catalog.FactRecord]] = [[] for _ in batch]
        failures: dict[str, str] = {}
        for extractor in self.options.extractors:
            live = [i for i, item in enumerate(batch) if item.path not in failures]
            if not live:
                break
            try:
                outputs = _call(extractor, [batch[i] for i in live])
                groups = [(live, outputs)]
            except Exception as exc:  # noqa: BLE001 - any extractor failure: retry one by one
                if len(live) == 1:
                    failures[batch[live[0]].path] = f"{extractor.name}: {_describe(exc)}"
                    continue
                log.info("%s failed on a batch (%s); retrying file by file", extractor.name, exc)
                groups = []
                for i in live:
                    try:
                        groups.append(([i], _call(extractor, [batch[i]])))
                    except Exception as one:  # noqa: BLE001
                        failures[batch[i].path] = f"{extractor.name}: {_describe(one)}"
            for indices, outputs in groups:
                for i, facts in zip(indices, outputs, strict=True):
                    try:
                        records[i].extend(_records(extractor, facts, batch[i]))
                    except ValueError as exc:
                        failures[batch[i].path] = f"{extractor.name}: {exc}"
        for item, item_records in zip(batch, records, strict=True):
            if item.chromaprint is not None and self.fpcalc:
                item_records.append(
                    catalog.FactRecord(
                        "fingerprint",
                        "chromaprint",
                        f"fpcalc-{self.fpcalc}",
                        CHROMAPRINT_SET,
                        payload={"items": len(item.chromaprint), "algorithm": 2},
                    )
                )
        self._ensure_vector_tables(r for rs in records for r in rs)
        return records, failures

    def _ensure_vector_tables(self, records: Iterator[catalog.FactRecord]) -> None:
        for record in records:
            key = (record.model_name, record.model_version, record.feature_set_name)
            if record.feature_type != "embedding" or key in self.vector_tables:
                continue
            assert record.vector is not None
            with self.store.transaction("creating a vector table") as conn:
                self.vector_tables[key] = catalog.ensure_vector_table(
                    conn, *key, int(record.vector.shape[0])
                )

    def _write(self, item: IngestItem, facts: list[catalog.FactRecord]) -> None:
        asset = catalog.AssetRecord(
            path=item.path,
            content_hash=item.content_hash,
            size=item.size,
            mtime_ns=item.mtime_ns,
            duration_s=item.duration_s,
            sample_rate=item.native_rate,
            channels=item.channels,
            codec=item.codec,
            container=item.container,
            tags=item.tags,
            song=item.song,
            windows=[(w.index, w.start_s, w.end_s) for w in item.windows],
            chromaprint=item.chromaprint,
        )
        try:
            with self.store.pool.connection() as conn, conn.transaction():
                result = catalog.add_asset(
                    conn,
                    asset,
                    facts,
                    run_id=self.summary.run_id,
                    set_name=self.options.set_name,
                    vector_tables=self.vector_tables,
                )
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            # This file's values were refused (e.g. out of range): the file, not the run, fails.
            self._reject(
                Rejected(
                    item.path,
                    item.content_hash,
                    item.size,
                    item.mtime_ns,
                    "write",
                    f"refused by the database: {str(exc).strip()}",
                )
            )
            return
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(
                f"writing {item.path} to {self.store.where}: "
                f"{scrub(str(exc).strip(), self.store.dsn)}"
            ) from None
        if result.status == "duplicate":
            self._outcome(
                FileOutcome(
                    item.path,
                    "skipped",
                    f"same content as {result.existing_path} "
                    f"(asset {result.asset_id}, stored by another run)",
                )
            )
        else:
            how = {
                "new": "new song",
                "tags": "joined song by tags",
                "chromaprint": "joined song by Chromaprint",
            }[result.matched_by or "new"]
            self._outcome(
                FileOutcome(
                    item.path, "added", how, result.song_id, result.asset_id, item.duration_s
                )
            )
        if item.chromaprint_note:
            log.info("%s: %s", item.path, item.chromaprint_note)

    # -- helpers --------------------------------------------------------------------------

    def _reject(self, rejected: Rejected) -> None:
        moved_to = None
        if self.options.quarantine_dir is not None and Path(rejected.path).exists():
            moved_to = _move_aside(Path(rejected.path), self.options.quarantine_dir)
        with self.store.transaction("recording a quarantined file") as conn:
            catalog.record_quarantine(
                conn,
                path=rejected.path,
                content_hash=rejected.content_hash,
                size=rejected.size,
                mtime_ns=rejected.mtime_ns,
                stage=rejected.stage,
                reason=rejected.reason,
                run_id=self.summary.run_id,
                moved_to=moved_to,
            )
        reason = rejected.reason + (f" (moved to {moved_to})" if moved_to else "")
        self._outcome(FileOutcome(rejected.path, "quarantined", reason))

    def _outcome(self, outcome: FileOutcome) -> None:
        self.summary.outcomes.append(outcome)
        if self.total:  # the decode stage: files before it are not in the progress total
            self.done += 1
            self.on_progress(ProgressEvent("ingest", self.done, self.total, self.summary))

    def _submit_decode(self, entry: FileEntry, digest: str) -> Future:
        assert self.executor is not None
        return self.executor.submit(
            decode_file,
            entry,
            digest,
            sample_rate=self.sample_rate,
            window_s=self.options.window_s,
            hop_s=self.options.hop_s,
            with_chromaprint=self.fpcalc is not None,
        )

    def _new_executor(self) -> ProcessPoolExecutor:
        # spawn, not fork: the parent holds a connection pool with threads.
        return ProcessPoolExecutor(
            max_workers=max(1, self.options.jobs),
            mp_context=get_context("spawn"),
            initializer=init_worker,
        )

    def _restart_executor(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._new_executor()

    def _finish(self, status: Literal["finished", "failed", "interrupted"]) -> None:
        s = self.summary
        try:
            with self.store.transaction("closing the ingest run") as conn:
                catalog.finish_run(
                    conn,
                    s.run_id,
                    status=status,
                    files_seen=s.files_seen,
                    added=len(s.added),
                    skipped=len(s.skipped),
                    quarantined=len(s.quarantined),
                    audio_seconds=s.audio_s,
                    notes=s.notes,
                )
        except StoreError as exc:
            log.warning("could not record the end of run %s: %s", s.run_id, exc)


def _check_extractors(extractors: Sequence[Extractor]) -> None:
    seen = set()
    for extractor in extractors:
        identity = (extractor.name, extractor.version, extractor.feature_set)
        if not all(isinstance(x, str) and x for x in identity):
            raise UserError(f"extractor {extractor!r} needs a name, version and feature_set")
        if extractor.name == "chromaprint" or identity in seen:
            raise UserError(f"extractor identity {identity} is reserved or given twice")
        seen.add(identity)


def _call(extractor: Extractor, items: list[IngestItem]) -> list[Sequence[Fact]]:
    outputs = list(extractor.extract_batch(items))
    if len(outputs) != len(items):
        raise ValueError(f"returned {len(outputs)} results for {len(items)} files")
    return outputs


def _records(
    extractor: Extractor, facts: Sequence[Fact], item: IngestItem
) -> list[catalog.FactRecord]:
    """Validate an extractor's facts for one item and attach its model identity."""
    records, targets = [], set()
    for fact in facts:
        if fact.kind not in ("fingerprint", "embedding", "descriptor"):
            raise ValueError(f"unknown fact kind {fact.kind!r}")
        if fact.window is not None and not 0 <= fact.window < len(item.windows):
            raise ValueError(f"window {fact.window} out of range (file has {len(item.windows)})")
        if (fact.window, fact.kind) in targets:
            where = "the file" if fact.window is None else f"window {fact.window}"
            raise ValueError(f"two {fact.kind} facts for {where}; one per kind and extractor")
        targets.add((fact.window, fact.kind))
        vector = None
        if fact.vector is not None or fact.kind == "embedding":
            vector = np.asarray(fact.vector, dtype=np.float32)
            if vector.ndim != 1 or not len(vector) or not np.isfinite(vector).all():
                raise ValueError(f"embedding must be a finite 1-D vector, got shape {vector.shape}")
        hashes = offsets = None
        if fact.hashes is not None or fact.offsets is not None:
            hashes, offsets = np.asarray(fact.hashes), np.asarray(fact.offsets)
            if hashes.shape != offsets.shape or hashes.ndim != 1:
                raise ValueError("hashes and offsets must be 1-D and of equal length")
            if len(hashes) and (
                hashes.min() < _INT32[0]
                or hashes.max() >= _INT32[1]
                or offsets.min() < _INT32[0]
                or offsets.max() >= 2**31
            ):
                raise ValueError("hashes must fit 32 bits and offsets int32")
            hashes = hashes.astype(np.int64).astype(np.uint32).view(np.int32)
            offsets = offsets.astype(np.int32)
        records.append(
            catalog.FactRecord(
                fact.kind,
                extractor.name,
                extractor.version,
                extractor.feature_set,
                window=fact.window,
                vector=vector,
                value=fact.value,
                payload=fact.payload,
                hashes=hashes,
                offsets=offsets,
            )
        )
    return records


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _move_aside(path: Path, folder: Path) -> str | None:
    """Move a bad file into the quarantine folder (never overwriting); its new path or None."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    try:
        shutil.move(str(path), target)
    except OSError as exc:
        log.warning("could not move %s to %s: %s", path, folder, exc)
        return None
    return str(target)
