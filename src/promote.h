/*-------------------------------------------------------------------------
 *
 * promote.h
 *	  Promotion (switchover) of a mirror to primary, in layers:
 *
 *	  promote.c            the SQL side (dm_promote) and the main worker's
 *	                       hooks (recovery, auto-promotion): they start the
 *	                       driver and, for dm_promote, wait for it
 *	  promote_driver.c     the driver: a dynamic background worker (entry,
 *	                       request and result in DSM, the promotion's lock)
 *	                       that dispatches by kind to one of
 *	  promote_postgres.c   the PostgreSQL switchover (promote_postgres.h)
 *	  promote_actuator.c   the switchover through an HTTP actuator
 *	                       (promote_actuator.h, over actuator_client.c)
 *
 * The two switchovers are siblings: neither calls the other nor the
 * driver; both read and write the control database through ctl_txn.c.
 *
 * A promotion is driven by exactly one process at a time: the one holding
 * the session-level advisory lock (DM_PROMOTION_LOCK_KEY, promotion id) in
 * the control database.  The driver takes it in the transaction that
 * records a new promotion; recovery takes it with a try-lock, so a
 * promotion whose driver died (lock released) is found and finished or
 * rolled back by the next group step of the main worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_PROMOTE_H
#define DM_PROMOTE_H

#include "postmaster/bgworker.h"
#include "storage/dsm.h"

#include "ctl_txn.h"

/* first key of the advisory locks that mark a promotion as driven */
#define DM_PROMOTION_LOCK_KEY	6581616 /* 0x646d70, "dmp" */

/* request and result exchanged between dm_promote and its worker (DSM) */
typedef struct DmPromoteShared
{
	/* request, written by dm_promote */
	char		group_name[NAMEDATALEN * 2];
	char		resource_name[NAMEDATALEN * 2];
	char		trigger[16];
	char		reason[256];
	char		requested_by[NAMEDATALEN];
	char		options[8192];

	/* result, written by the worker; "done" is set last */
	int64		promotion_id;
	bool		ok;
	DmCtlSavedError error;		/* when not ok: raised again by dm_promote */
	char		new_primary[1024];
	char		fence_lsn[32];
	double		pause_ms;
	bool		no_pause;		/* actuator promotions: pause_ms is NULL */
	volatile bool done;
} DmPromoteShared;

/* the driver's entry point (promote_driver.c) */
extern PGDLLEXPORT void DmPromotionWorkerMain(Datum main_arg);

/*
 * start a driver (promote_driver.c): with a DSM request from dm_promote,
 * or to recover promotion recover_id, or to auto-promote resource
 * auto_resource_id
 */
extern bool DmStartPromotionWorker(dsm_segment *seg, int64 recover_id,
								   int64 auto_resource_id,
								   BackgroundWorkerHandle **handle);

/* main worker's group step: recover the group's orphaned promotions */
extern void DmRecoverPromotions(int64 group_id);

/* main worker's group step: auto-promotion decisions */
extern void DmAutoPromote(int64 group_id);

/*
 * DmPromoteFailed
 *		For a waiting dm_promote (shared may be NULL): the promotion failed
 *		with edata, its message after prefix.
 */
static inline void
DmPromoteFailed(DmPromoteShared *shared, const ErrorData *edata, const char *prefix)
{
	if (shared == NULL)
		return;
	shared->ok = false;
	DmCtlSaveError(&shared->error, edata, prefix);
}

#endif							/* DM_PROMOTE_H */
