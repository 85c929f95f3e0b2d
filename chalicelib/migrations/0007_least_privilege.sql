-- Least privilege (docs/deploy.md, "Security"): the role that runs the migrations owns every
-- object; the functions connect as one of two roles that own nothing, so neither can change the
-- schema (chalicelib/db.py READER, WRITER):
-- * voucher_reader, the API: reads the product's tables; its sessions are read-only;
-- * voucher_writer, the job and the upload and job-state handlers: reads and writes the rows of
--   the product's tables (never schema_migrations), and no DDL.
-- Tables and sequences that later migrations create get the same grants: default privileges of
-- the role that runs the migrations. Roles belong to the server, so they are made once (and kept
-- by every database of a server); grants belong to this database. On RDS both log in with IAM
-- database authentication (rds_iam): no password exists for them.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['voucher_reader', 'voucher_writer'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I LOGIN', role_name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- made by another database of this server, or a concurrent migration
        END;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN
            EXECUTE format('GRANT rds_iam TO %I', role_name);
        END IF;
    END LOOP;
END $$;

ALTER ROLE voucher_reader SET default_transaction_read_only = on;

DO $$
DECLARE
    s text := current_schema();
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO voucher_reader, voucher_writer', s);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO voucher_reader', s);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I'
                   ' TO voucher_writer', s);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO voucher_writer', s);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES'
                   ' TO voucher_reader', s);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I'
                   ' GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO voucher_writer', s);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES'
                   ' TO voucher_writer', s);
END $$;

-- The migrations' own bookkeeping is the owner's alone.
REVOKE ALL ON schema_migrations FROM voucher_reader, voucher_writer;
