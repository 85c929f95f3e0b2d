-- An object (bucket, key, ETag) is processed once per set of countries: S3 delivers events at
-- least once, and a multipart upload can emit two. A failed run does not count, so it can be retried.
CREATE UNIQUE INDEX runs_once_per_object ON runs
    (source_bucket, source_key, source_etag, coalesce(countries, '{}'))
    WHERE status <> 'failed' AND source_etag IS NOT NULL;

-- When the input object was written: a run of an older object never replaces a newer publication.
ALTER TABLE runs ADD COLUMN source_modified_at timestamptz;

-- The countries a run actually published (a newer object may already have been published).
ALTER TABLE runs ADD COLUMN published_countries text[];
