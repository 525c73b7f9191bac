//! Turning what each side holds into [`Difference`]s: tables' tallies,
//! sequence values and large objects.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use super::data::{self, Rls};
use super::report::{Detail, Difference, LargeObjectsResult, Side, TableResult, Tally};
use super::VerifyError;

/// Why a table could not be read, in words that say what to do.
pub(crate) fn not_read_reason(table: &data::TablePlan, server_message: &str) -> String {
    match table.rls {
        Some(Rls::Forced) => format!(
            "row-level security is forced on this table (FORCE ROW LEVEL SECURITY), so even its \
             owner would see only the rows its policies allow ({server_message}); verify as a \
             role with BYPASSRLS, or run ALTER TABLE {} NO FORCE ROW LEVEL SECURITY for the \
             migration",
            table.qualified
        ),
        Some(Rls::NotOwner) => format!(
            "row-level security would hide rows from this role, which does not own the table \
             ({server_message}); verify as the table's owner or a role with BYPASSRLS"
        ),
        None => format!("{server_message}; verify as a role that may read every row"),
    }
}

pub(crate) fn compare_tables(
    src_plan: &[data::TablePlan],
    src: &data::SideTallies,
    tgt_plan: &[data::TablePlan],
    tgt: &data::SideTallies,
    counts_only: bool,
    differences: &mut Vec<Difference>,
) -> Vec<TableResult> {
    let tgt_index: BTreeMap<&str, usize> = tgt_plan
        .iter()
        .enumerate()
        .map(|(i, t)| (t.qualified.as_str(), i))
        .collect();
    let schema_named: BTreeSet<String> = differences
        .iter()
        .filter(|d| d.kind == "table")
        .map(|d| d.name.clone())
        .collect();
    let mut seen_on_target = vec![false; tgt_plan.len()];
    let mut results = Vec::new();
    let tally = |t: &data::Tally| Tally {
        rows: t.sums.rows,
        checksum: (!counts_only).then(|| t.sums.checksum()),
        bytes: t.bytes,
    };
    let secs = |t: &data::Tally| match (t.started, t.finished) {
        (Some(s), Some(f)) => f.duration_since(s).as_secs_f64(),
        _ => 0.0,
    };
    for (i, sp) in src_plan.iter().enumerate() {
        let s = &src.tables[i];
        let Some(&j) = tgt_index.get(sp.qualified.as_str()) else {
            if !schema_named.contains(&sp.qualified) {
                differences.push(Difference::new(
                    "table",
                    &sp.qualified,
                    Detail::NotVerified {
                        side: Side::Target,
                        reason: "no table of that name holds rows of its own on the target, \
                                 so its rows were not compared"
                            .into(),
                    },
                ));
            }
            results.push(TableResult {
                table: sp.qualified.clone(),
                source: s.failed.is_none().then(|| tally(s)),
                target: None,
                seconds: secs(s),
                equal: false,
            });
            continue;
        };
        seen_on_target[j] = true;
        let t = &tgt.tables[j];
        let mut equal = true;
        for (side, tl, plan) in [(Side::Source, s, sp), (Side::Target, t, &tgt_plan[j])] {
            if let Some(msg) = &tl.failed {
                equal = false;
                differences.push(Difference::new(
                    "table",
                    &sp.qualified,
                    Detail::NotVerified {
                        side,
                        reason: not_read_reason(plan, msg),
                    },
                ));
            }
        }
        if equal {
            if s.sums.rows != t.sums.rows {
                equal = false;
                differences.push(Difference::new(
                    "table",
                    &sp.qualified,
                    Detail::RowCount {
                        source: s.sums.rows,
                        target: t.sums.rows,
                    },
                ));
            } else if !counts_only && s.sums != t.sums {
                equal = false;
                differences.push(Difference::new(
                    "table",
                    &sp.qualified,
                    Detail::Content {
                        source: s.sums.checksum(),
                        target: t.sums.checksum(),
                    },
                ));
            }
        }
        results.push(TableResult {
            table: sp.qualified.clone(),
            source: s.failed.is_none().then(|| tally(s)),
            target: t.failed.is_none().then(|| tally(t)),
            seconds: secs(s).max(secs(t)),
            equal,
        });
    }
    for (j, tp) in tgt_plan.iter().enumerate() {
        if !seen_on_target[j] && !schema_named.contains(&tp.qualified) {
            differences.push(Difference::new(
                "table",
                &tp.qualified,
                Detail::NotVerified {
                    side: Side::Source,
                    reason: "no table of that name holds rows of its own on the source, so its \
                             rows on the target were not compared"
                        .into(),
                },
            ));
        }
    }
    results
}

