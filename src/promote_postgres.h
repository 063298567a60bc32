/*-------------------------------------------------------------------------
 *
 * promote_postgres.h
 *	  The PostgreSQL switchover (promote_postgres.c), run by the promotion
 *	  driver (promote_driver.c) for promotions of kind postgres.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_PROMOTE_POSTGRES_H
#define DM_PROMOTE_POSTGRES_H

#include "promote.h"

/*
 * Run (or, recovering, finish or roll back) PostgreSQL promotion id to its
 * end.  The caller holds the promotion's advisory lock.  Outcomes go to
 * the catalog and, for a waiting dm_promote, to *shared (may be NULL).
 * Raises only when the promotion cannot be read at all (and on interrupts):
 * the recovery drives it again.  Memory in the current context.
 */
extern void DmDrivePostgresPromotion(int64 id, bool recovering,
									 DmPromoteShared *shared);

#endif							/* DM_PROMOTE_POSTGRES_H */
