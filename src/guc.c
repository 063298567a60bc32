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
int			DmConnectTimeoutMs = 10000;
int			DmRemoteTimeoutMs = 60000;
char	   *DmPromoteTestPause = NULL;

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

	DefineCustomIntVariable("driftmirror.connect_timeout",
							"How long driftmirror waits for a connection to a node.",
							NULL,
							&DmConnectTimeoutMs,
							10000,
							100,
							10 * 60 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("driftmirror.remote_timeout",
							"How long driftmirror waits for one statement on a node.",
							"The statement is cancelled on the node when the time is up.",
							&DmRemoteTimeoutMs,
							60000,
							100,
							60 * 60 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("driftmirror.promote_test_pause",
							   "Fault injection for tests: the promotion driver pauses before a step.",
							   "Format \"step:milliseconds\", for example \"catch_up:5000\"; empty: never.",
							   &DmPromoteTestPause,
							   "",
							   PGC_SUSET,
							   GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("driftmirror");
}
