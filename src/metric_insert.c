/*-------------------------------------------------------------------------
 *
 * metric_insert.c
 *	  Writing checked samples of one series into driftmirror.metric.
 *
 * DmMetricInsert is the store's write path for dm_ingest.  Its callers have
 * checked every element (timestamps within the accepted range, values finite,
 * no nulls) and made the partitions the rows need; resource and metric ids
 * come from the catalog.
 *
 * The direct path routes each row with the executor's partition routing
 * (ExecFindPartition, so the partition chosen is exactly the one an INSERT
 * would choose), then writes the rows of each partition with
 * table_multi_insert in batches of INSERT_BATCH, followed by the index
 * entries of whatever indexes the partition has (ExecInsertIndexTuples).
 * Nothing is serialised and parsed again, no slot is made per row, and the
 * two CHECK constraints of driftmirror.metric (metric_value_finite,
 * metric_ids_positive) are not evaluated again per row when they are the
 * only ones a partition has: the element checks of the caller and the
 * positive ids checked here prove them.
 *
 * A partition the direct path does not handle (row triggers, a foreign
 * table, another column layout or table access method, stored generated
 * columns, other CHECK constraints are fine: they are evaluated), statement
 * triggers on driftmirror.metric, or row-level security make the whole call
 * go through COPY's own machinery instead (CopyRows: binary COPY fed from
 * memory), which fires triggers and does everything COPY does.  The choice
 * is made after routing and before the first row is written.
 *
 * Memory: everything lives in the caller's context, except what
 * table_multi_insert and index insertion allocate per batch, which goes to
 * a batch context reset after each batch.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/execPartition.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "port/pg_bswap.h"
#include "utils/acl.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/timestamp.h"

#include "driftmirror.h"
#include "metric_insert.h"

/* rows per table_multi_insert call (COPY uses 1,000 as well) */
#define INSERT_BATCH	1000

/* the columns of driftmirror.metric, in order (55_metric_catalog.sql) */
static const Oid MetricColumnTypes[] = {TIMESTAMPTZOID, INT8OID, INT2OID, FLOAT8OID};

#define METRIC_NCOLUMNS lengthof(MetricColumnTypes)

/* the binary COPY stream being fed to CopyFrom (fallback path only) */
static char *IngestBuf = NULL;
static size_t IngestLen = 0;
static size_t IngestPos = 0;

/*
 * IngestSource
 *		copy_data_source_cb: hand CopyFrom the next bytes of the stream.
 */
static int
IngestSource(void *outbuf, int minread, int maxread)
{
	size_t		n = Min((size_t) maxread, IngestLen - IngestPos);

	memcpy(outbuf, IngestBuf + IngestPos, n);
	IngestPos += n;
	return (int) n;
}

static inline char *
Put16(char *p, uint16 v)
{
	v = pg_hton16(v);
	memcpy(p, &v, 2);
	return p + 2;
}

static inline char *
Put32(char *p, uint32 v)
{
	v = pg_hton32(v);
	memcpy(p, &v, 4);
	return p + 4;
}

static inline char *
Put64(char *p, uint64 v)
{
	v = pg_hton64(v);
	memcpy(p, &v, 8);
	return p + 8;
}

/*
 * CopyRows
 *		Insert n rows into driftmirror.metric through COPY FROM in binary
 *		format.  Returns the number of rows inserted.
 */
static uint64
CopyRows(int64 resource_id, int16 metric_id, const Datum *ts, const Datum *val, int n)
{
	static const char sig[11] = "PGCOPY\n\377\r\n\0";
	const size_t row_len = 2 + (4 + 8) + (4 + 8) + (4 + 2) + (4 + 8);
	char	   *p;
	int			i;
	Relation	rel;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	CopyFromState cstate;
	uint64		done;

	IngestLen = sizeof(sig) + 8 + row_len * (size_t) n + 2;
	IngestBuf = p = palloc(IngestLen);
	IngestPos = 0;
	memcpy(p, sig, sizeof(sig));
	p += sizeof(sig);
	p = Put32(p, 0);			/* flags */
	p = Put32(p, 0);			/* header extension */
	for (i = 0; i < n; i++)
	{
		float8		v = DatumGetFloat8(val[i]);
		uint64		bits;

		memcpy(&bits, &v, 8);
		p = Put16(p, 4);
		p = Put32(p, 8);
		p = Put64(p, (uint64) DatumGetTimestampTz(ts[i]));
		p = Put32(p, 8);
		p = Put64(p, (uint64) resource_id);
		p = Put32(p, 2);
		p = Put16(p, (uint16) metric_id);
		p = Put32(p, 8);
		p = Put64(p, bits);
	}
	p = Put16(p, (uint16) -1);	/* trailer */
	Assert((size_t) (p - IngestBuf) == IngestLen);

	rel = table_openrv(makeRangeVar(DM_SCHEMA_NAME, "metric", -1), RowExclusiveLock);
	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = "driftmirror.dm_ingest";
	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	nsitem->p_rte->requiredPerms = ACL_INSERT;

	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, IngestSource, NIL,
						   list_make1(makeDefElem("format", (Node *) makeString("binary"), -1)));
	done = CopyFrom(cstate);
	EndCopyFrom(cstate);
	table_close(rel, NoLock);
	free_parsestate(pstate);

	pfree(IngestBuf);
	IngestBuf = NULL;
	IngestLen = IngestPos = 0;
	return done;
}

