/*-------------------------------------------------------------------------
 *
 * promote_actuator.h
 *	  Promotion of mirrors of cache, app, web and service resources through
 *	  their HTTP actuator (promote_actuator.c), run by the promotion driver
 *	  (promote_driver.c) for promotions whose kind is not postgres.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_PROMOTE_ACTUATOR_H
#define DM_PROMOTE_ACTUATOR_H

#include "promote.h"

/*
 * Run (or, recovering, resume) actuator promotion id to its end; the
 * outcome goes to the catalog and, for a waiting dm_promote, to *shared
 * (may be NULL).  Never raises except for interrupts.
 */
extern void DmDriveActuatorPromotion(int64 id, bool recovering,
									 DmPromoteShared *shared);

#endif							/* DM_PROMOTE_ACTUATOR_H */
