-- The database schema as the migrations in chalicelib/migrations leave it (make schema writes it;
-- tests/stack/pipeline/test_schema.py checks it). Read it; change the schema with a migration.

CREATE TABLE public.runs (
    run_id text NOT NULL,
    source_bucket text,
    source_key text NOT NULL,
    source_etag text,
    countries text[],
    status text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    rows_read bigint,
    rows_out_of_scope bigint,
    error text,
    source_modified_at timestamp with time zone,
    published_countries text[],
    requested_by text DEFAULT 'event'::text NOT NULL,
    job_run_id text,
    heartbeat_at timestamp with time zone,
    lease_seconds integer,
    source_objects integer,
    min_segment_rows integer DEFAULT 1 NOT NULL,
    status_reason text,
    notes text,
    start_attempts integer DEFAULT 0 NOT NULL,
    start_errors integer DEFAULT 0 NOT NULL,
    next_start_at timestamp with time zone,
    CONSTRAINT runs_lease_seconds_check CHECK ((lease_seconds > 0)),
    CONSTRAINT runs_min_segment_rows_check CHECK ((min_segment_rows >= 1)),
    CONSTRAINT runs_requested_by_check CHECK ((requested_by = ANY (ARRAY['event'::text, 'manual'::text]))),
    CONSTRAINT runs_status_check CHECK ((status = ANY (ARRAY['waiting'::text, 'queued'::text, 'running'::text, 'succeeded'::text, 'failed'::text])))
);

CREATE FUNCTION public.run_abandoned(r public.runs) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    SELECT r.status = 'running'
       AND r.heartbeat_at + r.lease_seconds * interval '1 second' < now()
$$;

