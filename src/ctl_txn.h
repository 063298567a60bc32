/*-------------------------------------------------------------------------
 *
 * ctl_txn.h
 *	  Small SPI helpers used by the worker and the C parts of the SQL API.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_CTL_TXN_H
#define DM_CTL_TXN_H

#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"

extern void DmSpiConnect(void);
extern int	DmSpiExec(const char *sql, int nargs, Oid *argtypes, Datum *values);

#endif							/* DM_CTL_TXN_H */
