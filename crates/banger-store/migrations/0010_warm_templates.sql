-- Warm templates (issue 11): a template is a snapshot banger made itself from a cold boot
-- of an image, keyed by every input a restore depends on (image, kernel, vCPUs, memory,
-- disk, NAT, agent, VMM version and CPU model). `vm run` and `vm create` restore from
-- the ready template whose key matches and boot cold otherwise. NULL for a user's
-- `vm snapshot`.
ALTER TABLE snapshots ADD COLUMN template_key TEXT;

-- Images a user opted in to warm templates (`banger image warm IMAGE`); the default image
-- always has them.
CREATE TABLE warm_images (
    image      TEXT PRIMARY KEY,
    added_at   TEXT NOT NULL
);
