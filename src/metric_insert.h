/*-------------------------------------------------------------------------
 *
 * metric_insert.h
 *	  Writing checked samples into driftmirror.metric (metric_insert.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_METRIC_INSERT_H
#define DM_METRIC_INSERT_H

#include "postgres.h"

extern uint64 DmMetricInsert(int64 resource_id, int16 metric_id,
							 const Datum *ts, const Datum *val, int n);

#endif							/* DM_METRIC_INSERT_H */
