-- Song-centric catalogue: media_entity (song) -> audio_object (asset; window with parent)
-- -> feature_fact (fingerprint / embedding / descriptor facts with model identity), and
-- set_membership. Physical helpers for speed: chromaprint (duplicate detection), per-model
-- vector tables registered in vector_table, fingerprint_posting (landmark hashes).
-- Deleting a song cascades to its assets, windows, facts, vectors and postings.

CREATE TABLE ingest_run (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    status          text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
    roots           text[] NOT NULL,
    set_name        text,
    extractors      jsonb NOT NULL DEFAULT '[]',
    options         jsonb NOT NULL DEFAULT '{}',
    host            text NOT NULL,
    pid             integer NOT NULL,
    files_seen      integer NOT NULL DEFAULT 0,
    added           integer NOT NULL DEFAULT 0,
    skipped         integer NOT NULL DEFAULT 0,
    quarantined     integer NOT NULL DEFAULT 0,
    audio_seconds   double precision NOT NULL DEFAULT 0,
    notes           text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE media_entity (
    entity_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_type     text NOT NULL DEFAULT 'song' CHECK (entity_type IN ('song')),
    title           text NOT NULL,
    artist          text,
    album           text,
    year            integer CHECK (year BETWEEN 0 AND 9999),
    external_ids    jsonb NOT NULL DEFAULT '{}',
    -- Normalised "artist / title"; files with the same key are one song. NULL when the
    -- artist or the title is unknown (then only a matching Chromaprint joins files).
    match_key       text,
    metadata_source text NOT NULL CHECK (metadata_source IN ('tags', 'path', 'mixed', 'manual')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX media_entity_match_key ON media_entity (entity_type, match_key)
    WHERE match_key IS NOT NULL;
CREATE INDEX media_entity_title ON media_entity (lower(title));

CREATE TABLE audio_object (
    object_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    object_type      text NOT NULL CHECK (object_type IN ('asset', 'window')),
    entity_id        bigint NOT NULL REFERENCES media_entity ON DELETE CASCADE,
    parent_object_id bigint REFERENCES audio_object ON DELETE CASCADE,
    -- asset: one audio file
    file_path        text,
    content_hash     text,
    file_size        bigint,
    file_mtime_ns    bigint,
    duration_s       double precision,
    sample_rate      integer,
    channels         integer,
    codec            text,
    container        text,
    tags             jsonb,
    -- window: a slice of its parent asset, the unit of evidence and recall
    window_index     integer,
    start_s          double precision,
    end_s            double precision,
    ingest_run_id    bigint REFERENCES ingest_run ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audio_object_shape CHECK (
        (object_type = 'asset' AND parent_object_id IS NULL AND file_path IS NOT NULL
            AND content_hash ~ '^[0-9a-f]{64}$' AND duration_s > 0 AND sample_rate > 0)
        OR (object_type = 'window' AND parent_object_id IS NOT NULL AND window_index >= 0
            AND start_s >= 0 AND end_s > start_s)
    )
);
CREATE UNIQUE INDEX audio_object_asset_hash ON audio_object (content_hash)
    WHERE object_type = 'asset';
CREATE UNIQUE INDEX audio_object_window ON audio_object (parent_object_id, window_index)
    WHERE object_type = 'window';
CREATE INDEX audio_object_entity ON audio_object (entity_id);
CREATE INDEX audio_object_path ON audio_object (file_path) WHERE object_type = 'asset';

CREATE TABLE feature_fact (
    fact_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    object_id         bigint NOT NULL REFERENCES audio_object ON DELETE CASCADE,
    feature_type      text NOT NULL CHECK (feature_type IN ('fingerprint', 'embedding', 'descriptor')),
    model_name        text NOT NULL,
    model_version     text NOT NULL,
    feature_set_name  text NOT NULL,
    fingerprint_value text,
    embedding_dim     integer CHECK (embedding_dim > 0),
    vector_table_name text,
    posting_count     integer NOT NULL DEFAULT 0,
    payload           jsonb,
    ingest_run_id     bigint REFERENCES ingest_run ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (object_id, feature_type, model_name, model_version, feature_set_name),
    CONSTRAINT feature_fact_embedding CHECK (
        feature_type <> 'embedding' OR (embedding_dim IS NOT NULL AND vector_table_name IS NOT NULL)
    )
);
CREATE INDEX feature_fact_model ON feature_fact (model_name, model_version, feature_set_name);

CREATE TABLE set_membership (
    membership_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    set_type      text NOT NULL CHECK (set_type IN ('catalog', 'split', 'bucket', 'playlist')),
    set_name      text NOT NULL,
    member_type   text NOT NULL CHECK (member_type IN ('song', 'asset', 'window')),
    entity_id     bigint REFERENCES media_entity ON DELETE CASCADE,
    object_id     bigint REFERENCES audio_object ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT set_membership_member CHECK (
        (member_type = 'song' AND entity_id IS NOT NULL AND object_id IS NULL)
        OR (member_type <> 'song' AND object_id IS NOT NULL AND entity_id IS NULL)
    ),
    UNIQUE NULLS NOT DISTINCT (set_type, set_name, member_type, entity_id, object_id)
);
CREATE INDEX set_membership_entity ON set_membership (entity_id);
CREATE INDEX set_membership_object ON set_membership (object_id);

-- One table per embedding model identity, created on demand (see store/catalog.py): a
-- fixed vector(dim) column, which HNSW needs, and one ANN index per model.
CREATE TABLE vector_table (
    table_name       text PRIMARY KEY,
    model_name       text NOT NULL,
    model_version    text NOT NULL,
    feature_set_name text NOT NULL,
    dim              integer NOT NULL CHECK (dim > 0),
    metric           text NOT NULL DEFAULT 'cosine' CHECK (metric IN ('cosine', 'l2', 'ip')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model_name, model_version, feature_set_name)
);

-- Whole-file Chromaprint (fpcalc -raw -signed), to attach re-encodes of one recording to one
-- song. The GIN index finds candidates sharing sub-fingerprints; they are then scored.
CREATE TABLE chromaprint (
    object_id   bigint PRIMARY KEY REFERENCES audio_object ON DELETE CASCADE,
    entity_id   bigint NOT NULL REFERENCES media_entity ON DELETE CASCADE,
    duration_s  double precision NOT NULL,
    fingerprint integer[] NOT NULL
);
CREATE INDEX chromaprint_fingerprint ON chromaprint USING gin (fingerprint);
CREATE INDEX chromaprint_entity ON chromaprint (entity_id);

-- Landmark hash postings for the exact recognition lane: (hash, asset, offset). Rows belong
-- to the fingerprint fact that produced them; the lookup index is created by a migration of
-- its own (0002) so it can be rebuilt or replaced without touching the table.
CREATE TABLE fingerprint_posting (
    hash     integer NOT NULL,
    asset_id bigint NOT NULL,
    t_offset integer NOT NULL,
    fact_id  bigint NOT NULL REFERENCES feature_fact ON DELETE CASCADE
);
CREATE INDEX fingerprint_posting_fact ON fingerprint_posting (fact_id);

CREATE TABLE quarantine (
    quarantine_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_path     text NOT NULL,
    content_hash  text,
    file_size     bigint,
    file_mtime_ns bigint,
    stage         text NOT NULL CHECK (stage IN ('read', 'decode', 'extract', 'write')),
    reason        text NOT NULL,
    moved_to      text,
    run_id        bigint REFERENCES ingest_run ON DELETE SET NULL,
    attempts      integer NOT NULL DEFAULT 1,
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (file_path, content_hash)
);
CREATE INDEX quarantine_hash ON quarantine (content_hash);
