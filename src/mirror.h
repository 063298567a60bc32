/*-------------------------------------------------------------------------
 *
 * mirror.h
 *	  The worker's side of mirrors: running the remote actions that
 *	  sql/install/6?_mirror_*.sql plan, outside transactions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_MIRROR_H
#define DM_MIRROR_H

#include "group_step.h"

/*
 * One request to an HTTP actuator (mirrors, and the promotion of their
 * resources: promote_actuator.c), run outside any transaction.
 */
typedef struct DmActuatorRequest
{
	const char *label;			/* "<group>/<resource> actuator": names the
								 * actuator in errors (never its URL) */
	const char *method;
	const char *url;
	const char *body;			/* JSON, or NULL */
	const char *idempotency_key;	/* or NULL */
	const char *token_file;		/* bearer_token_file, or NULL */
	int			timeout_ms;		/* <= 0: 10 s */
} DmActuatorRequest;

typedef struct DmActuatorAnswer
{
	bool		answered;		/* an HTTP answer arrived (any status) */
	int			status;			/* its status */
	char	   *body;			/* its body: text valid in the server
								 * encoding, or a note saying it was not */
	char	   *sqlstate;		/* not answered: 08000, or 58P01 (token) */
	char	   *error;			/* not answered: why, naming the label only */
	char	   *detail;			/* libcurl's reason (may name the host) */
} DmActuatorAnswer;

/* send one request, no retry; never raises except for interrupts */
extern void DmActuatorPerform(const DmActuatorRequest *req, DmActuatorAnswer *answer);

/*
 * group step phase: advance and refresh every mirror of a group; status
 * reads go through the I/O engine (DM_PHASE_WAITING until it answers)
 */
extern DmPhaseResult DmMirrorPhase(DmGroupRun *run);

/*
 * worker pass: retry due cleanups of dropped mirrors (postgres ones in the
 * I/O engine, recorded when it answers); never raises
 */
extern void DmRunMirrorCleanups(void);
extern void DmMirrorCleanupsDiscard(void);

#endif							/* DM_MIRROR_H */
