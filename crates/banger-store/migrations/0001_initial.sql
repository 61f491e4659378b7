-- Schema version 1: VMs, images and kernels.
-- Migrations are append-only: never edit this file once released; add a new one.

CREATE TABLE vms (
    id           TEXT PRIMARY KEY NOT NULL,   -- 16 lowercase hex characters
    name         TEXT NOT NULL UNIQUE,
    state        TEXT NOT NULL,               -- VmState::as_str
    image        TEXT NOT NULL,
    kernel       TEXT NOT NULL,
    vcpus        INTEGER NOT NULL,
    memory_bytes INTEGER NOT NULL,
    disk_bytes   INTEGER NOT NULL,
    nat          INTEGER NOT NULL,            -- 0 or 1
    driver       TEXT NOT NULL,
    runtime      TEXT NOT NULL,               -- VmRuntime as JSON
    workspace    TEXT,                        -- JSON, NULL when no workspace
    created_at   TEXT NOT NULL                -- RFC 3339
) STRICT;

CREATE TABLE images (
    name       TEXT PRIMARY KEY NOT NULL,
    source     TEXT NOT NULL,                 -- catalog, oci, registered, promoted
    digest     TEXT NOT NULL,                 -- sha256:<hex> of the rootfs file
    path       TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    kernel     TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE kernels (
    name       TEXT PRIMARY KEY NOT NULL,
    version    TEXT NOT NULL,                 -- kernel release, e.g. 6.1.0-28-cloud-amd64
    vmlinux    TEXT NOT NULL,
    initramfs  TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
