/*-------------------------------------------------------------------------
 *
 * scaling.h
 *	  The worker's forecast phase: models, forecasts and scaling decisions
 *	  of a group's resources (sql/install/58_scaling_phase.sql).
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_SCALING_H
#define DM_SCALING_H

#include "group_step.h"

/*
 * group step phase: forecasts, decisions, and the HTTP scale requests in
 * the I/O engine (DM_PHASE_WAITING until every one is answered)
 */
extern DmPhaseResult DmForecastPhase(DmGroupRun *run);

#endif							/* DM_SCALING_H */
