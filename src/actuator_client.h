/*-------------------------------------------------------------------------
 *
 * actuator_client.h
 *	  The client side of the HTTP actuator contract (docs/mirrors.md): one
 *	  request to an actuator and its answer (actuator_client.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_ACTUATOR_CLIENT_H
#define DM_ACTUATOR_CLIENT_H

/*
 * One request to an HTTP actuator (mirrors, and the promotion of their
 * resources: promote_actuator.c; scaling: scaling_phase.c), run outside any transaction.
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

/* send one request, no retry; never raises except for interrupts */
extern void DmActuatorPerform(const DmActuatorRequest *req, DmActuatorAnswer *answer);

#endif							/* DM_ACTUATOR_CLIENT_H */
