-- Schema version 2: long operations survive a daemon restart, and images record the
-- init their guests boot with. Existing images get /sbin/init, which both the Debian
-- (systemd-sysv) and busybox images provide.

ALTER TABLE images ADD COLUMN init TEXT NOT NULL DEFAULT '/sbin/init';

CREATE TABLE operations (
    id          TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,                -- e.g. vm.create, image.pull
    target      TEXT NOT NULL,                -- what it acts on, e.g. a VM name
    state       TEXT NOT NULL,                -- running, succeeded, failed
    stages      TEXT NOT NULL,                -- JSON list of StageRecord
    error       TEXT,
    started_at  TEXT NOT NULL,                -- RFC 3339
    finished_at TEXT
) STRICT;

CREATE INDEX operations_by_start ON operations (started_at);
CREATE INDEX vms_by_state ON vms (state);
