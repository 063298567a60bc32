/*-------------------------------------------------------------------------
 *
 * group_step.h
 *	  The monitoring step of one group as a resumable sequence of phases.
 *
 * Interface (worker.c):
 *
 *	 run = DmGroupStepCreate(group_id, group_name)
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

#include "datatype/timestamp.h"

typedef enum DmPhaseResult
{
	DM_PHASE_DONE,
	DM_PHASE_WAITING
} DmPhaseResult;

typedef struct DmGroupRun
{
	int64		group_id;
	char	   *group_name;
	TimestampTz started;		/* when the step began */
	int			phase;			/* index of the phase to run or resume */
	bool		ready;			/* the engine answered the waiting phase */
	void	   *phase_state;	/* the waiting phase's own state, or NULL */
	MemoryContext cxt;			/* everything of this step; freed with it */
} DmGroupRun;

extern DmGroupRun *DmGroupStepCreate(int64 group_id, const char *group_name);
extern bool DmGroupStepAdvance(DmGroupRun *run);
extern void DmGroupStepFree(DmGroupRun *run);

/* the I/O engine's callback for a waiting phase: marks the run ready */
extern void DmGroupStepWake(void *run);

#endif							/* DM_GROUP_STEP_H */
