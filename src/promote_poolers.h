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
 * promotion's resource, each recorded in promotion.poolers_paused before
 * it is asked; waits until deadline at most.  Raises on failure (the
 * caller rolls back, and the rollback resumes what was recorded).
 */
extern void DmPoolersPause(int64 promotion_id, TimestampTz deadline);

/*
 * RESUME every pooler the promotion recorded as paused, after pointing it
 * at the node its routes name when switch_first (after the flip); then
 * clear the record.  A no-op when none is recorded.  Raises if one could
 * not be resumed (it stays recorded, the caller's retry resumes it).
 */
extern void DmPoolersResume(int64 promotion_id, bool switch_first);

#endif							/* DM_PROMOTE_POOLERS_H */
