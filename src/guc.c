/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  driftmirror.* settings.
 *
 * driftmirror.database is PGC_SIGHUP: the worker notices a change on
 * reload and exits so that the postmaster restarts it connected to the new
 * database.  The tunables are PGC_SIGHUP as well; forecast_work_mem is
 * PGC_SUSET (see there).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "driftmirror.h"

char	   *DmDatabase = NULL;
bool		DmEnabled = true;
int			DmNaptimeMs = 1000;
int			DmWorkerStatementTimeoutMs = 60000;
int			DmConnectTimeoutMs = 10000;
int			DmRemoteTimeoutMs = 60000;
int			DmLatencyProbeTimeoutMs = 1000;
int			DmHttpMaxResponseKb = 16 * 1024;
int			DmMetricMaintenanceS = 60;
char	   *DmPromoteTestPause = NULL;
int			DmForecastWorkMemKb = 64 * 1024;
char	   *DmS3Endpoint = NULL;
char	   *DmNotifyWebhookUrl = NULL;
char	   *DmNotifyWebhookKeyFile = NULL;
int			DmNotifyWebhookTimeoutMs = 5000;
char	   *DmS3Region = NULL;
char	   *DmS3AccessKeyId = NULL;
char	   *DmS3SecretFile = NULL;
char	   *DmRouterFilesDirectory = NULL;
bool		DmFenceDurable = true;

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

	DefineCustomIntVariable("driftmirror.latency_probe_timeout",
							"How long one latency probe of a mirrored node may take.",
							"A probe still running then is cancelled and counts as a sample of that many milliseconds.",
							&DmLatencyProbeTimeoutMs,
							1000,
							10,
							60 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("driftmirror.http_max_response_size",
							"Largest HTTP response driftmirror accepts (Prometheus answers, actuator replies).",
							"A larger response ends the request with an error.",
							&DmHttpMaxResponseKb,
							16 * 1024,
							16,
							1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("driftmirror.metric_maintenance_interval",
							"How often the worker runs the metric store maintenance.",
							"Partitions ahead, retention and rollups; also callable as dm_run_maintenance().",
							&DmMetricMaintenanceS,
							60,
							1,
							24 * 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("driftmirror.worker_statement_timeout",
							"Longest time one statement of the worker may run in the control database.",
							"A statement that runs longer fails that group's step; 0 means no limit.",
							&DmWorkerStatementTimeoutMs,
							60000,
							0,
							INT_MAX,
							PGC_SIGHUP,
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

	/*
	 * fence.c: off, fence_set() and fence_clear() change the fence at once
	 * and leave the fence file to a later call (a crash before it restarts
	 * the node with the fence as the file has it); the promotion driver
	 * sets it for the two fence changes inside the write pause and makes
	 * each durable before relying on it
	 */
	DefineCustomBoolVariable("driftmirror.fence_durable",
							 "Whether driftmirror_node.fence_set() and fence_clear() return only once the fence file holds the change.",
							 "Off: the change applies at once; the file is rewritten by the next fence_set() or fence_clear() of the node, and until then a crash restarts the node with the fence the file names.",
							 &DmFenceDurable,
							 true,
							 PGC_SUSET,
							 GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("driftmirror.router_files_directory",
							   "Directory where driftmirror writes the files routers include (pgbouncer [databases]).",
							   "Absolute path; empty: no router file is written (pgbouncer routers fail).",
							   &DmRouterFilesDirectory,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	/*
	 * Object storage for dm_export/dm_import (object_store.c): where, and
	 * with which credentials.  Superuser-only, and the key id hidden from
	 * other roles, so that an admin can neither point the server's
	 * credentials at a store of its choice nor read them.
	 */
	DefineCustomStringVariable("driftmirror.s3_endpoint",
							   "Base URL under which dm_export and dm_import may address objects.",
							   "An S3-compatible service with path-style URLs, e.g. https://s3.eu-west-1.amazonaws.com/my-bucket; empty disables them.",
							   &DmS3Endpoint,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("driftmirror.s3_region",
							   "Region used in the AWS Signature Version 4 of object storage requests.",
							   NULL,
							   &DmS3Region,
							   "us-east-1",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("driftmirror.s3_access_key_id",
							   "Access key id for object storage requests.",
							   NULL,
							   &DmS3AccessKeyId,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("driftmirror.s3_secret_access_key_file",
							   "File in $PGDATA/driftmirror_secrets holding the secret access key for object storage.",
							   NULL,
							   &DmS3SecretFile,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	/*
	 * SUSET: every session that may call dm_forecast (the monitor role
	 * included) may use this much, so only a superuser (or a role granted
	 * SET on it) raises it.
	 */
	DefineCustomIntVariable("driftmirror.forecast_work_mem",
							"Largest working memory of one dm_forecast or dm_forecast_model call.",
							"A call that needs more fails with program_limit_exceeded.",
							&DmForecastWorkMemKb,
							64 * 1024,
							64,
							4 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	/* the notification webhook (notify_webhook.c, 85_notify.sql) */
	DefineCustomStringVariable("driftmirror.notify_webhook_url",
							   "URL to which the worker posts every action recorded in the action log.",
							   "http or https; empty: no webhook (LISTEN driftmirror_actions works regardless).",
							   &DmNotifyWebhookUrl,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("driftmirror.notify_webhook_hmac_key_file",
							   "File in $PGDATA/driftmirror_secrets with the key that signs notification webhook bodies.",
							   "Empty: bodies are not signed.",
							   &DmNotifyWebhookKeyFile,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("driftmirror.notify_webhook_timeout",
							"Longest wait for the notification webhook's answer.",
							"A post waits this long at most for its answer; the worker goes on with its other work meanwhile.",
							&DmNotifyWebhookTimeoutMs,
							5000,
							100,
							60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("driftmirror");
}
