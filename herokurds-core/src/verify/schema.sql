-- Every schema object of the database, one row each, described without OIDs
-- or owners: (kind, qualified name, schema and name of the table it belongs
-- to, properties as a flat jsonb object of strings). Run with
-- search_path = '' so every name in a definition is schema-qualified.
-- Objects that belong to an extension (pg_depend deptype 'e') and objects
-- created implicitly with another (deptype 'i') are left out: the extension
-- is compared as a whole, by name, version and schema.
SELECT 'schema' AS kind, quote_ident(n.nspname) AS name, NULL::text AS tbl_schema, NULL::text AS tbl_name,
  jsonb_strip_nulls(jsonb_build_object('comment', obj_description(n.oid, 'pg_namespace'))) AS attrs
FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
UNION ALL
SELECT 'extension', quote_ident(e.extname), NULL, NULL,
  jsonb_build_object('version', e.extversion, 'schema', quote_ident(e.extnamespace::regnamespace::text))
FROM pg_extension e
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'table' END,
  format('%I.%I', n.nspname, c.relname), n.nspname, c.relname,
  jsonb_strip_nulls(jsonb_build_object(
    'persistence', CASE c.relpersistence WHEN 'u' THEN 'unlogged' ELSE 'permanent' END,
    'partitioned by', CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
    'partition of', (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid AND c.relispartition),
    'partition bound', CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
    'inherits', (SELECT string_agg(i.inhparent::regclass::text, ', ' ORDER BY i.inhseqno) FROM pg_inherits i WHERE i.inhrelid = c.oid AND NOT c.relispartition),
    'row level security', CASE WHEN c.relkind IN ('r', 'p') THEN CASE WHEN c.relforcerowsecurity THEN 'forced' WHEN c.relrowsecurity THEN 'enabled' ELSE 'disabled' END END,
    'options', array_to_string(c.reloptions, ', '),
    'replica identity', CASE WHEN c.relkind IN ('r', 'p') THEN CASE c.relreplident WHEN 'n' THEN 'nothing' WHEN 'f' THEN 'full' WHEN 'i' THEN 'index' END END,
    'definition', CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
    'populated', CASE WHEN c.relkind = 'm' THEN c.relispopulated::text END,
    'comment', obj_description(c.oid, 'pg_class')))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT 'column', format('%I.%I.%I', n.nspname, c.relname, a.attname), n.nspname, c.relname,
  jsonb_strip_nulls(jsonb_build_object(
    'position', (row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum))::text,
    'type', format_type(a.atttypid, a.atttypmod),
    'not null', a.attnotnull::text,
    'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
    'generated', CASE WHEN a.attgenerated <> '' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
    'identity', CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
    'collation', CASE WHEN a.attcollation <> t.typcollation THEN
        (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END,
    'comment', col_description(c.oid, a.attnum)))
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT 'index', format('%I.%I', n.nspname, ic.relname), n.nspname, c.relname,
  jsonb_strip_nulls(jsonb_build_object(
    'definition', pg_get_indexdef(i.indexrelid),
    'valid', i.indisvalid::text,
    'replica identity', CASE WHEN i.indisreplident THEN 'true' END,
    'clustered', CASE WHEN i.indisclustered THEN 'true' END,
    'comment', obj_description(ic.oid, 'pg_class')))
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT CASE WHEN co.contypid <> 0 THEN 'domain constraint' ELSE 'constraint' END,
  format('%I.%I.%I', n.nspname, coalesce(c.relname, ty.typname), co.conname), n.nspname, c.relname,
  jsonb_strip_nulls(jsonb_build_object(
    'type', CASE co.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique' WHEN 'f' THEN 'foreign key'
                WHEN 'c' THEN 'check' WHEN 'x' THEN 'exclude' WHEN 't' THEN 'trigger' ELSE co.contype::text END,
    'definition', pg_get_constraintdef(co.oid),
    'validated', co.convalidated::text,
    'deferrable', CASE WHEN co.condeferred THEN 'initially deferred' WHEN co.condeferrable THEN 'initially immediate' ELSE 'not deferrable' END,
    'comment', obj_description(co.oid, 'pg_constraint')))
FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
  LEFT JOIN pg_class c ON c.oid = co.conrelid LEFT JOIN pg_type ty ON ty.oid = co.contypid
WHERE co.contype <> 'n' AND coalesce(c.relpersistence, 'p') <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = co.conrelid AND d.deptype = 'e')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = co.contypid AND d.deptype = 'e')
UNION ALL
SELECT 'trigger', format('%I.%I.%I', n.nspname, c.relname, tg.tgname), n.nspname, c.relname,
  jsonb_strip_nulls(jsonb_build_object(
    'definition', pg_get_triggerdef(tg.oid),
    'enabled', CASE tg.tgenabled WHEN 'O' THEN 'origin' WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'replica' WHEN 'A' THEN 'always' END,
    'comment', obj_description(tg.oid, 'pg_trigger')))
FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT tg.tgisinternal
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT 'rule', format('%I.%I.%I', n.nspname, c.relname, r.rulename), n.nspname, c.relname,
  jsonb_strip_nulls(jsonb_build_object(
    'definition', pg_get_ruledef(r.oid),
    'enabled', CASE r.ev_enabled WHEN 'O' THEN 'origin' WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'replica' WHEN 'A' THEN 'always' END,
    'comment', obj_description(r.oid, 'pg_rewrite')))
FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE r.rulename <> '_RETURN'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT 'policy', format('%I.%I.%I', n.nspname, c.relname, p.polname), n.nspname, c.relname,
  jsonb_strip_nulls(jsonb_build_object(
    'command', CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
    'permissive', p.polpermissive::text,
    'roles', (SELECT string_agg(r, ', ' ORDER BY r) FROM (SELECT CASE WHEN x = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x)) END AS r FROM unnest(p.polroles) x) s),
    'using', pg_get_expr(p.polqual, p.polrelid),
    'with check', pg_get_expr(p.polwithcheck, p.polrelid),
    'comment', obj_description(p.oid, 'pg_policy')))
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT 'statistics', format('%I.%I', n.nspname, s.stxname), tn.nspname, c.relname,
  jsonb_strip_nulls(jsonb_build_object(
    'definition', pg_get_statisticsobjdef(s.oid),
    'comment', obj_description(s.oid, 'pg_statistic_ext')))
FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
  JOIN pg_class c ON c.oid = s.stxrelid JOIN pg_namespace tn ON tn.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_statistic_ext'::regclass AND d.objid = s.oid AND d.deptype = 'e')
UNION ALL
SELECT 'sequence', format('%I.%I', n.nspname, c.relname), NULL, NULL,
  jsonb_strip_nulls(jsonb_build_object(
    'type', format_type(s.seqtypid, NULL),
    'start', s.seqstart::text, 'increment', s.seqincrement::text,
    'minimum', s.seqmin::text, 'maximum', s.seqmax::text,
    'cache', s.seqcache::text, 'cycle', s.seqcycle::text,
    'persistence', CASE c.relpersistence WHEN 'u' THEN 'unlogged' ELSE 'permanent' END,
    'owned by', (SELECT format('%I.%I.%I', tn.nspname, tc.relname, ta.attname) || CASE d.deptype WHEN 'i' THEN ' (identity)' ELSE '' END
                 FROM pg_depend d JOIN pg_class tc ON tc.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
                   JOIN pg_attribute ta ON ta.attrelid = d.refobjid AND ta.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
                   AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0 LIMIT 1),
    'comment', obj_description(c.oid, 'pg_class')))
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window function' ELSE 'function' END,
  format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)), NULL, NULL,
  jsonb_strip_nulls(jsonb_build_object(
    'definition', CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END,
    'result', pg_get_function_result(p.oid),
    'aggregate', CASE WHEN p.prokind = 'a' THEN
      (SELECT concat_ws(', ', 'sfunc=' || a.aggtransfn::regproc::text, 'stype=' || format_type(a.aggtranstype, NULL),
              'finalfunc=' || nullif(a.aggfinalfn, 0)::regproc::text, 'combinefunc=' || nullif(a.aggcombinefn, 0)::regproc::text,
              'initcond=' || a.agginitval, 'sortop=' || nullif(a.aggsortop, 0)::regoperator::text, 'kind=' || a.aggkind::text)
       FROM pg_aggregate a WHERE a.aggfnoid = p.oid) END,
    'comment', obj_description(p.oid, 'pg_proc')))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype IN ('e', 'i'))
UNION ALL
SELECT 'type', format('%I.%I', n.nspname, t.typname), NULL, NULL,
  jsonb_strip_nulls(jsonb_build_object(
    'kind', CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' WHEN 'c' THEN 'composite' WHEN 'r' THEN 'range' WHEN 'b' THEN 'base' ELSE t.typtype::text END,
    'labels', CASE WHEN t.typtype = 'e' THEN (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) END,
    'base type', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
    'not null', CASE WHEN t.typtype = 'd' THEN t.typnotnull::text END,
    'default', CASE WHEN t.typtype = 'd' THEN pg_get_expr(t.typdefaultbin, 0) END,
    'attributes', CASE WHEN t.typtype = 'c' THEN (SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
                    FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END,
    'subtype', CASE WHEN t.typtype = 'r' THEN (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid) END,
    'comment', obj_description(t.oid, 'pg_type')))
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typtype IN ('b', 'c', 'd', 'e', 'r')
  AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
