/*-------------------------------------------------------------------------
 *
 * fence.h
 *	  The write fence: per-database refusal of client writes, enforced by
 *	  the preloaded library on every managed node.
 *
 * Interface for other parts of driftmirror (the promotion code included):
 *
 *	 C (same node):
 *	   DmFenceInit()            from _PG_init while preloading: hooks + shmem
 *	   DmFenceModeOf(dboid)     the fence mode of a database (shared memory)
 *	   DmFenceSet(dboid, mode)  fence a database of this node; persisted
 *	   DmFenceClear(dboid)      lift it; persisted; returns the old mode
 *	   DmFenceBypass            backend-local: true in driftmirror's own
 *	                            sessions, which the fence lets through
 *
 *	 SQL (any node, over libpq, connected to the database to fence; needs
 *	 CREATE EXTENSION driftmirror_node in that database, which has no
 *	 tables and can live beside the application's schema; superuser or
 *	 driftmirror_admin only):
 *	   driftmirror_node.fence_set(mode text) -> text   previous mode
 *	   driftmirror_node.fence_clear() -> text          previous mode
 *	   driftmirror_node.fence_status() -> setof (database, mode, since)
 *	   driftmirror_node.session_bypass() -> void       this session passes
 *	 fence_set and fence_clear return once the fence file holds the change,
 *	 or at once with driftmirror.fence_durable off (superuser setting; the
 *	 same call made again with it on writes the file: see ChangeFence).
 *
 * Modes: 'mirror' (a replica: client writes refused while logical
 * replication applies) and 'switchover' (a primary being switched over:
 * same enforcement, recorded separately so that tools know why).  In both
 * modes logical replication workers and driftmirror's own sessions pass.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_FENCE_H
#define DM_FENCE_H

typedef enum DmFenceMode
{
	DM_FENCE_NONE = 0,
	DM_FENCE_MIRROR,
	DM_FENCE_SWITCHOVER
} DmFenceMode;

/* most databases one node can have fenced at once */
#define DM_FENCE_MAX_DATABASES	64

/* file in the data directory holding the fenced databases */
#define DM_FENCE_FILE			"driftmirror_fence"

extern bool DmFenceBypass;

extern void DmFenceInit(void);
extern bool DmFenceAvailable(void);
extern DmFenceMode DmFenceModeOf(Oid dboid);
extern DmFenceMode DmFenceSet(Oid dboid, DmFenceMode mode);
extern DmFenceMode DmFenceClear(Oid dboid);
extern const char *DmFenceModeName(DmFenceMode mode);
extern DmFenceMode DmFenceModeFromName(const char *name);

#endif							/* DM_FENCE_H */
