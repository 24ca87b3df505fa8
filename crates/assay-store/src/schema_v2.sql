-- Schema v2: gold outputs of optimise runs, and checks that questions propose.

-- The fittest output an optimise run found for one item under one evaluator-set version,
-- with every candidate it evaluated (the lineage). The expert may reject it with a note.
CREATE TABLE gold_outputs (
    id             INTEGER PRIMARY KEY,
    run_id         INTEGER NOT NULL REFERENCES runs(id),
    set_version_id INTEGER NOT NULL REFERENCES set_versions(id),
    item_id        INTEGER NOT NULL REFERENCES items(id),
    output         TEXT NOT NULL,
    p_pass         TEXT NOT NULL, -- JSON list of P(PASS), in the version's check order
    passes         INTEGER NOT NULL CHECK (passes >= 0),
    evaluations    INTEGER NOT NULL CHECK (evaluations >= 1),
    lineage        TEXT NOT NULL, -- JSON: every candidate, its origin, parents and scores
    best_of_n      TEXT,          -- JSON: the best-of-N baseline on the same budget, when compared
    status         TEXT NOT NULL DEFAULT 'gold' CHECK (status IN ('gold', 'rejected')),
    critique       TEXT,          -- the expert's note when rejected
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (run_id, item_id),
    CHECK ((status = 'rejected') = (critique IS NOT NULL))
);
CREATE INDEX gold_outputs_version_item ON gold_outputs(set_version_id, item_id);

-- A check the question proposes (JSON of assay_core::Check): a ruling "add ..." adopts it.
ALTER TABLE questions ADD COLUMN proposed_check TEXT;
