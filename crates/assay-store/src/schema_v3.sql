-- Schema v3: who set a project's configuration, and leases on runs.

-- 'operator' (the CLI, on this machine) or 'http' (a client of `assay serve`): a configuration
-- set over HTTP may not make the pipeline call other servers or open files unless the
-- operator allows it.
ALTER TABLE projects ADD COLUMN config_origin TEXT NOT NULL DEFAULT 'operator' CHECK (config_origin IN ('operator', 'http'));

-- The process working on a run and until when its claim holds (renewed as it works), so that
-- the CLI and a server, or two servers, never compute the same run at once.
ALTER TABLE runs ADD COLUMN lease_owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until INTEGER; -- unix seconds
