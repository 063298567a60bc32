/*-------------------------------------------------------------------------
 *
 * contract.h
 *	  The typed contract between driftmirror's library and its SQL: the
 *	  result columns the C code reads, by name and type, and the promotion
 *	  states that are final (contract.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_CONTRACT_H
#define DM_CONTRACT_H

#include "postgres.h"

#include "access/tupdesc.h"

/*
 * DmPromotionStateIsFinal: whether a promotion state ends a promotion; the
 * same set as driftmirror._promotion_is_final() in SQL.
 */
extern bool DmPromotionStateIsFinal(const char *state);

/*
 * DmContractAttnum: the attribute number of column name in desc (a result
 * of SQL object what), checked to be of type type; raises a clear error when
 * it is missing or of another type.  Look it up once per result.
 */
extern int	DmContractAttnum(TupleDesc desc, const char *what, const char *name, Oid type);

/*
 * DmContractCheck: raise if the installed SQL does not offer the columns the
 * library reads (or disagrees on final states); needs a transaction.
 */
extern void DmContractCheck(void);

#endif							/* DM_CONTRACT_H */
