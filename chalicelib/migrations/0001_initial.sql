-- Runs, their statistics, and what each run published.
-- Every result row is keyed by run_id; the API serves, per country, the run that
-- published_country points at, so switching that pointer publishes atomically.

CREATE TABLE runs (
    run_id            text PRIMARY KEY,
    source_bucket     text,
    source_key        text NOT NULL,
    source_etag       text,
    countries         text[],            -- requested country keys; NULL means all
    status            text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    rows_read         bigint,
    rows_out_of_scope bigint,
    error             text
);

CREATE INDEX runs_source_idx ON runs (source_bucket, source_key, source_etag);

CREATE TABLE run_country_stats (
    run_id             text NOT NULL REFERENCES runs ON DELETE CASCADE,
    country_key        text NOT NULL,
    country            text NOT NULL,
    rows_in            bigint NOT NULL,
    rows_kept          bigint NOT NULL,
    rows_rejected      bigint NOT NULL,
    rejected_by_reason jsonb NOT NULL,   -- every reason code, zero included
    unsegmented        jsonb NOT NULL,   -- kept rows with no segment, per segment_name
    PRIMARY KEY (run_id, country_key),
    CHECK (rows_in = rows_kept + rows_rejected)
);

CREATE TABLE segment_rules (
    run_id       text NOT NULL REFERENCES runs ON DELETE CASCADE,
    segment_name text NOT NULL,
    measure      text NOT NULL,
    description  text NOT NULL,
    position     integer NOT NULL,
    segment      text NOT NULL,
    lower_bound  bigint NOT NULL,
    upper_bound  bigint,                 -- NULL: unbounded
    PRIMARY KEY (run_id, segment_name, segment)
);

CREATE TABLE voucher_selection (
    run_id         text NOT NULL REFERENCES runs ON DELETE CASCADE,
    country_key    text NOT NULL,
    segment_name   text NOT NULL,
    segment        text NOT NULL,
    voucher_amount double precision NOT NULL,
    voucher_rows   bigint NOT NULL,      -- kept rows of the segment with that amount
    segment_rows   bigint NOT NULL,      -- kept rows in the segment
    PRIMARY KEY (run_id, country_key, segment_name, segment)
);

CREATE TABLE country_fallback (
    run_id         text NOT NULL REFERENCES runs ON DELETE CASCADE,
    country_key    text NOT NULL,
    voucher_amount double precision NOT NULL,
    voucher_rows   bigint NOT NULL,
    country_rows   bigint NOT NULL,
    PRIMARY KEY (run_id, country_key)
);

CREATE TABLE published_country (
    country_key  text PRIMARY KEY,
    run_id       text NOT NULL REFERENCES runs,
    published_at timestamptz NOT NULL DEFAULT now()
);
