-- 82_option_notes.sql: dm_options says which group options are not acted
-- on yet (the worker's forecast phase has not landed).
UPDATE driftmirror.option_def
   SET description = 'off: monitor only; forecast_only: forecast and record what would be done; forecast_and_scale: also act (not acted on yet: the worker has no forecast phase)'
 WHERE scope = 'group' AND key = 'mode';
UPDATE driftmirror.option_def
   SET description = 'relative divergence of a mirror from its primary that counts as drift (not acted on yet)'
 WHERE scope = 'group' AND key = 'drift_threshold';
