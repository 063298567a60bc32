-- 82_option_notes.sql: option descriptions of 0.2.0: drift_threshold is
-- not acted on yet (drift is not computed in this release); scale_cooldown
-- holds after any scale action.
UPDATE driftmirror.option_def
   SET description = 'relative divergence of a mirror from its primary that counts as drift (not acted on yet)'
 WHERE scope = 'group' AND key = 'drift_threshold';
UPDATE driftmirror.option_def
   SET description = 'minimum time after a scale action before capacity is reduced'
 WHERE scope = 'group' AND key = 'scale_cooldown';
