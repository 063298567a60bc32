/*-------------------------------------------------------------------------
 *
 * mirror.h
 *	  The worker's side of mirrors: running the remote actions that
 *	  sql/install/6?_mirror_*.sql plan, outside transactions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_MIRROR_H
#define DM_MIRROR_H

#include "group_step.h"

/*
 * group step phase: advance and refresh every mirror of a group; status
 * reads go through the I/O engine (DM_PHASE_WAITING until it answers)
 */
extern DmPhaseResult DmMirrorPhase(DmGroupRun *run);

/*
 * worker pass: retry due cleanups of dropped mirrors (postgres ones in the
 * I/O engine, recorded when it answers); never raises
 */
extern void DmRunMirrorCleanups(void);
extern void DmMirrorCleanupsDiscard(void);

#endif							/* DM_MIRROR_H */
