-- How strong each selection is, and what each run changed (docs/api.md):
-- * every selection and fallback carries its runner-up amount and rows;
-- * a run records the rule setting MIN_SEGMENT_ROWS it was computed with;
-- * a run records, per country it published, the selections that differ from the result it
--   replaced (a country's first result: every selection, with no old amount).
ALTER TABLE voucher_selection ADD COLUMN runner_up_amount double precision;
ALTER TABLE voucher_selection ADD COLUMN runner_up_rows bigint NOT NULL DEFAULT 0;
ALTER TABLE country_fallback ADD COLUMN runner_up_amount double precision;
ALTER TABLE country_fallback ADD COLUMN runner_up_rows bigint NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN min_segment_rows integer NOT NULL DEFAULT 1
    CHECK (min_segment_rows >= 1);

CREATE TABLE selection_changes (
    change_id        bigserial PRIMARY KEY,   -- the order changes were recorded in
    run_id           text NOT NULL REFERENCES runs ON DELETE CASCADE,
    country_key      text NOT NULL,
    segment_name     text,                    -- NULL with segment: the country's fallback
    segment          text,
    old_amount       double precision,        -- NULL: no selection before
    new_amount       double precision,        -- NULL: no selection now
    old_share        double precision,
    new_share        double precision,
    replaced_run_id  text,                    -- NULL: the country's first result
    changed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX selection_changes_run_idx ON selection_changes (run_id);
CREATE INDEX selection_changes_latest_idx ON selection_changes
    (country_key, segment_name, segment, change_id);
