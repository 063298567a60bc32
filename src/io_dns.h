/*-------------------------------------------------------------------------
 *
 * io_dns.h
 *	  Host name resolution with a deadline, for libpq connections.
 *
 * Interface:
 *
 *	 if (DmResolveConninfo(conninfo, label, deadline, &hosts, &addrs, &ports))
 *		 pass host=hosts hostaddr=addrs port=ports to libpq after the
 *		 conninfo (later keywords win), so that libpq connects to addresses
 *		 and never resolves a name itself (libpq resolves synchronously,
 *		 beyond any deadline and deaf to interrupts).
 *
 *	 Returns false when there is nothing to resolve (no host, only Unix
 *	 sockets and numeric addresses, or hostaddr already given) or the
 *	 conninfo does not parse (libpq then reports it).  Raises
 *	 ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION, naming the node by
 *	 its label (the host name only in the detail), when no name resolves,
 *	 when the deadline passes, or for an interrupt.  Strings are palloc'd
 *	 in the current memory context.
 *
 * The same in pieces, for callers that drive many connections at once
 * (io_engine.c) and poll instead of waiting:
 *
 *	 d = DmResolveStart(conninfo, label)
 *		start the lookups; NULL when there is nothing to resolve (as above).
 *		Raises when the lookups cannot start.
 *	 DmResolvePending(d)    whether a lookup is still running
 *	 DmResolveFinish(d, label, &hosts, &addrs, &ports)
 *		once none is pending: the lists as above, or an error when no name
 *		resolved; releases the lookups
 *	 DmResolveRelease(d)    give up (a deadline, an error): release them
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_IO_DNS_H
#define DM_IO_DNS_H

#include "datatype/timestamp.h"

typedef struct DmDnsLookups DmDnsLookups;

extern DmDnsLookups *DmResolveStart(const char *conninfo, const char *label);
extern bool DmResolvePending(DmDnsLookups *d);
extern void DmResolveFinish(DmDnsLookups *d, const char *label, char **hosts,
							char **hostaddrs, char **ports);
extern void DmResolveRelease(DmDnsLookups *d);
extern bool DmResolveConninfo(const char *conninfo, const char *label,
							  TimestampTz deadline, char **hosts,
							  char **hostaddrs, char **ports);

#endif							/* DM_IO_DNS_H */
