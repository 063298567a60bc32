/*-------------------------------------------------------------------------
 *
 * actuator_client.h
 *	  The client side of the HTTP actuator contract (docs/mirrors.md, "HTTP
 *	  actuator contract"): one request to an actuator and its answer, with
 *	  a structured kind of outcome (actuator_client.c).
 *
 * Callers: mirror.c (create, status, delete), promote_actuator.c
 * (promote, abort), scaling_phase.c (scale).  What a request says and what
 * an answer's body means is decided in SQL (sql/install/6?_mirror_*.sql,
 * 72_promotion_actuator.sql, 58_scaling_phase.sql); this module sends the
 * request as the contract says (JSON body, Idempotency-Key, bearer token,
 * no redirects, one deadline, no retry) and classifies the outcome.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_ACTUATOR_CLIENT_H
#define DM_ACTUATOR_CLIENT_H

/* one request to an actuator, run outside any transaction */
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

/* what came of a request: callers test this, never the message text */
typedef enum DmActuatorErrorKind
{
	DM_ACT_OK = 0,				/* an answer with a 2xx status */
	DM_ACT_ERR_TOKEN,			/* the bearer token file could not be read:
								 * nothing was sent */
	DM_ACT_ERR_CONNECT,			/* the actuator could not be resolved or
								 * reached */
	DM_ACT_ERR_TIMEOUT,			/* no complete answer within the timeout */
	DM_ACT_ERR_TOO_LARGE,		/* an answer over http_max_response_size */
	DM_ACT_ERR_TRANSPORT,		/* no answer for another reason (reset, TLS,
								 * protocol) */
	DM_ACT_ERR_HTTP_4XX,		/* an answer with a 4xx status */
	DM_ACT_ERR_HTTP_5XX,		/* an answer with a 5xx status */
	DM_ACT_ERR_BAD_RESPONSE		/* an answer with another status, or a body
								 * that is not text in the server encoding */
} DmActuatorErrorKind;

typedef struct DmActuatorAnswer
{
	DmActuatorErrorKind kind;
	bool		answered;		/* an HTTP answer arrived (any status) */
	int			status;			/* its status */
	char	   *body;			/* its body: text valid in the server
								 * encoding, or a note saying it was not */
	char	   *sqlstate;		/* not answered: 08000, or 58P01 (token) */
	char	   *error;			/* not answered: why, naming the label only */
	char	   *detail;			/* libcurl's reason (may name the host) */
} DmActuatorAnswer;

/*
 * send one request, no retry; never raises except for interrupts; strings
 * palloc'd in the current memory context
 */
extern void DmActuatorPerform(const DmActuatorRequest *req, DmActuatorAnswer *answer);

/*
 * The same request through the worker's I/O engine (io_engine.c), without
 * waiting: DmActuatorStart hands it over and returns the call (in cxt);
 * when the answer (or the deadline) comes, the engine's wait fills
 * call->answer, sets call->done and calls callback(call, arg).  A request
 * that cannot be sent (the token file unreadable) is done at once, without
 * the callback: check call->done after DmActuatorStart.  DmActuatorCancel
 * drops a call in flight (no callback).  The token is wiped as soon as the
 * request is handed over.  Raises only for interrupts or out of memory.
 */
typedef struct DmActuatorCall DmActuatorCall;
typedef void (*DmActuatorDone) (DmActuatorCall *call, void *arg);

struct DmActuatorCall
{
	DmActuatorAnswer answer;	/* valid once done */
	bool		done;
	/* private */
	DmActuatorRequest req;		/* the label and timeout (for the answer) */
	DmActuatorDone callback;
	void	   *arg;
	struct DmIoHttpRequest *io; /* in flight, or NULL */
	MemoryContext cxt;
};

extern DmActuatorCall *DmActuatorStart(const DmActuatorRequest *req, MemoryContext cxt,
									   DmActuatorDone callback, void *arg);
extern void DmActuatorCancel(DmActuatorCall *call);

#endif							/* DM_ACTUATOR_CLIENT_H */
