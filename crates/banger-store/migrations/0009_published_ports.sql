-- Schema version 9: a VM's published ports (`vm run -p`, `vm port publish`), one row per
-- host address, port and transport. They outlive stop/start (a started VM gets them
-- back) and go with the VM (ON DELETE CASCADE). A host port may be recorded for two VMs:
-- only one of them can listen on it at a time, which the bind decides.

CREATE TABLE published_ports (
    vm_id        TEXT NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
    proto        TEXT NOT NULL CHECK (proto IN ('tcp', 'udp')),
    host_ip      TEXT NOT NULL,               -- IPv4, e.g. 127.0.0.1 or 0.0.0.0
    host_port    INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
    guest_port   INTEGER NOT NULL CHECK (guest_port BETWEEN 1 AND 65535),
    published_at TEXT NOT NULL,               -- RFC 3339
    PRIMARY KEY (vm_id, proto, host_ip, host_port)
) STRICT;
