-- Schema version 5: a VM's workspace (the host repository copied into it) in typed
-- columns, one row per VM, gone with the VM (ON DELETE CASCADE). It replaces the JSON
-- `vms.workspace` column of version 1, which no release ever wrote (workspaces answered
-- "not yet available"); that column is cleared and left unused.

CREATE TABLE vm_workspaces (
    vm_id             TEXT PRIMARY KEY NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
    host_path         TEXT NOT NULL,              -- the repository's root on the host
    guest_path        TEXT NOT NULL,              -- e.g. /root/repo
    mode              TEXT NOT NULL,              -- overlay, full_copy
    head_commit       TEXT,                       -- NULL: a repository with no commits
    flags             TEXT NOT NULL DEFAULT '{}', -- JSON: include_untracked
    delivery          TEXT NOT NULL,              -- disk (at boot), stream (into a running VM)
    files             INTEGER NOT NULL,
    bytes             INTEGER NOT NULL,
    tracked_signature TEXT NOT NULL,
    prepared_at       TEXT NOT NULL               -- RFC 3339
) STRICT;

UPDATE vms SET workspace = NULL;