CREATE FUNCTION public.run_abandoned_error(r public.runs) RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT 'abandoned: no heartbeat from its job since '
        || to_char(r.heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        || ' (lease ' || r.lease_seconds || ' s): the job died or stalled without recording an'
        || ' outcome (killed, out of memory, its worker lost, or frozen); it can no longer publish'
$$;

CREATE FUNCTION public.run_error(r public.runs) RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE WHEN run_abandoned(r) THEN run_abandoned_error(r) ELSE r.error END
$$;

CREATE FUNCTION public.run_status(r public.runs) RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE WHEN run_abandoned(r) THEN 'failed' ELSE r.status END
$$;

CREATE FUNCTION public.runs_fence() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE TABLE public.country_fallback (
    run_id text NOT NULL,
    country_key text NOT NULL,
    voucher_amount double precision NOT NULL,
    voucher_rows bigint NOT NULL,
    country_rows bigint NOT NULL,
    runner_up_amount double precision,
    runner_up_rows bigint DEFAULT 0 NOT NULL
);

CREATE TABLE public.published_country (
    country_key text NOT NULL,
    run_id text NOT NULL,
    published_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.reconciler_state (
    bucket text NOT NULL,
    scan_after text DEFAULT ''::text NOT NULL,
    ticked_at timestamp with time zone,
    last_tick jsonb
);

CREATE TABLE public.run_country_stats (
    run_id text NOT NULL,
    country_key text NOT NULL,
    country text NOT NULL,
    rows_in bigint NOT NULL,
    rows_kept bigint NOT NULL,
    rows_rejected bigint NOT NULL,
    rejected_by_reason jsonb NOT NULL,
    unsegmented jsonb NOT NULL,
    CONSTRAINT run_country_stats_check CHECK ((rows_in = (rows_kept + rows_rejected)))
);

CREATE TABLE public.schema_migrations (
    version text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.segment_rules (
    run_id text NOT NULL,
    segment_name text NOT NULL,
    measure text NOT NULL,
    description text NOT NULL,
    "position" integer NOT NULL,
    segment text NOT NULL,
    lower_bound bigint NOT NULL,
    upper_bound bigint
);

CREATE TABLE public.selection_changes (
    change_id bigint NOT NULL,
    run_id text NOT NULL,
    country_key text NOT NULL,
    segment_name text,
    segment text,
    old_amount double precision,
    new_amount double precision,
    old_share double precision,
    new_share double precision,
    replaced_run_id text,
    changed_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE SEQUENCE public.selection_changes_change_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.selection_changes_change_id_seq OWNED BY public.selection_changes.change_id;

CREATE TABLE public.voucher_selection (
    run_id text NOT NULL,
    country_key text NOT NULL,
    segment_name text NOT NULL,
    segment text NOT NULL,
    voucher_amount double precision NOT NULL,
    voucher_rows bigint NOT NULL,
    segment_rows bigint NOT NULL,
    runner_up_amount double precision,
    runner_up_rows bigint DEFAULT 0 NOT NULL
);

CREATE TABLE public.voucher_usage (
    run_id text NOT NULL,
    country_key text NOT NULL,
    segment_name text,
    segment text,
    "position" integer NOT NULL,
    voucher_amount double precision,
    voucher_rows bigint NOT NULL,
    amounts integer NOT NULL,
    CONSTRAINT voucher_usage_amounts_check CHECK ((amounts >= 1)),
    CONSTRAINT voucher_usage_check CHECK (((segment_name IS NULL) = (segment IS NULL))),
    CONSTRAINT voucher_usage_check1 CHECK (((voucher_amount IS NOT NULL) OR ("position" > 2))),
    CONSTRAINT voucher_usage_check2 CHECK (((voucher_amount IS NULL) OR (amounts = 1))),
    CONSTRAINT voucher_usage_position_check CHECK (("position" >= 1)),
    CONSTRAINT voucher_usage_voucher_rows_check CHECK ((voucher_rows > 0))
);

ALTER TABLE ONLY public.selection_changes ALTER COLUMN change_id SET DEFAULT nextval('public.selection_changes_change_id_seq'::regclass);

ALTER TABLE ONLY public.country_fallback
    ADD CONSTRAINT country_fallback_pkey PRIMARY KEY (run_id, country_key);

ALTER TABLE ONLY public.published_country
    ADD CONSTRAINT published_country_pkey PRIMARY KEY (country_key);

ALTER TABLE ONLY public.reconciler_state
    ADD CONSTRAINT reconciler_state_pkey PRIMARY KEY (bucket);

ALTER TABLE ONLY public.run_country_stats
    ADD CONSTRAINT run_country_stats_pkey PRIMARY KEY (run_id, country_key);

ALTER TABLE ONLY public.runs
    ADD CONSTRAINT runs_pkey PRIMARY KEY (run_id);

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

ALTER TABLE ONLY public.segment_rules
    ADD CONSTRAINT segment_rules_pkey PRIMARY KEY (run_id, segment_name, segment);

ALTER TABLE ONLY public.selection_changes
    ADD CONSTRAINT selection_changes_pkey PRIMARY KEY (change_id);

ALTER TABLE ONLY public.voucher_selection
    ADD CONSTRAINT voucher_selection_pkey PRIMARY KEY (run_id, country_key, segment_name, segment);

CREATE INDEX runs_job_run_idx ON public.runs USING btree (job_run_id) WHERE (job_run_id IS NOT NULL);

CREATE INDEX runs_live_idx ON public.runs USING btree (status, next_start_at) WHERE (status = ANY (ARRAY['waiting'::text, 'queued'::text, 'running'::text]));

CREATE UNIQUE INDEX runs_once_per_object ON public.runs USING btree (source_bucket, source_key, source_etag, COALESCE(countries, '{}'::text[])) WHERE ((status = ANY (ARRAY['queued'::text, 'running'::text, 'succeeded'::text])) AND (source_etag IS NOT NULL) AND (requested_by = 'event'::text));

CREATE UNIQUE INDEX runs_one_waiting_per_dataset ON public.runs USING btree (source_bucket, source_key, COALESCE(countries, '{}'::text[])) WHERE (status = 'waiting'::text);

CREATE INDEX runs_source_idx ON public.runs USING btree (source_bucket, source_key, source_etag);

CREATE INDEX selection_changes_latest_idx ON public.selection_changes USING btree (country_key, segment_name, segment, change_id);

CREATE INDEX selection_changes_run_idx ON public.selection_changes USING btree (run_id);

CREATE UNIQUE INDEX voucher_usage_key ON public.voucher_usage USING btree (run_id, country_key, COALESCE(segment_name, ''::text), COALESCE(segment, ''::text), "position");

CREATE TRIGGER runs_fence BEFORE UPDATE ON public.runs FOR EACH ROW EXECUTE FUNCTION public.runs_fence();

ALTER TABLE ONLY public.country_fallback
    ADD CONSTRAINT country_fallback_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(run_id) ON DELETE CASCADE;

ALTER TABLE ONLY public.published_country
    ADD CONSTRAINT published_country_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(run_id);

ALTER TABLE ONLY public.run_country_stats
    ADD CONSTRAINT run_country_stats_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(run_id) ON DELETE CASCADE;

ALTER TABLE ONLY public.segment_rules
    ADD CONSTRAINT segment_rules_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(run_id) ON DELETE CASCADE;

ALTER TABLE ONLY public.selection_changes
    ADD CONSTRAINT selection_changes_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(run_id) ON DELETE CASCADE;

ALTER TABLE ONLY public.voucher_selection
    ADD CONSTRAINT voucher_selection_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(run_id) ON DELETE CASCADE;

ALTER TABLE ONLY public.voucher_usage
    ADD CONSTRAINT voucher_usage_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(run_id) ON DELETE CASCADE;

GRANT USAGE ON SCHEMA public TO voucher_reader;
GRANT USAGE ON SCHEMA public TO voucher_writer;

GRANT SELECT ON TABLE public.runs TO voucher_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.runs TO voucher_writer;

GRANT SELECT ON TABLE public.country_fallback TO voucher_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.country_fallback TO voucher_writer;

GRANT SELECT ON TABLE public.published_country TO voucher_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.published_country TO voucher_writer;

GRANT SELECT ON TABLE public.reconciler_state TO voucher_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.reconciler_state TO voucher_writer;

GRANT SELECT ON TABLE public.run_country_stats TO voucher_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.run_country_stats TO voucher_writer;

GRANT SELECT ON TABLE public.segment_rules TO voucher_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.segment_rules TO voucher_writer;

GRANT SELECT ON TABLE public.selection_changes TO voucher_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.selection_changes TO voucher_writer;

GRANT SELECT,USAGE ON SEQUENCE public.selection_changes_change_id_seq TO voucher_writer;

GRANT SELECT ON TABLE public.voucher_selection TO voucher_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.voucher_selection TO voucher_writer;

GRANT SELECT ON TABLE public.voucher_usage TO voucher_reader;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.voucher_usage TO voucher_writer;

ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT,USAGE ON SEQUENCES  TO voucher_writer;

ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT ON TABLES  TO voucher_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT,INSERT,DELETE,UPDATE ON TABLES  TO voucher_writer;
