-- Schema version 7 (numbered by the egress work; renumbered at merge if needed): a VM's
-- network policy, as JSON (`{"allow": ["example.com:443", "10.0.0.0/8"]}`; an empty
-- list denies everything). NULL: no policy, the `nat` column alone decides.

ALTER TABLE vms ADD COLUMN policy TEXT;
