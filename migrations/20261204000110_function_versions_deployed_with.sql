-- Which tool deployed a version: Lasso's own CLI (`lasso deploy`, POST /scripts/deploy) or
-- Nango's (`nango deploy`, POST /sync/deploy), so the dashboard can say so.
ALTER TABLE function_versions
    ADD COLUMN deployed_with TEXT NOT NULL DEFAULT 'lasso'
        CHECK (deployed_with IN ('lasso', 'nango'));
