-- Agents: the report index the assistant queries, unattended review runs, user feedback, the
-- model registry of retrained heads, the planner's action log, and a read-only role for the
-- assistant's catalogue queries.

CREATE TABLE report_index (
    report_path  text PRIMARY KEY,
    content_hash text NOT NULL,
    entity_id    bigint REFERENCES media_entity ON DELETE SET NULL,
    title        text NOT NULL,
    key_label    text,
    key_mode     text,
    tempo_bpm    double precision,
    duration_s   double precision,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX report_index_hash ON report_index (content_hash);

CREATE TABLE review_run (
    review_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    folder      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status      text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'finished', 'failed', 'noop')),
    out_dir     text,
    summary     jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE review_file (
    review_id    bigint NOT NULL REFERENCES review_run ON DELETE CASCADE,
    content_hash text,
    file_path    text NOT NULL,
    outcome      text NOT NULL
                 CHECK (outcome IN ('known', 'new', 'unknown', 'duplicate', 'failed')),
    entity_id    bigint,
    report_path  text,
    confidence   double precision,
    detail       text NOT NULL DEFAULT '',
    PRIMARY KEY (review_id, file_path)
);
CREATE INDEX review_file_hash ON review_file (content_hash);

CREATE TABLE feedback (
    feedback_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    song        text NOT NULL,
    entity_id   bigint REFERENCES media_entity ON DELETE SET NULL,
    descriptor  text NOT NULL,
    verdict     text NOT NULL CHECK (verdict IN ('right', 'wrong')),
    note        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_by     bigint
);
CREATE INDEX feedback_descriptor ON feedback (descriptor);

CREATE TABLE model_registry (
    model_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    family       text NOT NULL,
    version      integer NOT NULL,
    status       text NOT NULL CHECK (status IN ('candidate', 'promoted', 'rolled_back', 'retired')),
    params       jsonb NOT NULL,
    evaluation   jsonb NOT NULL DEFAULT '{}',
    train_size   integer NOT NULL DEFAULT 0,
    notes        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (family, version)
);
CREATE UNIQUE INDEX model_registry_promoted ON model_registry (family) WHERE status = 'promoted';

CREATE TABLE agent_action (
    action_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text NOT NULL,
    params     jsonb NOT NULL DEFAULT '{}',
    reason     text NOT NULL,
    status     text NOT NULL CHECK (status IN ('applied', 'declined', 'failed')),
    approved_by text NOT NULL,
    result     jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The assistant's catalogue queries run as this role in read-only transactions. A user
-- without CREATEROLE still migrates: the queries then run read-only as that user.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'polymuse_reader') THEN
        CREATE ROLE polymuse_reader NOLOGIN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO polymuse_reader', current_schema());
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO polymuse_reader', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO polymuse_reader',
                   current_schema());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'polymuse_reader role not created: %', SQLERRM;
END
$$;
