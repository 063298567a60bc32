/*-------------------------------------------------------------------------
 *
 * ctl_txn.c
 *	  Small SPI helpers: connect and run one parameterised statement,
 *	  raising an error on failure.  Statements are always parameterised;
 *	  nothing here pastes values into SQL text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/timeout.h"

#include "ctl_txn.h"

/*
 * DmSpiConnect
 *		SPI_connect, raising an error if it fails.
 */
void
DmSpiConnect(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/*
 * DmSpiExec
 *		Execute one statement with parameters (none NULL).  Returns the SPI
 *		result code; raises an error if the statement failed.  Results are
 *		in SPI_tuptable / SPI_processed.
 */
int
DmSpiExec(const char *sql, int nargs, Oid *argtypes, Datum *values)
{
	volatile int rc = 0;
	volatile bool armed = false;

	if (IsBackgroundWorker && StatementTimeout > 0 &&
		!get_timeout_active(STATEMENT_TIMEOUT))
	{
		enable_timeout_after(STATEMENT_TIMEOUT, StatementTimeout);
		armed = true;
	}
	PG_TRY();
	{
		rc = SPI_execute_with_args(sql, nargs, argtypes, values, NULL, false, 0);
	}
	PG_FINALLY();
	{
		if (armed)
			disable_timeout(STATEMENT_TIMEOUT, false);
	}
	PG_END_TRY();
	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed for \"%s\": %s",
			 sql, SPI_result_code_string(rc));
	return rc;
}
