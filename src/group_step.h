/*-------------------------------------------------------------------------
 *
 * group_step.h
 *	  The monitoring step of one group as a resumable sequence of phases.
 *
 * Interface (worker.c):
 *
 *	 work = DmGroupStepWork(result, row)
 *		the phases a group has work for, from a row of
 *		driftmirror._step_work() (columns read by name; see
 *		DM_STEP_WORK_SQL); the worker reads them for every due group in one
 *		query per pass
 *	 run = DmGroupStepCreate(group_id, group_name, work)
 *	 done = DmGroupStepAdvance(run)
 *		run phases from where the step stands until one waits for the I/O
 *		engine (false: call again once run->ready is set by the engine's
 *		callback) or every phase has run (true).  May raise an error: the
 *		caller records it against the group and frees the run.
 *	 DmGroupStepFree(run)
 *
 * A phase is a function of the run returning DM_PHASE_DONE or
 * DM_PHASE_WAITING; a waiting phase keeps its own state in
 * run->phase_state (allocated in run->cxt) and is called again, from the
 * top, once the engine has answered.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_GROUP_STEP_H
#define DM_GROUP_STEP_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"

#include "ctl_txn.h"

/*
 * What a group's step has work for: a phase whose catalog rows do not
 * exist is skipped (its transaction would find nothing).  Phases without
 * a flag always run.
 */
#define DM_WORK_PROMOTIONS	0x01	/* an unfinished promotion */
#define DM_WORK_MIRRORS		0x02	/* a mirror */
#define DM_WORK_SHIFT_PLAN	0x04	/* a running shift plan */
#define DM_WORK_ROUTERS		0x08	/* a router */
#define DM_WORK_SCALING		0x10	/* a resource that scales */
#define DM_WORK_ALL			0x1F

/*
 * The query that gives DmGroupStepWork its rows: ids is an int8[] of
 * groups; one row per group (group_id and the flags' columns)
 */
#define DM_STEP_WORK_SQL "SELECT * FROM driftmirror._step_work($1)"

typedef enum DmPhaseResult
{
	DM_PHASE_DONE,
	DM_PHASE_WAITING
} DmPhaseResult;

typedef struct DmGroupRun
{
	int64		group_id;
	char	   *group_name;
	uint32		work;			/* DM_WORK_* flags: phases with work */
	TimestampTz started;		/* when the step began */
	int			phase;			/* index of the phase to run or resume */
	bool		ready;			/* the engine answered the waiting phase */
	void	   *phase_state;	/* the waiting phase's own state, or NULL */
	MemoryContext cxt;			/* everything of this step; freed with it */
} DmGroupRun;

extern uint32 DmGroupStepWork(const DmCtlResult *r, int row);
extern DmGroupRun *DmGroupStepCreate(int64 group_id, const char *group_name,
									 uint32 work);
extern bool DmGroupStepAdvance(DmGroupRun *run);
extern void DmGroupStepFree(DmGroupRun *run);

/* the I/O engine's callback for a waiting phase: marks the run ready */
extern void DmGroupStepWake(void *run);

#endif							/* DM_GROUP_STEP_H */
