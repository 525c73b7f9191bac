//! Heroku's list ranges: `Range: id ..; max=200`, `Range: id ]LAST..;
//! max=200` (`]` makes a start exclusive), `Range: version ..; max=1,
//! order=desc` (options may be separated by `,` or `;`). A truncated page
//! answers `206` with `Next-Range: <field> ]<last>..; max=N` and
//! `Content-Range: <field> <first>..<last>`. Default page 200, max 1000.

use std::cmp::Ordering;

use serde_json::Value;

use super::world::ApiError;

/// Default page size.
pub(crate) const DEFAULT_MAX: usize = 200;
/// Largest page size.
pub(crate) const MAX_MAX: usize = 1000;

/// A parsed `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeSpec {
    pub field: String,
    pub start: Option<(String, bool)>,
    pub end: Option<(String, bool)>,
    pub max: usize,
    pub desc: bool,
}

/// Parses a `Range` header for a list sortable by `fields` (the first is the default).
pub(crate) fn parse(header: Option<&str>, fields: &[&str]) -> Result<RangeSpec, ApiError> {
    let mut spec = RangeSpec {
        field: fields[0].to_owned(),
        start: None,
        end: None,
        max: DEFAULT_MAX,
        desc: false,
    };
    let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(spec);
    };
    let (head, opts) = match header.find(';') {
        Some(i) => (&header[..i], &header[i + 1..]),
        None => (header, ""),
    };
    let head = head.trim();
    let (field, bounds) = match head.find(char::is_whitespace) {
        Some(i) => (&head[..i], head[i..].trim()),
        None => (head, ""),
    };
    if !fields.contains(&field) {
        return Err(ApiError::range(format!(
            "Invalid range field {field:?}; this list can be ranged by {}.",
            fields.join(", ")
        )));
    }
    spec.field = field.to_owned();
    if !bounds.is_empty() {
        let Some(dots) = bounds.find("..") else {
            return Err(ApiError::range(format!(
                "Invalid range {bounds:?}; expected START..END."
            )));
        };
        let (start, end) = (bounds[..dots].trim(), bounds[dots + 2..].trim());
        if let Some(s) = start.strip_prefix(']') {
            spec.start = Some((s.to_owned(), true));
        } else if !start.is_empty() {
            spec.start = Some((start.to_owned(), false));
        }
        if let Some(e) = end.strip_suffix('[') {
            spec.end = Some((e.to_owned(), true));
        } else if !end.is_empty() {
            spec.end = Some((end.to_owned(), false));
        }
    }
    for opt in opts
        .split([',', ';'])
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        match k.trim() {
            "max" => {
                let n: usize = v
                    .trim()
                    .parse()
                    .map_err(|_| ApiError::range(format!("Invalid max {v:?}.")))?;
                spec.max = n.clamp(1, MAX_MAX);
            }
            "order" => match v.trim() {
                "asc" => spec.desc = false,
                "desc" => spec.desc = true,
                other => {
                    return Err(ApiError::range(format!(
                        "Invalid order {other:?}; use asc or desc."
                    )))
                }
            },
            _ => {}
        }
    }
    Ok(spec)
}

/// One page of a list.
#[derive(Debug)]
pub(crate) struct Page {
    pub items: Vec<Value>,
    pub next_range: Option<String>,
    pub content_range: Option<String>,
}

fn key(v: &Value, field: &str) -> String {
    match &v[field] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn cmp_keys(a: &str, b: &str) -> Ordering {
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Sorts `items` by the range's field and cuts out the page it asks for.
pub(crate) fn paginate(mut items: Vec<Value>, spec: &RangeSpec) -> Page {
    let field = spec.field.as_str();
    items.sort_by(|a, b| cmp_keys(&key(a, field), &key(b, field)));
    if spec.desc {
        items.reverse();
    }
    // In traversal order: "after" the start, "before" the end.
    let forward = |a: &str, b: &str| {
        let o = cmp_keys(a, b);
        if spec.desc {
            o.reverse()
        } else {
            o
        }
    };
    let mut selected: Vec<Value> = items
        .into_iter()
        .filter(|v| {
            let k = key(v, field);
            let after_start = match &spec.start {
                None => true,
                Some((s, true)) => forward(&k, s) == Ordering::Greater,
                Some((s, false)) => forward(&k, s) != Ordering::Less,
            };
            let before_end = match &spec.end {
                None => true,
                Some((e, true)) => forward(&k, e) == Ordering::Less,
                Some((e, false)) => forward(&k, e) != Ordering::Greater,
            };
            after_start && before_end
        })
        .collect();
    let more = selected.len() > spec.max;
    selected.truncate(spec.max);
    let content_range = match (selected.first(), selected.last()) {
        (Some(f), Some(l)) => Some(format!("{field} {}..{}", key(f, field), key(l, field))),
        _ => None,
    };
    let next_range = if more {
        let last = key(selected.last().expect("a full page"), field);
        let order = if spec.desc { ", order=desc" } else { "" };
        Some(format!("{field} ]{last}..; max={}{order}", spec.max))
    } else {
        None
    };
    Page {
        items: selected,
        next_range,
        content_range,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn items(n: i64) -> Vec<Value> {
        (1..=n)
            .map(|v| json!({"id": format!("id{v:03}"), "version": v}))
            .collect()
    }

    #[test]
    fn heroku_cli_release_ranges() {
        for h in [
            "version ..; order=desc,max=1",
            "version ..; max=1, order=desc",
        ] {
            let spec = parse(Some(h), &["id", "version"]).unwrap();
            let page = paginate(items(12), &spec);
            assert_eq!(page.items.len(), 1);
            assert_eq!(page.items[0]["version"], 12);
            assert_eq!(
                page.next_range.as_deref(),
                Some("version ]12..; max=1, order=desc")
            );
            let next = parse(page.next_range.as_deref(), &["id", "version"]).unwrap();
            assert_eq!(paginate(items(12), &next).items[0]["version"], 11);
        }
    }

    #[test]
    fn pages_follow_next_range_to_the_end() {
        let mut header: Option<String> = Some("id ..; max=5;".into());
        let mut seen = Vec::new();
        loop {
            let spec = parse(header.as_deref(), &["id"]).unwrap();
            let page = paginate(items(12), &spec);
            seen.extend(page.items.iter().map(|v| v["version"].as_i64().unwrap()));
            match page.next_range {
                Some(n) => header = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, (1..=12).collect::<Vec<_>>());
    }

    #[test]
    fn defaults_bounds_and_errors() {
        let spec = parse(None, &["id"]).unwrap();
        assert_eq!((spec.max, spec.desc), (DEFAULT_MAX, false));
        assert_eq!(
            parse(Some("id ..; max=5000"), &["id"]).unwrap().max,
            MAX_MAX
        );
        let spec = parse(Some("version 3..5"), &["id", "version"]).unwrap();
        let page = paginate(items(12), &spec);
        assert_eq!(page.items.len(), 3);
        assert_eq!(page.content_range.as_deref(), Some("version 3..5"));
        assert!(parse(Some("nope .."), &["id"]).is_err());
        assert!(parse(Some("id ..; order=sideways"), &["id"]).is_err());
    }
}
