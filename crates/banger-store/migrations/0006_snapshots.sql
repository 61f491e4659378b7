-- Warm starts (issue 11): one row per saved guest. A snapshot's files live in `dir`
-- (device state, RAM file, disk), all owner-only; `state` is `creating` until every file
-- is written, `ready` after, `deleting` while its files go. A row left `creating` or
-- `deleting` by a killed daemon is finished (files and row removed) at the next start.
-- VMs forked from a snapshot name it in their runtime JSON (`forked_from`).

CREATE TABLE snapshots (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    state        TEXT NOT NULL,
    source_vm    TEXT NOT NULL,      -- id of the VM it was taken from (may be gone)
    source_name  TEXT NOT NULL,
    image        TEXT NOT NULL,
    kernel       TEXT NOT NULL,
    vcpus        INTEGER NOT NULL,
    memory_bytes INTEGER NOT NULL,
    disk_bytes   INTEGER NOT NULL,
    nat          INTEGER NOT NULL,
    nic          INTEGER NOT NULL,   -- the saved guest has a NIC (its clones need one)
    driver       TEXT NOT NULL,
    dir          TEXT NOT NULL,
    size_bytes   INTEGER NOT NULL DEFAULT 0,  -- allocated bytes of its files
    created_at   TEXT NOT NULL
);
