/*-------------------------------------------------------------------------
 *
 * endpoint.h
 *	  Validation of resource endpoints (conninfo strings and URLs), the
 *	  client form of a conninfo, and the passfile hint of a failed login.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_ENDPOINT_H
#define DM_ENDPOINT_H

#include "lib/stringinfo.h"

extern void DmCheckConninfo(const char *conninfo);
extern char *DmConninfoProblem(const char *conninfo);
extern void DmCheckUrl(const char *url);
extern void DmAppendConnValue(StringInfo buf, const char *v);
extern char *DmClientConninfo(const char *conninfo);
extern int	DmPassfileHint(const char *libpq_message);
extern bool DmCallerIsSuperuser(void);

#endif							/* DM_ENDPOINT_H */
