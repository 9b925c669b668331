"""Pure data of the flow: spec, lock, receipts, plan, hashes and URLs (no engines, no processes)."""