/// Compares `last_value` and `is_called` of the sequences on both sides
/// (those on one side only are the schema comparison's to report).
pub(crate) fn compare_sequences(
    src: &Result<BTreeMap<String, (i64, bool)>, String>,
    tgt: &Result<BTreeMap<String, (i64, bool)>, String>,
    differences: &mut Vec<Difference>,
) -> usize {
    let (src_map, tgt_map) = match (src, tgt) {
        (Ok(s), Ok(t)) => (s, t),
        _ => {
            for (side, v) in [(Side::Source, src), (Side::Target, tgt)] {
                if let Err(reason) = v {
                    differences.push(Difference::new(
                        "sequences",
                        "(all)",
                        Detail::NotVerified {
                            side,
                            reason: format!("{reason}; the role needs SELECT on every sequence"),
                        },
                    ));
                }
            }
            return 0;
        }
    };
    let mut compared = 0;
    for (name, (sv, sc)) in src_map {
        let Some((tv, tc)) = tgt_map.get(name) else {
            continue;
        };
        compared += 1;
        for (property, a, b) in [
            ("last_value", sv.to_string(), tv.to_string()),
            ("is_called", sc.to_string(), tc.to_string()),
        ] {
            if a != b {
                differences.push(Difference::new(
                    "sequence",
                    name,
                    Detail::Property {
                        property: property.into(),
                        source: Some(a),
                        target: Some(b),
                    },
                ));
            }
        }
    }
    compared
}

/// Compares the large objects' tallies; when they differ (and contents were
/// summed), reads each object's hash on both sides to name the ones that
/// differ: only OIDs and hashes cross the network.
pub(crate) async fn compare_large_objects(
    (src_client, src): (&Client, Option<&data::Tally>),
    (tgt_client, tgt): (&Client, Option<&data::Tally>),
    counts_only: bool,
    differences: &mut Vec<Difference>,
) -> Result<Option<LargeObjectsResult>, VerifyError> {
    if src.is_none() && tgt.is_none() {
        return Ok(None);
    }
    let empty = data::Tally::default();
    let (s, t) = (src.unwrap_or(&empty), tgt.unwrap_or(&empty));
    let mut result = LargeObjectsResult {
        source: s.sums.rows,
        target: t.sums.rows,
        equal: true,
    };
    for (side, tally) in [(Side::Source, s), (Side::Target, t)] {
        if let Some(msg) = &tally.failed {
            result.equal = false;
            differences.push(Difference::new(
                "large objects",
                "(all)",
                Detail::NotVerified {
                    side,
                    reason: format!(
                        "{msg}; large objects are read with lo_get, which needs SELECT on \
                         each (the owner has it)"
                    ),
                },
            ));
        }
    }
    if !result.equal || s.sums == t.sums || (counts_only && s.sums.rows == t.sums.rows) {
        return Ok(Some(result));
    }
    result.equal = false;
    if counts_only {
        differences.push(Difference::new(
            "large objects",
            "(all)",
            Detail::Property {
                property: "count".into(),
                source: Some(s.sums.rows.to_string()),
                target: Some(t.sums.rows.to_string()),
            },
        ));
        return Ok(Some(result));
    }
    // Name the ones that differ: OIDs and hashes only cross the network.
    let (sm, tm) = futures::try_join!(
        data::large_object_hashes(Side::Source, src_client),
        data::large_object_hashes(Side::Target, tgt_client),
    )?;
    large_object_differences(sm, tm, differences);
    Ok(Some(result))
}

