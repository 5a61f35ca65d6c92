//! The Athena tables of template.yaml against the key layout and the record format they read:
//! the projection's location template, rendered as Athena renders it, must be exactly the
//! folder of the log files that `trailkeeper::digest::key` names (standard, organization-trail,
//! with and without a prefix) and never a digest folder; and the columns must hold every field
//! of the sample CloudTrail records in tests/vectors/cloudtrail-logs/.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{TimeZone, Utc};
use serde_json::Value;
use trailkeeper::digest::key::{digest_region_dir, log_key};

fn template() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of one resource of the template.
fn resource<'t>(template: &'t str, name: &str) -> Vec<&'t str> {
    let header = format!("  {name}:");
    let mut lines = template.lines().skip_while(|l| *l != header);
    assert!(
        lines.next().is_some(),
        "template.yaml has no resource {name}"
    );
    lines
        .take_while(|l| !(l.starts_with("  ") && !l.starts_with("   ") && l.ends_with(':')))
        .collect()
}

/// A scalar property (`key: value`) of a resource.
fn property<'t>(lines: &[&'t str], key: &str) -> &'t str {
    let prefix = format!("{key}:");
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key}"))
        .trim()
        .trim_matches('"')
}

/// `key: !If [HasPrefix, !Sub "with prefix", !Sub "without"]`, written as a block list.
fn prefix_choice(lines: &[&str], key: &str) -> (String, String) {
    let at = lines
        .iter()
        .position(|l| l.trim() == format!("{key}: !If"))
        .unwrap_or_else(|| panic!("no `{key}: !If`"));
    let item = |i: usize| lines[at + i].trim().trim_start_matches("- ").to_string();
    assert_eq!(item(1), "HasPrefix", "{key}");
    let sub = |s: String| {
        s.strip_prefix("!Sub ")
            .unwrap_or_else(|| panic!("{key}: {s} is not a !Sub"))
            .trim_matches('"')
            .to_string()
    };
    (sub(item(2)), sub(item(3)))
}

/// CloudFormation's `!Sub`: `${Name}` from the parameters; `${!x}` is the literal `${x}`.
fn cfn_sub(text: &str, parameters: &BTreeMap<&str, &str>) -> String {
    let mut out = text.replace("${!", "\u{0}");
    for (name, value) in parameters {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    assert!(!out.contains("${"), "unresolved parameter in {text}");
    out.replace('\u{0}', "${")
}

struct Table {
    /// `(with prefix, without)` storage.location.template.
    template: (String, String),
    location: (String, String),
    day_format: String,
    columns: Vec<(String, String)>,
}

fn table(name: &str) -> Table {
    let text = template();
    let lines = resource(&text, name);
    let columns = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("- { Name: "))
        .filter_map(|l| {
            let (name, ty) = l.split_once(", Type: ")?;
            Some((
                name.to_string(),
                ty.trim_end_matches('}')
                    .trim()
                    .trim_matches('"')
                    .to_string(),
            ))
        })
        .collect();
    Table {
        template: prefix_choice(&lines, "storage.location.template"),
        location: prefix_choice(&lines, "Location"),
        day_format: property(&lines, "projection.day.format").to_string(),
        columns,
    }
}

/// The object key prefix Athena reads for one partition: the template with the stack's
/// parameters, then the partition values, without `s3://bucket/`.
fn partition_folder(
    t: &Table,
    prefix: Option<&str>,
    org: Option<&str>,
    account: &str,
    region: &str,
    day: chrono::DateTime<Utc>,
) -> String {
    let mut parameters = BTreeMap::from([("BucketName", "central-logs")]);
    if let Some(p) = prefix {
        parameters.insert("LogPrefix", p);
    }
    if let Some(o) = org {
        parameters.insert("OrganizationId", o);
    }
    let template = if prefix.is_some() {
        &t.template.0
    } else {
        &t.template.1
    };
    let location = if prefix.is_some() {
        &t.location.0
    } else {
        &t.location.1
    };
    let chrono_format = t
        .day_format
        .replace("yyyy", "%Y")
        .replace("MM", "%m")
        .replace("dd", "%d");
    let rendered = cfn_sub(template, &parameters)
        .replace("${account}", account)
        .replace("${region}", region)
        .replace("${day}", &day.format(&chrono_format).to_string());
    assert!(
        rendered.starts_with(&cfn_sub(location, &parameters)),
        "{rendered} is not under the table's location {location}"
    );
    rendered
        .strip_prefix("s3://central-logs/")
        .unwrap_or_else(|| panic!("{rendered} is not in the bucket"))
        .to_string()
}

#[test]
fn the_projection_reads_exactly_the_log_folders_of_each_layout() {
    let standard = table("CloudTrailTable");
    let org_trail = table("CloudTrailOrgTable");
    let time = Utc.with_ymd_and_hms(2026, 3, 7, 22, 5, 0).unwrap();
    let org = "o-a1b2c3d4e5";
    let cases = [
        ("standard account", &standard, None, None),
        (
            "standard account under a prefix",
            &standard,
            Some("org/logs"),
            None,
        ),
        ("organization-trail account", &org_trail, None, Some(org)),
        (
            "organization-trail account under a prefix",
            &org_trail,
            Some("org/logs"),
            Some(org),
        ),
    ];
    for (case, t, prefix, org) in cases {
        let folder = partition_folder(t, prefix, org, "111122223333", "eu-west-1", time);
        let log = log_key(
            prefix,
            org,
            "111122223333",
            "eu-west-1",
            time,
            "9nYN7gp2eWAJHIfT",
        );
        let file = log
            .strip_prefix(&format!("{folder}/"))
            .unwrap_or_else(|| panic!("{case}: log {log} is not in the folder {folder}"));
        assert!(!file.contains('/'), "{case}: {log} is below {folder}");
        let digests = digest_region_dir(prefix, org, "111122223333", "eu-west-1");
        assert!(
            !digests.starts_with(&format!("{folder}/")) && !folder.starts_with(&digests),
            "{case}: the folder {folder} overlaps the digests' {digests}"
        );
    }
    // A real log key, from the digest AWS documents (tests/vectors/cloudtrail-digest).
    let real = "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/17/111122223333_CloudTrail_us-east-2_20150817T1445Z_9nYN7gp2eWAJHIfT.json.gz";
    let day = Utc.with_ymd_and_hms(2015, 8, 17, 0, 0, 0).unwrap();
    let folder = partition_folder(&standard, None, None, "111122223333", "us-east-2", day);
    assert!(
        real.starts_with(&format!("{folder}/")),
        "{real} vs {folder}"
    );
}

