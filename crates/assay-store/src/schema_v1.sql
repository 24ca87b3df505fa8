-- Schema version 1. Timestamps are UTC ISO 8601 text; JSON columns hold serde_json text.

CREATE TABLE projects (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    task              TEXT NOT NULL DEFAULT '',
    generation_prompt TEXT NOT NULL,
    expert_notes      TEXT NOT NULL DEFAULT '',
    config            TEXT NOT NULL DEFAULT '{}',  -- per-role backend and model choices
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE datasets (
    id         INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    name       TEXT NOT NULL,
    source     TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (project_id, name)
);

CREATE TABLE items (
    id         INTEGER PRIMARY KEY,
    dataset_id INTEGER NOT NULL REFERENCES datasets(id),
    key        TEXT NOT NULL,     -- the id the data file gave the item
    input      TEXT NOT NULL,
    output     TEXT,
    context    TEXT,
    reference  TEXT,              -- JSON
    metadata   TEXT,              -- JSON
    UNIQUE (dataset_id, key)
);

CREATE TABLE generations (
    id         INTEGER PRIMARY KEY,
    item_id    INTEGER NOT NULL REFERENCES items(id),
    generator  TEXT NOT NULL,     -- JSON: model, sampling, prompt variant
    text       TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX generations_item ON generations(item_id);

CREATE TABLE annotations (
    id            INTEGER PRIMARY KEY,
    generation_id INTEGER NOT NULL REFERENCES generations(id),
    annotator     TEXT NOT NULL,  -- JSON: model and prompt
    raw           TEXT NOT NULL,  -- the annotator's answer as it came
    parsed        INTEGER NOT NULL CHECK (parsed IN (0, 1)),
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX annotations_generation ON annotations(generation_id);

CREATE TABLE annotation_errors (
    id            INTEGER PRIMARY KEY,
    annotation_id INTEGER NOT NULL REFERENCES annotations(id),
    description   TEXT NOT NULL,
    span_start    INTEGER,        -- byte offsets into the generation's text
    span_end      INTEGER,
    severity      TEXT NOT NULL CHECK (severity IN ('minor', 'major', 'critical')),
    CHECK ((span_start IS NULL) = (span_end IS NULL) AND (span_start IS NULL OR span_start <= span_end))
);
CREATE INDEX annotation_errors_annotation ON annotation_errors(annotation_id);

CREATE TABLE set_versions (
    id           INTEGER PRIMARY KEY,
    project_id   INTEGER NOT NULL REFERENCES projects(id),
    number       INTEGER NOT NULL CHECK (number >= 1),
    parent_id    INTEGER REFERENCES set_versions(id),
    content_hash TEXT NOT NULL,
    reason       TEXT NOT NULL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (project_id, number)
);

CREATE TABLE checks (
    id             INTEGER PRIMARY KEY,
    set_version_id INTEGER NOT NULL REFERENCES set_versions(id),
    position       INTEGER NOT NULL,
    key            TEXT NOT NULL, -- the check's id within the set (assay_core::Check::id)
    name           TEXT NOT NULL,
    question       TEXT NOT NULL,
    pass_criteria  TEXT NOT NULL,
    fail_examples  TEXT NOT NULL, -- JSON list of strings
    threshold      REAL,
    UNIQUE (set_version_id, key),
    UNIQUE (set_version_id, position)
);

-- A version is a fact other records point at (runs, judgments): it never changes.
CREATE TRIGGER set_versions_no_update BEFORE UPDATE ON set_versions
BEGIN SELECT RAISE(ABORT, 'evaluator-set versions are immutable'); END;
CREATE TRIGGER set_versions_no_delete BEFORE DELETE ON set_versions
BEGIN SELECT RAISE(ABORT, 'evaluator-set versions are immutable'); END;
CREATE TRIGGER checks_no_update BEFORE UPDATE ON checks
BEGIN SELECT RAISE(ABORT, 'checks of an evaluator-set version are immutable'); END;
CREATE TRIGGER checks_no_delete BEFORE DELETE ON checks
BEGIN SELECT RAISE(ABORT, 'checks of an evaluator-set version are immutable'); END;

CREATE TABLE runs (
    id             INTEGER PRIMARY KEY,
    project_id     INTEGER NOT NULL REFERENCES projects(id),
    kind           TEXT NOT NULL CHECK (kind IN ('discovery', 'judge', 'refine', 'optimise')),
    status         TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    set_version_id INTEGER REFERENCES set_versions(id),
    dataset_id     INTEGER REFERENCES datasets(id),
    params         TEXT NOT NULL DEFAULT '{}',
    progress_done  INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE error_clusters (
    id        INTEGER PRIMARY KEY,
    run_id    INTEGER NOT NULL REFERENCES runs(id),
    parent_id INTEGER REFERENCES error_clusters(id),
    label     TEXT NOT NULL
);
CREATE INDEX error_clusters_run ON error_clusters(run_id);

CREATE TABLE cluster_members (
    cluster_id INTEGER NOT NULL REFERENCES error_clusters(id),
    error_id   INTEGER NOT NULL REFERENCES annotation_errors(id),
    PRIMARY KEY (cluster_id, error_id)
);

CREATE TABLE judgments (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES runs(id),
    item_id         INTEGER NOT NULL REFERENCES items(id),
    check_id        INTEGER NOT NULL REFERENCES checks(id),
    verdict         TEXT NOT NULL CHECK (verdict IN ('PASS', 'FAIL')),
    p_pass          REAL NOT NULL,
    logprob_pass    REAL NOT NULL,
    logprob_fail    REAL NOT NULL,
    off_format_mass REAL NOT NULL,
    rationale       TEXT,
    -- Sampled rationales and their verdicts (JSON list), and the flip rate, when sampled.
    samples         TEXT,
    flip_rate       REAL,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (run_id, item_id, check_id)
);

-- Expert labels name checks by key, so they hold across evaluator-set versions.
CREATE TABLE check_labels (
    id         INTEGER PRIMARY KEY,
    item_id    INTEGER NOT NULL REFERENCES items(id),
    check_key  TEXT NOT NULL,
    verdict    TEXT NOT NULL CHECK (verdict IN ('PASS', 'FAIL')),
    note       TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (item_id, check_key)
);

CREATE TABLE score_labels (
    item_id    INTEGER PRIMARY KEY REFERENCES items(id),
    score      REAL NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE questions (
    id         INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    item_id    INTEGER REFERENCES items(id),  -- absent for questions about checks themselves
    check_key  TEXT,
    why        TEXT NOT NULL,
    options    TEXT NOT NULL DEFAULT '[]',    -- JSON list of strings
    status     TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'answered')),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE rulings (
    id          INTEGER PRIMARY KEY,
    question_id INTEGER NOT NULL UNIQUE REFERENCES questions(id),
    text        TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
