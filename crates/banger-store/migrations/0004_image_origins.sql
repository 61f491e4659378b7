-- Schema version 6 (numbered by the images work; renumbered at merge if needed): where an
-- image came from, and which cached OCI layers it was built from, so `image show` can say
-- so and `image cache prune` keeps the layers some image still names.

ALTER TABLE images ADD COLUMN origin TEXT NOT NULL DEFAULT '';   -- e.g. an OCI reference@digest
ALTER TABLE images ADD COLUMN layers TEXT NOT NULL DEFAULT '[]'; -- JSON list of layer digests