#[test]
fn both_tables_have_the_same_columns() {
    assert_eq!(
        table("CloudTrailTable").columns,
        table("CloudTrailOrgTable").columns
    );
}

/// A Hive type: `string`, `struct<a:t,…>`, `array<t>`, `map<k,v>`.
#[derive(Debug)]
enum Type {
    Scalar,
    Struct(BTreeMap<String, Type>),
    Array(Box<Type>),
    Map(Box<Type>),
}

fn parse_type(s: &str) -> (Type, &str) {
    fn until_delim(s: &str) -> usize {
        s.find([',', '>', ':', '<']).unwrap_or(s.len())
    }
    if let Some(rest) = s.strip_prefix("struct<") {
        let mut fields = BTreeMap::new();
        let mut rest = rest;
        loop {
            let (name, after) = rest.split_at(until_delim(rest));
            let after = after
                .strip_prefix(':')
                .expect("struct field without a type");
            let (ty, after) = parse_type(after);
            fields.insert(name.to_string(), ty);
            match after.as_bytes()[0] {
                b',' => rest = &after[1..],
                b'>' => return (Type::Struct(fields), &after[1..]),
                _ => panic!("bad struct near {after}"),
            }
        }
    } else if let Some(rest) = s.strip_prefix("array<") {
        let (ty, after) = parse_type(rest);
        (Type::Array(Box::new(ty)), after.strip_prefix('>').unwrap())
    } else if let Some(rest) = s.strip_prefix("map<") {
        let (_, after) = parse_type(rest);
        let (ty, after) = parse_type(after.strip_prefix(',').unwrap());
        (Type::Map(Box::new(ty)), after.strip_prefix('>').unwrap())
    } else {
        let end = until_delim(s);
        assert!(
            ["string", "boolean", "bigint", "int", "double"].contains(&&s[..end]),
            "unknown type {s}"
        );
        (Type::Scalar, &s[end..])
    }
}

/// Where `value` does not fit `ty`: the field paths that a query would lose.
fn misfits(value: &Value, ty: &Type, path: &str, out: &mut Vec<String>) {
    match (ty, value) {
        (_, Value::Null) => {}
        // A string column keeps any JSON as text (the SerDe writes nested objects as JSON).
        (Type::Scalar, _) => {}
        (Type::Struct(fields), Value::Object(o)) => {
            for (k, v) in o {
                match fields.get(&k.to_ascii_lowercase()) {
                    Some(t) => misfits(v, t, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Type::Array(t), Value::Array(items)) => {
            for v in items {
                misfits(v, t, &format!("{path}[]"), out);
            }
        }
        (Type::Map(t), Value::Object(o)) => {
            for (k, v) in o {
                misfits(v, t, &format!("{path}.{k}"), out);
            }
        }
        _ => out.push(format!("{path} ({value})")),
    }
}

fn record_misfits(columns: &Type, record: &Value) -> Vec<String> {
    let mut out = Vec::new();
    misfits(record, columns, "", &mut out);
    out
}

fn columns_type(t: &Table) -> Type {
    Type::Struct(
        t.columns
            .iter()
            .map(|(name, ty)| {
                let (parsed, rest) = parse_type(ty);
                assert!(rest.is_empty(), "{name}: trailing {rest}");
                (name.clone(), parsed)
            })
            .collect(),
    )
}

#[test]
fn the_columns_hold_every_field_of_the_sample_records() {
    let columns = columns_type(&table("CloudTrailTable"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/cloudtrail-logs");
    let mut records = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        // One documentation sample has raw control characters inside strings (SOURCES.md).
        let text: String = std::fs::read_to_string(&path)
            .unwrap()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let doc: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let list = match doc.get("Records") {
            Some(Value::Array(r)) => r.clone(),
            _ => vec![doc],
        };
        for record in &list {
            let lost = record_misfits(&columns, record);
            assert!(
                lost.is_empty(),
                "{}: no column for {lost:?}",
                path.display()
            );
            records += 1;
        }
    }
    assert!(
        records >= 10,
        "only {records} sample records found in {}",
        dir.display()
    );
}

#[test]
fn the_column_check_finds_a_field_without_a_column() {
    let columns = columns_type(&table("CloudTrailTable"));
    let record = serde_json::json!({
        "eventVersion": "1.11",
        "userIdentity": {"type": "IAMUser", "sessionContext": {"attributes": {"mfaAuthenticated": "false"}, "newField": "x"}},
        "brandNewField": 1,
    });
    assert_eq!(
        record_misfits(&columns, &record),
        [".userIdentity.sessionContext.newField", ".brandNewField"]
    );
}
