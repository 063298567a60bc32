/*-------------------------------------------------------------------------
 *
 * driftmirror.c
 *	  Library entry point.  _PG_init defines the settings and, when the
 *	  library is listed in shared_preload_libraries, registers the
 *	  background worker.  Loaded any other way (CREATE EXTENSION in a
 *	  session) the SQL functions work but no worker runs; dm_status says so.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "driftmirror.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	DmDefineSettings();

	if (!process_shared_preload_libraries_in_progress)
		return;

	DmRegisterWorker();
}
