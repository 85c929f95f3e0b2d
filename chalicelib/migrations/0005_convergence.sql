-- Every upload converges (docs/reliability.md, "Convergence"):
-- * a run waits (a dataset folder) or is queued (its job not started yet) for as long as it takes:
--   the reconciler starts it, so no lease applies before the job runs; why it waits is shown;
-- * a lease only fences a running job, and fences it for good: a run that was shown failed (its
--   lease ran out, or it was recorded failed) never turns into anything else, and a succeeded run
--   stays succeeded. The trigger below enforces what run_status() shows, for every writer.

-- Waiting and queued runs whose lease ran out were shown failed (abandoned): record them so
-- before the lease stops applying to them, so that what was shown stays true.
UPDATE runs SET status = 'failed', finished_at = now(), error = run_abandoned_error(runs)
 WHERE run_abandoned(runs);

ALTER TABLE runs ADD COLUMN status_reason text;        -- why a live run is where it is
ALTER TABLE runs ADD COLUMN notes text;                -- what the run chose to ignore, and why
ALTER TABLE runs ADD COLUMN start_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN start_errors integer NOT NULL DEFAULT 0;  -- failed starts, capacity aside
ALTER TABLE runs ADD COLUMN next_start_at timestamptz; -- when the reconciler may (re)start it

CREATE INDEX runs_live_idx ON runs (status, next_start_at)
    WHERE status IN ('waiting', 'queued', 'running');

CREATE OR REPLACE FUNCTION run_abandoned(r runs) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT r.status = 'running'
       AND r.heartbeat_at + r.lease_seconds * interval '1 second' < now()
$$;

CREATE OR REPLACE FUNCTION run_abandoned_error(r runs) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT 'abandoned: no heartbeat from its job since '
        || to_char(r.heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        || ' (lease ' || r.lease_seconds || ' s): the job died or stalled without recording an'
        || ' outcome (killed, out of memory, its worker lost, or frozen); it can no longer publish'
$$;

-- The fence: a finished run stays finished, and a running run whose lease ran out can only be
-- recorded failed (its job can neither renew the lease nor publish).
CREATE FUNCTION runs_fence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status IN ('succeeded', 'failed') AND NEW.status IS DISTINCT FROM OLD.status THEN
        RAISE EXCEPTION 'run % is % for good', OLD.run_id, OLD.status
            USING ERRCODE = 'VS001';
    END IF;
    IF run_abandoned(OLD) AND NEW.status <> 'failed' THEN
        RAISE EXCEPTION 'run % lost its lease: it is failed for good', OLD.run_id
            USING ERRCODE = 'VS001';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER runs_fence BEFORE UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION runs_fence();

-- The reconciler's place in its listing of each raw bucket (it lists a bounded number of pages a
-- tick, from where the last tick stopped), and what its last tick did.
CREATE TABLE reconciler_state (
    bucket      text PRIMARY KEY,
    scan_after  text NOT NULL DEFAULT '',  -- the last key listed; '' : from the start
    ticked_at   timestamptz,
    last_tick   jsonb
);
