-- Schema version 8: the
-- network policy of the VM a snapshot was taken from, as JSON like `vms.policy`, so its
-- forks are confined exactly as their source was. NULL: no policy.

ALTER TABLE snapshots ADD COLUMN policy TEXT;
