-- Runs that survive operations (docs/reliability.md):
-- * a dataset folder's run is 'waiting' until its _SUCCESS marker or a quiet period;
-- * a live run carries a heartbeat and a lease: past the lease it counts as failed (abandoned);
-- * the job run that executes it (Glue's JobRunId, or the local job's pid) is recorded;
-- * a run asked for by hand ('manual') is never deduplicated: only event deliveries are.
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('waiting', 'queued', 'running', 'succeeded', 'failed'));
ALTER TABLE runs ADD COLUMN requested_by text NOT NULL DEFAULT 'event'
    CHECK (requested_by IN ('event', 'manual'));
ALTER TABLE runs ADD COLUMN job_run_id text;
ALTER TABLE runs ADD COLUMN heartbeat_at timestamptz;
ALTER TABLE runs ADD COLUMN lease_seconds integer CHECK (lease_seconds > 0);
ALTER TABLE runs ADD COLUMN source_objects integer;  -- 1 for a file; a dataset's parts

DROP INDEX runs_once_per_object;
CREATE UNIQUE INDEX runs_once_per_object ON runs
    (source_bucket, source_key, source_etag, coalesce(countries, '{}'))
    WHERE status IN ('queued', 'running', 'succeeded') AND source_etag IS NOT NULL
      AND requested_by = 'event';
-- One waiting run per dataset folder and countries: its parts' events all point at it.
CREATE UNIQUE INDEX runs_one_waiting_per_dataset ON runs
    (source_bucket, source_key, coalesce(countries, '{}'))
    WHERE status = 'waiting';
CREATE INDEX runs_job_run_idx ON runs (job_run_id) WHERE job_run_id IS NOT NULL;

-- A run whose lease ran out counts as failed for every reader: its job died (or never started)
-- without recording an outcome. The API reads through these; writers record it (chalicelib.runs).
CREATE FUNCTION run_abandoned(r runs) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT r.status IN ('waiting', 'queued', 'running')
       AND r.heartbeat_at + r.lease_seconds * interval '1 second' < now()
$$;

CREATE FUNCTION run_abandoned_error(r runs) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT 'abandoned: ' || CASE r.status
        WHEN 'running' THEN 'no heartbeat from its job since '
            || to_char(r.heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            || ' (lease ' || r.lease_seconds || ' s): the job died without recording an outcome'
            || ' (killed, out of memory, or its worker lost)'
        WHEN 'queued' THEN 'its job did not start within the lease of ' || r.lease_seconds || ' s'
        ELSE 'no run started for the dataset within ' || r.lease_seconds || ' s of its last'
            || ' object (its quiet-period check was lost: see the dead-letter queue)'
    END
$$;

-- A run's status and error as every reader should see them: an abandoned run is failed.
CREATE FUNCTION run_status(r runs) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN run_abandoned(r) THEN 'failed' ELSE r.status END
$$;

CREATE FUNCTION run_error(r runs) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN run_abandoned(r) THEN run_abandoned_error(r) ELSE r.error END
$$;
