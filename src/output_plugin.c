/*-------------------------------------------------------------------------
 *
 * output_plugin.c
 *	  The origin-filtering logical decoding output plugin "driftmirror".
 *
 * PostgreSQL 15 has no "origin = none" subscription option, so two nodes
 * that publish to each other would send every change back and forth
 * forever.  This plugin is pgoutput with one difference: its
 * filter_by_origin callback drops every change that carries a replication
 * origin, i.e. every change that was itself applied by a logical
 * replication apply worker.  Only locally originated changes are sent, so a
 * two-way pair of subscriptions never loops.
 *
 * Everything else (protocol, publications, streaming, two-phase, binary) is
 * pgoutput's own code: we load pgoutput's _PG_output_plugin_init with
 * load_external_function and call it, then replace one callback.
 *
 * Use: create the slot with pg_create_logical_replication_slot(name,
 * 'driftmirror') and subscribe with create_slot = false, slot_name = name.
 * On this PostgreSQL build a library must be listed in the superuser GUC
 * output_plugin_libraries to be used as an output plugin, so nodes need
 * output_plugin_libraries = 'pgoutput, driftmirror'.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/output_plugin.h"

#include "driftmirror.h"

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

static bool DmFilterByOrigin(LogicalDecodingContext *ctx,
							 RepOriginId origin_id);

/*
 * _PG_output_plugin_init
 *		Fill in pgoutput's callbacks, then replace its origin filter.
 *		Raises an error if pgoutput cannot be loaded.
 */
void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	LogicalOutputPluginInit pgoutput_init;

	pgoutput_init = (LogicalOutputPluginInit)
		load_external_function("pgoutput", "_PG_output_plugin_init",
							   true, NULL);
	pgoutput_init(cb);

	cb->filter_by_origin_cb = DmFilterByOrigin;
}

/*
 * DmFilterByOrigin
 *		Returns true (filter out) for changes replayed from another node,
 *		false for changes made on this node.
 */
static bool
DmFilterByOrigin(LogicalDecodingContext *ctx, RepOriginId origin_id)
{
	return origin_id != InvalidRepOriginId;
}
