-- Leaner postings, so the exact lane can store twice as many hashes in the same space
-- (fingerprint version 2): 4-byte asset and fact ids (the heap row shrinks from 48 to 40
-- bytes), a key-only hash index (the look-up reads the few matching rows from the heap), and
-- a BRIN index for the per-fact cascade, since each fact's postings are one COPY and lie
-- together. Postings of earlier fingerprint versions no longer match: `catalog
-- refingerprint` replaces them.
DROP INDEX fingerprint_posting_hash;
DROP INDEX fingerprint_posting_fact;
ALTER TABLE fingerprint_posting
    ALTER COLUMN asset_id TYPE integer,
    ALTER COLUMN fact_id TYPE integer;
CREATE INDEX fingerprint_posting_hash ON fingerprint_posting (hash);
CREATE INDEX fingerprint_posting_fact ON fingerprint_posting USING brin (fact_id)
    WITH (autosummarize = on);
