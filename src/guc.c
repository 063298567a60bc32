/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  driftmirror.* settings.
 *
 * driftmirror.database is PGC_SIGHUP: the worker notices a change on
 * reload and exits so that the postmaster restarts it connected to the new
 * database.  The tunables are PGC_SIGHUP as well.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "driftmirror.h"

char	   *DmDatabase = NULL;
bool		DmEnabled = true;
int			DmNaptimeMs = 1000;

/*
 * DmDefineSettings
 *		Define the driftmirror.* GUCs.  Called once from _PG_init.
 */
void
DmDefineSettings(void)
{
	DefineCustomStringVariable("driftmirror.database",
							   "Database that holds driftmirror's catalog and where its worker runs.",
							   "Changing it restarts the worker.",
							   &DmDatabase,
							   "postgres",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("driftmirror.enabled",
							 "Whether the driftmirror worker runs monitoring steps.",
							 "When off the worker stays connected but idle.",
							 &DmEnabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("driftmirror.naptime",
							"How long the worker sleeps between passes over the groups.",
							"Each group still runs only on its own interval.",
							&DmNaptimeMs,
							1000,
							10,
							60 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("driftmirror");
}
