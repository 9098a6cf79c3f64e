-- Lookup index of the exact recognition lane: all postings of a query hash, answered from the
-- index alone. Kept apart from the table so a bulk load can drop and rebuild it, and the
-- recognition work can replace it with a later migration.
CREATE INDEX fingerprint_posting_hash ON fingerprint_posting (hash) INCLUDE (asset_id, t_offset);
