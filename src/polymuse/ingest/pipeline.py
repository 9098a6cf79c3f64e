"""`run_ingest`: walk, resume, hash, decode, extract in batches, write each file atomically.

Flow. The main process walks the paths and finds the files the catalogue already holds with
the same size and mtime (no hashing). Worker processes hash the rest; stored content hashes
are found the same way. A stored file is skipped if it has facts of every extractor asked for
(by model name, version and feature set); otherwise it is updated: decoded again, only the
missing extractors run, and their facts go onto the existing asset (reusing its windows of the
same span). Workers decode, window, read tags and compute Chromaprint (new files only); the
main process collects decoded files into batches, runs each extractor once per batch on the
files that need it (inference batched across files) while the workers decode the next files,
and writes each file in its own transaction. Bad new files are recorded in the quarantine and
never reach the catalogue; a stored file that fails to update is reported and left as it was.

Safety. A file's song, asset, windows, facts, vectors and postings (or an update's windows,
facts, vectors and postings) are written in one transaction, so a killed ingest leaves whole
files only; re-running resumes (complete stored files are skipped). Concurrent ingests
serialise the find-or-create-song step with an advisory lock, rely on the unique content hash,
and lock an asset while updating it, so overlapping folders give no duplicates.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Literal, TypeVar

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
T = TypeVar("T")
Identity = tuple[str, str, str]


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
    """What happened to one file.

    `added`: stored as a new asset; `updated`: stored before, got the facts of the extractors
    it lacked; `skipped`: nothing to do; `quarantined`: a bad new file, kept out of the
    catalogue; `failed`: a stored file that could not be updated (left as it was).
    """

    path: str
    status: Literal["added", "updated", "skipped", "quarantined", "failed"]
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
    def updated(self) -> list[FileOutcome]:
        return self.of("updated")

    @property
    def skipped(self) -> list[FileOutcome]:
        return self.of("skipped")

    @property
    def quarantined(self) -> list[FileOutcome]:
        return self.of("quarantined")

    @property
    def failed(self) -> list[FileOutcome]:
        return self.of("failed")

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


@dataclass(frozen=True)
class _Update:
    """A stored file lacking facts of some of the run's extractors."""

    asset_id: int
    extractors: tuple[Extractor, ...]
    note: str = ""


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
        self.by_identity = {_identity(e): e for e in options.extractors}
        self.updates: dict[str, _Update] = {}  # by path
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
            todo, updates = self._resume(entries)
            if todo or updates:
                self.executor = self._new_executor()
                new = self._drop_known_hashes(self._hash(todo)) if todo else []
                self._ingest(updates + new)
            self._join_set()
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

    def _join_set(self) -> None:
        """Put the songs of the stored files this run skipped or updated in `--set` too (new
        files joined it as they were written)."""
        stored = [
            o.asset_id
            for o in self.summary.outcomes
            if o.status in ("skipped", "updated") and o.asset_id is not None
        ]
        if self.options.set_name and stored:
            with self.store.transaction(f"adding stored songs to set {self.options.set_name}") as c:
                catalog.add_assets_to_set(c, self.options.set_name, stored)

    def _resume(
        self, entries: list[FileEntry]
    ) -> tuple[list[FileEntry], list[tuple[FileEntry, str]]]:
        """Files to hash, and stored files to update; skip the rest, without hashing.

        Files stored (or quarantined) with the same size and mtime are not hashed again.
        """
        with self.store.connection("checking what is stored") as conn:
            known = catalog.known_files(conn, [e.path for e in entries])
            stored = [k.asset_id for k in known.values() if k.asset_id is not None]
            missing = self._missing(conn, stored)
        todo, updates = [], []
        for entry in entries:
            seen = known.get(entry.path)
            unchanged = seen is not None and (seen.size, seen.mtime_ns) == (
                entry.size,
                entry.mtime_ns,
            )
            if unchanged and seen.kind == "asset" and seen.asset_id in missing:
                assert seen.content_hash is not None and seen.asset_id is not None
                self.updates[entry.path] = _Update(seen.asset_id, missing[seen.asset_id])
                updates.append((entry, seen.content_hash))
            elif unchanged and seen.kind == "asset":
                self._outcome(
                    FileOutcome(
                        entry.path,
                        "skipped",
                        f"already stored ({seen.detail})",
                        asset_id=seen.asset_id,
                    )
                )
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
        return todo, updates

    def _missing(
        self, conn: psycopg.Connection, asset_ids: list[int]
    ) -> dict[int, tuple[Extractor, ...]]:
        """asset id -> the run's extractors it has no facts of (complete assets left out)."""
        if not asset_ids or not self.by_identity:
            return {}
        gaps = catalog.missing_models(conn, asset_ids, list(self.by_identity))
        return {a: tuple(self.by_identity[m] for m in models) for a, models in gaps.items()}

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
        """Skip content already stored (and move the stored path if the file moved).

        A stored asset lacking facts of some extractors is updated from its first file here
        (unless `_resume` already planned to update it from its stored path).
        """
        digests = [d for _, d in hashed]
        with self.store.transaction("checking stored content") as conn:
            stored = catalog.assets_by_hash(conn, digests)
            planned = {u.asset_id for u in self.updates.values()}
            missing = self._missing(conn, [a for a, _ in stored.values() if a not in planned])
            bad = (
                {} if self.options.retry_quarantined else catalog.quarantined_hashes(conn, digests)
            )
            todo, first_seen = [], {}
            for entry, digest in hashed:
                if digest in stored:
                    asset_id, old_path = stored[digest]
                    note = ""
                    if old_path != entry.path and not Path(old_path).exists():
                        catalog.relocate_asset(
                            conn,
                            asset_id,
                            path=entry.path,
                            size=entry.size,
                            mtime_ns=entry.mtime_ns,
                        )
                        note = f"moved from {old_path}"
                        reason = f"already stored (asset {asset_id}); {note}"
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
                        note = f"same content as {old_path}"
                        reason = f"{note} (asset {asset_id})"
                    gaps = missing.pop(asset_id, None)  # the asset's first file here updates it
                    if gaps:
                        self.updates[entry.path] = _Update(asset_id, gaps, note)
                        todo.append((entry, digest))
                    else:
                        self._outcome(FileOutcome(entry.path, "skipped", reason, asset_id=asset_id))
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
                self._reject(_rejected(item, "extract", failures[item.path]))
                continue
            update = self.updates.get(item.path)
            if update is None:
                self._write(item, item_facts)
            else:
                self._update(item, item_facts, update)

    def _extract(
        self, batch: list[IngestItem]
    ) -> tuple[list[list[catalog.FactRecord]], dict[str, str]]:
        """Each extractor once over the files of the batch that need it; on failure, file by file
        to isolate bad files."""
        records: list[list[catalog.FactRecord]] = [[] for _ in batch]
        failures: dict[str, str] = {}
        for extractor in self.options.extractors:
            live = [
                i
                for i, item in enumerate(batch)
                if item.path not in failures and self._needs(item.path, extractor)
            ]
            if not live:
                continue
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
        result = self._in_transaction(
            item,
            lambda conn: catalog.add_asset(
                conn,
                asset,
                facts,
                run_id=self.summary.run_id,
                set_name=self.options.set_name,
                vector_tables=self.vector_tables,
            ),
        )
        if result is None:
            return
        if result.status == "duplicate":
            self._outcome(
                FileOutcome(
                    item.path,
                    "skipped",
                    f"same content as {result.existing_path} "
                    f"(asset {result.asset_id}, stored by another run)",
                    asset_id=result.asset_id,
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

    def _update(self, item: IngestItem, facts: list[catalog.FactRecord], update: _Update) -> None:
        """Add the missing extractors' facts to the stored asset."""
        try:
            result = self._in_transaction(
                item,
                lambda conn: catalog.add_facts(
                    conn,
                    update.asset_id,
                    [(w.index, w.start_s, w.end_s) for w in item.windows],
                    facts,
                    run_id=self.summary.run_id,
                    vector_tables=self.vector_tables,
                ),
            )
        except catalog.AssetRemoved:
            reason = (
                f"asset {update.asset_id} was removed from the catalogue during this run; "
                "the file is not stored (add it again to store it anew)"
            )
            self._outcome(FileOutcome(item.path, "failed", reason, asset_id=update.asset_id))
            return
        if result is None:
            return
        produced = {f.model for f in facts}
        added = [e for e in update.extractors if _identity(e) in result.added]
        raced = [e for e in update.extractors if _identity(e) in result.present]
        idle = [e for e in update.extractors if _identity(e) not in produced]
        parts = [f"added facts of {_names(added)}"] if added else []
        if raced:
            parts.append(f"facts of {_names(raced)} added by another run")
        if idle:
            parts.append(f"no facts from {_names(idle)}")
        if result.new_windows:
            parts.append(f"{result.new_windows} new windows")
        if update.note:
            parts.append(update.note)
        reason = "; ".join(parts)
        if added:
            self._outcome(
                FileOutcome(
                    item.path,
                    "updated",
                    reason,
                    result.song_id,
                    update.asset_id,
                    item.duration_s,
                )
            )
        else:
            self._outcome(
                FileOutcome(
                    item.path,
                    "skipped",
                    f"already stored (asset {update.asset_id}); {reason}",
                    asset_id=update.asset_id,
                )
            )

    def _in_transaction(
        self, item: IngestItem, write: Callable[[psycopg.Connection], T]
    ) -> T | None:
        """`write` in the file's own transaction; None if the database refused the file."""
        try:
            with self.store.pool.connection() as conn, conn.transaction():
                return write(conn)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            # This file's values were refused (e.g. out of range): the file, not the run, fails.
            self._reject(_rejected(item, "write", f"refused by the database: {str(exc).strip()}"))
            return None
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(
                f"writing {item.path} to {self.store.where}: "
                f"{scrub(str(exc).strip(), self.store.dsn)}"
            ) from None

    # -- helpers --------------------------------------------------------------------------

    def _needs(self, path: str, extractor: Extractor) -> bool:
        update = self.updates.get(path)
        return update is None or extractor in update.extractors

    def _reject(self, rejected: Rejected) -> None:
        update = self.updates.get(rejected.path)
        if update is not None:  # a stored file: never quarantined, the asset stays as it was
            reason = (
                f"{rejected.reason}; not quarantined: already stored (asset {update.asset_id}), "
                f"left as it was without facts of {_names(update.extractors)}"
            )
            self._outcome(FileOutcome(rejected.path, "failed", reason, asset_id=update.asset_id))
            return
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
            # A stored file keeps its Chromaprint (and song): updates do not compute one.
            with_chromaprint=self.fpcalc is not None and entry.path not in self.updates,
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
        notes = list(s.notes)  # the run record has no columns for updates: say it here
        if s.updated:
            notes.append(f"{len(s.updated)} stored files got facts of missing extractors")
        if s.failed:
            notes.append(f"{len(s.failed)} stored files could not get them (left as they were)")
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
                    notes=notes,
                )
        except StoreError as exc:
            log.warning("could not record the end of run %s: %s", s.run_id, exc)


def _rejected(item: IngestItem, stage: Literal["extract", "write"], reason: str) -> Rejected:
    return Rejected(item.path, item.content_hash, item.size, item.mtime_ns, stage, reason)


def _identity(extractor: Extractor) -> Identity:
    return (extractor.name, extractor.version, extractor.feature_set)


def _names(extractors: Iterable[Extractor]) -> str:
    return ", ".join(f"{e.name} {e.version}" for e in extractors)


def _check_extractors(extractors: Sequence[Extractor]) -> None:
    seen = set()
    for extractor in extractors:
        identity = _identity(extractor)
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