/*
 * ParentSupported
 *		true if the direct path may write into this driftmirror.metric: a
 *		partitioned table with the four columns of 55_metric_catalog.sql, no
 *		statement triggers, no row-level security in force.
 */
static bool
ParentSupported(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TriggerDesc *trig = rel->trigdesc;
	int			i;

	if (rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE || desc->natts != METRIC_NCOLUMNS)
		return false;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != MetricColumnTypes[i] || att->attgenerated)
			return false;
	}
	if (trig != NULL && (trig->trig_insert_before_statement || trig->trig_insert_after_statement))
		return false;
	return check_enable_rls(RelationGetRelid(rel), InvalidOid, true) != RLS_ENABLED;
}

/*
 * LeafSupported
 *		true if rows can go into this partition with table_multi_insert and
 *		ExecInsertIndexTuples alone, in slots of the given kind.
 */
static bool
LeafSupported(ResultRelInfo *leaf, const TupleTableSlotOps *ops)
{
	Relation	rel = leaf->ri_RelationDesc;
	TriggerDesc *trig = leaf->ri_TrigDesc;

	if (leaf->ri_FdwRoutine != NULL || leaf->ri_RootToPartitionMap != NULL)
		return false;
	if (rel->rd_rel->relkind != RELKIND_RELATION || table_slot_callbacks(rel) != ops)
		return false;
	if (trig != NULL && (trig->trig_insert_before_row || trig->trig_insert_after_row ||
						 trig->trig_insert_instead_row || trig->trig_insert_new_table))
		return false;
	if (rel->rd_att->constr != NULL && rel->rd_att->constr->has_generated_stored)
		return false;
	return true;
}

/*
 * ChecksProven
 *		true if the partition's CHECK constraints are none, or exactly the two
 *		of driftmirror.metric, which the callers' checks prove for every row.
 */
static bool
ChecksProven(Relation rel)
{
	TupleConstr *constr = rel->rd_att->constr;
	int			i;

	if (constr == NULL || constr->num_check == 0)
		return true;
	if (constr->num_check != 2)
		return false;
	for (i = 0; i < constr->num_check; i++)
	{
		const char *name = constr->check[i].ccname;

		if (strcmp(name, "metric_value_finite") != 0 && strcmp(name, "metric_ids_positive") != 0)
			return false;
	}
	return true;
}

static inline void
StoreRow(TupleTableSlot *slot, Datum ts, Datum rid, Datum mid, Datum val)
{
	ExecClearTuple(slot);
	slot->tts_values[0] = ts;
	slot->tts_values[1] = rid;
	slot->tts_values[2] = mid;
	slot->tts_values[3] = val;
	memset(slot->tts_isnull, 0, METRIC_NCOLUMNS * sizeof(bool));
	ExecStoreVirtualTuple(slot);
}

/*
 * DmMetricInsert
 *		Insert the n samples (ts[i], val[i]) of one resource's metric into
 *		driftmirror.metric.  Returns the number of rows written.  Raises an
 *		error if the current user may not insert, or if a row has no
 *		partition; a failure part-way is undone with the transaction.
 */
