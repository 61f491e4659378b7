-- Schema version 3: guest address leases. A VM keeps its lease across stop/start so it
-- keeps its address; the row goes with the VM (ON DELETE CASCADE), which is the only
-- way an address is released for reuse.

CREATE TABLE address_leases (
    vm_id      TEXT PRIMARY KEY NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
    ipv4       TEXT NOT NULL UNIQUE,          -- dotted quad, e.g. 172.30.0.2
    leased_at  TEXT NOT NULL                  -- RFC 3339
) STRICT;
