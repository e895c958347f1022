-- ScanReport v2 carries the owning team (for per-team rollups). The column sits after
-- repo_type, in the order of ScanResultRow.
ALTER TABLE scan_results ADD COLUMN team String AFTER repo_type
