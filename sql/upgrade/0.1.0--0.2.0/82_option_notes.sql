-- 82_option_notes.sql: option descriptions of 0.2.0: scale_cooldown holds
-- after any scale action.  (drift_threshold's description and default,
-- now that drift acts, are set by 85_drift.sql.)
UPDATE driftmirror.option_def
   SET description = 'minimum time after a scale action before capacity is reduced'
 WHERE scope = 'group' AND key = 'scale_cooldown';