uint64
DmMetricInsert(int64 resource_id, int16 metric_id, const Datum *ts, const Datum *val, int n)
{
	Relation	parent;
	RangeTblEntry *rte;
	EState	   *estate;
	ResultRelInfo *root;
	ModifyTableState *mtstate;
	PartitionTupleRouting *proute;
	TupleTableSlot *rootslot;
	TupleTableSlot **slots = NULL;
	ResultRelInfo **leafof;
	const TupleTableSlotOps *ops = NULL;
	MemoryContext batchcxt;
	MemoryContext oldcxt;
	CommandId	cid;
	Datum		rid = Int64GetDatum(resource_id);
	Datum		mid = Int16GetDatum(metric_id);
	bool		direct;
	uint64		done = 0;
	int			nslots = 0;
	int			i;

	if (n <= 0)
		return 0;
	if (resource_id <= 0 || metric_id <= 0)
		elog(ERROR, "metric ids must be positive, not %lld and %d",
			 (long long) resource_id, (int) metric_id);

	parent = table_openrv(makeRangeVar(DM_SCHEMA_NAME, "metric", -1), RowExclusiveLock);
	if (pg_class_aclcheck(RelationGetRelid(parent), GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, RelationGetRelationName(parent));
	if (!ParentSupported(parent))
	{
		table_close(parent, NoLock);
		return CopyRows(resource_id, metric_id, ts, val, n);
	}

	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(parent);
	rte->relkind = parent->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT;

	estate = CreateExecutorState();
	ExecInitRangeTable(estate, list_make1(rte));
	root = makeNode(ResultRelInfo);
	ExecInitResultRelation(estate, root, 1);
	mtstate = makeNode(ModifyTableState);
	mtstate->ps.plan = NULL;
	mtstate->ps.state = estate;
	mtstate->operation = CMD_INSERT;
	mtstate->mt_nrels = 1;
	mtstate->resultRelInfo = root;
	mtstate->rootResultRelInfo = root;
	cid = GetCurrentCommandId(true);
	estate->es_output_cid = cid;
	proute = ExecSetupPartitionTupleRouting(estate, parent);
	rootslot = MakeSingleTupleTableSlot(RelationGetDescr(parent), &TTSOpsVirtual);

	/* route every row first: the path is chosen before anything is written */
	leafof = palloc(sizeof(ResultRelInfo *) * n);
	direct = true;
	for (i = 0; i < n; i++)
	{
		ResultRelInfo *leaf;

		StoreRow(rootslot, ts[i], rid, mid, val[i]);
		leaf = ExecFindPartition(mtstate, root, proute, rootslot, estate);
		ResetPerTupleExprContext(estate);
		if (i == 0)
			ops = table_slot_callbacks(leaf->ri_RelationDesc);
		if ((i == 0 || leaf != leafof[i - 1]) && !LeafSupported(leaf, ops))
			direct = false;
		leafof[i] = leaf;
		if ((i & 1023) == 1023)
			CHECK_FOR_INTERRUPTS();
	}

	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "driftmirror metric insert",
									 ALLOCSET_DEFAULT_SIZES);
	for (i = 0; direct && i < n;)
	{
		ResultRelInfo *leaf = leafof[i];
		Relation	rel = leaf->ri_RelationDesc;
		bool		proven = ChecksProven(rel);
		int			k;

		if (slots == NULL)
		{
			/* a private copy: no reference count, no resource owner entry per slot */
			TupleDesc	desc = CreateTupleDescCopy(RelationGetDescr(parent));

			nslots = Min(n, INSERT_BATCH);
			slots = palloc(sizeof(TupleTableSlot *) * nslots);
			for (k = 0; k < nslots; k++)
				slots[k] = MakeSingleTupleTableSlot(desc, ops);
		}
		for (k = 0; i < n && leafof[i] == leaf && k < nslots; i++, k++)
		{
			StoreRow(slots[k], ts[i], rid, mid, val[i]);
			if (!proven)
			{
				ExecConstraints(leaf, slots[k], estate);
				ResetPerTupleExprContext(estate);
			}
		}

		oldcxt = MemoryContextSwitchTo(batchcxt);
		table_multi_insert(rel, slots, k, cid, 0, NULL);
		if (leaf->ri_NumIndices > 0)
		{
			int			j;

			for (j = 0; j < k; j++)
			{
				ExecInsertIndexTuples(leaf, slots[j], estate, false, false, NULL, NIL);
				ResetPerTupleExprContext(estate);
			}
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(batchcxt);
		done += k;
		CHECK_FOR_INTERRUPTS();
	}

	for (i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	ExecDropSingleTupleTableSlot(rootslot);
	MemoryContextDelete(batchcxt);
	ExecResetTupleTable(estate->es_tupleTable, false);
	ExecCleanupTupleRouting(mtstate, proute);
	ExecCloseResultRelations(estate);
	ExecCloseRangeTableRelations(estate);
	FreeExecutorState(estate);
	table_close(parent, NoLock);

	if (!direct)
		return CopyRows(resource_id, metric_id, ts, val, n);
	return done;
}
