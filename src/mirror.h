/*-------------------------------------------------------------------------
 *
 * mirror.h
 *	  The worker's side of mirrors: running the remote actions that
 *	  sql/install/60_mirrors.sql plans, outside transactions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_MIRROR_H
#define DM_MIRROR_H

/* group step phase: advance and refresh every mirror of a group */
extern void DmRunMirrorPhase(int64 group_id, TimestampTz step_started);

/* worker pass: retry due cleanups of dropped mirrors; never raises */
extern void DmRunMirrorCleanups(void);

#endif							/* DM_MIRROR_H */
