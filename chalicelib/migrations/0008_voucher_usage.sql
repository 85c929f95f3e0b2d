-- The usage behind each choice (docs/api.md): per run, country, segment name and segment (both
-- NULL: the country's fallback), the kept rows of each voucher amount, most used first (a tie to
-- the lower amount), the top USAGE_TOP_AMOUNTS of them; past those, one "other" row
-- (voucher_amount NULL) sums the rest and says how many amounts it holds. Written in the
-- transaction that publishes the run.
CREATE TABLE voucher_usage (
    run_id         text NOT NULL REFERENCES runs ON DELETE CASCADE,
    country_key    text NOT NULL,
    segment_name   text,
    segment        text,
    position       integer NOT NULL CHECK (position >= 1),   -- 1: the chosen amount
    voucher_amount double precision,                         -- NULL: the "other" bucket
    voucher_rows   bigint NOT NULL CHECK (voucher_rows > 0),
    amounts        integer NOT NULL CHECK (amounts >= 1),    -- the amounts the row counts
    CHECK ((segment_name IS NULL) = (segment IS NULL)),
    CHECK (voucher_amount IS NOT NULL OR position > 2),       -- the winner and runner-up are amounts
    CHECK (voucher_amount IS NULL OR amounts = 1)
);
CREATE UNIQUE INDEX voucher_usage_key ON voucher_usage
    (run_id, country_key, coalesce(segment_name, ''), coalesce(segment, ''), position);