/// Names each large object that differs, from both sides' OID to hash
/// maps, or says which side's hashes could not be read.
fn large_object_differences(
    sm: Result<BTreeMap<u32, String>, String>,
    tm: Result<BTreeMap<u32, String>, String>,
    differences: &mut Vec<Difference>,
) {
    let (sm, tm) = match (sm, tm) {
        (Ok(s), Ok(t)) => (s, t),
        (s, t) => {
            for (side, refused) in [(Side::Source, s.err()), (Side::Target, t.err())] {
                if let Some(reason) = refused {
                    differences.push(Difference::new(
                        "large objects",
                        "(all)",
                        Detail::NotVerified { side, reason },
                    ));
                }
            }
            return;
        }
    };
    let md5 = |h: &String| {
        h.split_once(':')
            .map(|(_, m)| m.to_string())
            .unwrap_or_default()
    };
    for (oid, sh) in &sm {
        match tm.get(oid) {
            None => differences.push(Difference::new(
                "large object",
                oid.to_string(),
                Detail::MissingOnTarget,
            )),
            Some(th) if th != sh => differences.push(Difference::new(
                "large object",
                oid.to_string(),
                Detail::Property {
                    property: "content md5".into(),
                    source: Some(md5(sh)),
                    target: Some(md5(th)),
                },
            )),
            Some(_) => {}
        }
    }
    for oid in tm.keys().filter(|o| !sm.contains_key(o)) {
        differences.push(Difference::new(
            "large object",
            oid.to_string(),
            Detail::ExtraOnTarget,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::data::{SideTallies, Sums, TablePlan};

    fn plan(name: &str, rls: Option<Rls>) -> TablePlan {
        TablePlan {
            qualified: name.into(),
            bytes: 8192,
            blocks: 1,
            rls,
        }
    }

    fn tally(rows: u64, hash: u64, failed: Option<&str>) -> data::Tally {
        let mut t = data::Tally::default();
        t.sums = Sums { rows, hash };
        t.failed = failed.map(str::to_string);
        t
    }

    fn sides(s: Vec<data::Tally>, t: Vec<data::Tally>) -> (SideTallies, SideTallies) {
        (
            SideTallies {
                tables: s,
                large_objects: None,
            },
            SideTallies {
                tables: t,
                large_objects: None,
            },
        )
    }

    #[test]
    fn counts_then_contents_then_refusals_become_one_line_each() {
        let src = [
            plan("public.a", None),
            plan("public.b", None),
            plan("public.c", Some(Rls::Forced)),
        ];
        let tgt = [
            plan("public.a", None),
            plan("public.b", None),
            plan("public.c", None),
        ];
        let (s, t) = sides(
            vec![
                tally(3, 1, None),
                tally(2, 5, None),
                tally(
                    0,
                    0,
                    Some("query would be affected by row-level security policy"),
                ),
            ],
            vec![tally(2, 1, None), tally(2, 6, None), tally(9, 9, None)],
        );
        let mut d = Vec::new();
        let results = compare_tables(&src, &s, &tgt, &t, false, &mut d);
        let lines: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert_eq!(
            lines[0],
            "table public.a: row count 3 on source vs 2 on target"
        );
        assert!(lines[1].starts_with("table public.b: content differs with equal row counts (checksum 0000000000000005 vs 0000000000000006)"));
        assert!(
            lines[2].contains("not verified on source: row-level security is forced"),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains("ALTER TABLE public.c NO FORCE ROW LEVEL SECURITY"));
        assert!(results.iter().all(|r| !r.equal));
        assert!(results[2].source.is_none() && results[2].target.is_some());
    }

    #[test]
    fn counts_only_ignores_checksums_and_a_table_without_a_partner_is_named_once() {
        let src = [plan("public.a", None), plan("public.gone", None)];
        let tgt = [plan("public.a", None)];
        let (s, t) = sides(
            vec![tally(2, 1, None), tally(1, 1, None)],
            vec![tally(2, 7, None)],
        );
        let mut d = vec![Difference::new(
            "table",
            "public.gone",
            Detail::MissingOnTarget,
        )];
        let results = compare_tables(&src, &s, &tgt, &t, true, &mut d);
        assert_eq!(d.len(), 1, "the schema's line is enough: {d:#?}");
        assert!(results[0].equal);
        assert_eq!(results[0].source.as_ref().unwrap().checksum, None);
    }

    #[test]
    fn sequences_compare_value_and_is_called_and_an_unreadable_side_is_said() {
        let s = Ok(BTreeMap::from([
            ("public.a".to_string(), (41, true)),
            ("public.b".to_string(), (1, false)),
        ]));
        let t = Ok(BTreeMap::from([
            ("public.a".to_string(), (42, true)),
            ("public.b".to_string(), (1, true)),
        ]));
        let mut d = Vec::new();
        assert_eq!(compare_sequences(&s, &t, &mut d), 2);
        let lines: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            lines,
            [
                "sequence public.a: last_value 41 vs 42",
                "sequence public.b: is_called false vs true"
            ]
        );
        let mut d = Vec::new();
        compare_sequences(&Err("permission denied for sequence s".into()), &t, &mut d);
        assert!(d[0]
            .to_string()
            .starts_with("sequences (all): not verified on source: permission denied"));
    }

    #[test]
    fn large_object_hashes_refused_name_the_side_that_refused() {
        let ok = || Ok(BTreeMap::from([(7u32, "12:aa".to_string())]));
        let refused = |side: &str| Err(format!("permission denied for large object ({side})"));
        let cases = [
            (refused("s"), ok(), vec!["source (s)"]),
            (ok(), refused("t"), vec!["target (t)"]),
            (refused("s"), refused("t"), vec!["source (s)", "target (t)"]),
        ];
        for (s, t, want) in cases {
            let mut d = Vec::new();
            large_object_differences(s, t, &mut d);
            let lines: Vec<String> = d.iter().map(|d| d.to_string()).collect();
            let want: Vec<String> = want
                .iter()
                .map(|w| {
                    let (side, who) = w.split_once(' ').unwrap();
                    format!(
                        "large objects (all): not verified on {side}: permission denied for \
                         large object {who}"
                    )
                })
                .collect();
            assert_eq!(lines, want);
        }
    }

    #[test]
    fn large_objects_are_named_by_oid_with_their_md5() {
        let s = BTreeMap::from([(1u32, "3:aaa".to_string()), (2, "3:bbb".to_string())]);
        let t = BTreeMap::from([(2u32, "3:ccc".to_string()), (3, "3:ddd".to_string())]);
        let mut d = Vec::new();
        large_object_differences(Ok(s), Ok(t), &mut d);
        let lines: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            lines,
            [
                "large object 1: missing on target",
                "large object 2: content md5 bbb vs ccc",
                "large object 3: extra on target (not on source)",
            ]
        );
    }
}
