/*-------------------------------------------------------------------------
 *
 * endpoint.h
 *	  Validation of resource endpoints (conninfo strings and URLs).
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_ENDPOINT_H
#define DM_ENDPOINT_H

extern void DmCheckConninfo(const char *conninfo);
extern void DmCheckUrl(const char *url);

#endif							/* DM_ENDPOINT_H */
