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

/* group step phase: forecast, decide and scale; may raise on catalog errors */
extern void DmRunForecastPhase(int64 group_id);

#endif							/* DM_SCALING_H */
