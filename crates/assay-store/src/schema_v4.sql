-- Schema v4: who gave each label and ruling (a reviewer name; '' when not given, as before v4).
ALTER TABLE check_labels ADD COLUMN rater TEXT NOT NULL DEFAULT '';
ALTER TABLE rulings ADD COLUMN rater TEXT NOT NULL DEFAULT '';

-- Which error cluster of a discovery run each check was written from (its provenance); checks
-- keep their id across refinements, so later versions find it through the id.
CREATE TABLE check_origins (
    set_version_id INTEGER NOT NULL REFERENCES set_versions(id),
    check_key      TEXT NOT NULL,
    cluster_id     INTEGER NOT NULL REFERENCES error_clusters(id),
    PRIMARY KEY (set_version_id, check_key)
);
