-- Close what the row trigger of 0001 leaves open: TRUNCATE of the log, and any
-- rewrite of the chain heads other than moving a head forward.

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

CREATE FUNCTION audit_heads_only_advance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.tenant_id = OLD.tenant_id AND NEW.seq > OLD.seq THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_heads may only advance (% refused)', TG_OP;
END $$;

CREATE TRIGGER audit_heads_advance_only
    BEFORE UPDATE OR DELETE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION audit_heads_only_advance();

CREATE TRIGGER audit_heads_no_truncate
    BEFORE TRUNCATE ON audit_heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit_heads_only_advance();
