/*-------------------------------------------------------------------------
 *
 * io_socket.h
 *	  Raw-socket requests of the I/O engine: connect to a unix or TCP
 *	  socket, send a few bytes, read the answer until the peer closes, all
 *	  before one deadline (io_socket.c).  For line protocols such as
 *	  HAProxy's runtime API in its non-interactive mode.
 *
 * Interface (declared in io_engine.h, with the other requests):
 *
 *	 req = DmIoSocketRequestCreate(cxt, endpoint, label)
 *		endpoint: "unix:/path", "tcp:addr:port" or "addr:port" with a
 *		numeric address (no name lookup, so nothing can block on DNS); the
 *		caller fills send, timeout_ms, max_answer, callback and arg
 *	 DmIoSocketStart(req)
 *	 DmIoSocketCancel(req)
 *
 * Below: the engine's side (io_engine.c only), which puts the sockets of
 * the requests in flight into its WaitEventSet, hands their events back,
 * ends those past their deadline and runs the callbacks of the finished
 * ones after its wait.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_IO_SOCKET_H
#define DM_IO_SOCKET_H

#include "datatype/timestamp.h"
#include "storage/latch.h"

extern int	DmIoSocketInFlight(void);
extern int	DmIoSocketAddWaitEvents(WaitEventSet *set);
extern void DmIoSocketReady(void *user_data, uint32 events);
extern TimestampTz DmIoSocketExpire(TimestampTz now);
extern bool DmIoSocketAnyFinished(void);
extern void DmIoSocketRunCallbacks(void);
extern int	DmIoSocketCount(void);
extern void DmIoSocketDiscardAll(void);

#endif							/* DM_IO_SOCKET_H */
