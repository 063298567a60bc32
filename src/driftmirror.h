/*-------------------------------------------------------------------------
 *
 * driftmirror.h
 *	  Declarations shared by the driftmirror library: settings (GUCs), the
 *	  background worker entry point and the per-group monitoring step.
 *
 * Every exported symbol carries a Dm/dm_ prefix: all loaded libraries share
 * one symbol namespace.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DRIFTMIRROR_H
#define DRIFTMIRROR_H

#include "fmgr.h"

#define DM_EXTENSION_NAME	"driftmirror"
#define DM_SCHEMA_NAME		"driftmirror"
#define DM_WORKER_TYPE		"driftmirror"

/* settings (guc.c) */
extern char *DmDatabase;
extern bool DmEnabled;
extern int	DmNaptimeMs;
extern int	DmWorkerStatementTimeoutMs;
extern int	DmConnectTimeoutMs;
extern int	DmRemoteTimeoutMs;
extern int	DmLatencyProbeTimeoutMs;
extern int	DmHttpMaxResponseKb;
extern int	DmMetricMaintenanceS;
extern char *DmPromoteTestPause;
extern int	DmForecastWorkMemKb;
extern char *DmS3Endpoint;
extern char *DmNotifyWebhookUrl;
extern char *DmNotifyWebhookKeyFile;
extern int	DmNotifyWebhookTimeoutMs;
extern char *DmS3Region;
extern char *DmS3AccessKeyId;
extern char *DmS3SecretFile;
extern char *DmRouterFilesDirectory;
extern bool DmFenceDurable;

extern void DmDefineSettings(void);

/* background worker (worker.c) */
extern void DmRegisterWorker(void);
extern PGDLLEXPORT void DmWorkerMain(Datum main_arg);

/*
 * metric collection and store maintenance (collector.c); never raise.  The
 * polls run in the I/O engine (io_engine.c), driven by the worker's nap.
 */
extern void DmCollectMetrics(int64 *group_ids, int ngroups);
extern void DmMaybeRunMetricMaintenance(bool force);
extern void DmCollectorDiscard(void);

/* notify_webhook.c: posts run in the I/O engine; neither raises */
extern void DmDeliverNotifications(void);
extern void DmNotifyDiscard(void);

#endif							/* DRIFTMIRROR_H */
