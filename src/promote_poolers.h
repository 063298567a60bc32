/*-------------------------------------------------------------------------
 *
 * promote_poolers.h
 *	  What a PostgreSQL promotion does with the group's pgbouncer routers:
 *	  PAUSE their database before the fence, point it at the new primary
 *	  and RESUME it after the flip, RESUME it on every rollback.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_PROMOTE_POOLERS_H
#define DM_PROMOTE_POOLERS_H

#include "datatype/timestamp.h"

/*
 * PAUSE the database of every pgbouncer router (write access) of the
 * promotion's resource: first its [databases] file pointing at new_primary
 * is written beside the router's file, the router is recorded in
 * promotion.poolers_paused and its admin console session opened; the
 * session stays open for DmPoolersSwitchResume.  Waits until deadline at
 * most.  *details is NULL, or a JSON object with the number paused and the
 * longest PAUSE wait (ms) for the step log.  Raises on failure (the caller
 * rolls back, and the rollback resumes what was recorded).
 */
extern void DmPoolersPause(int64 promotion_id, const char *new_primary,
						   TimestampTz deadline, char **details);

/*
 * After the flip and the unfence: on each session DmPoolersPause left
 * open, put the prepared file in place, RELOAD, RECONNECT, check with SHOW
 * DATABASES and RESUME, with no control-database transaction in between;
 * then clear the records and bring the router rows up to date, and
 * resume through new sessions whatever is still recorded (a recovery, a
 * session that broke).  *details is NULL or a JSON object with the
 * switch's timings (ms).  Raises if one could not be resumed (it stays
 * recorded, the caller's retry resumes it).
 */
extern void DmPoolersSwitchResume(int64 promotion_id, char **details);

/*
 * RESUME every pooler the promotion recorded as paused, after pointing it
 * at the node its routes name when switch_first; then clear the record.
 * Drops what DmPoolersPause prepared.  A no-op when none is recorded.
 * Raises if one could not be resumed (it stays recorded, the caller's
 * retry resumes it).
 */
extern void DmPoolersResume(int64 promotion_id, bool switch_first);

/* close the sessions DmPoolersPause left open, remove its prepared files */
extern void DmPoolersRelease(void);

#endif							/* DM_PROMOTE_POOLERS_H */
