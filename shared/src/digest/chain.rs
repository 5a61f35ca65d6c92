//! The chain: each digest names the one before it by location, signature and hash.
//!
//! The AWS CLI follows these links but never checks them, and reports only the first of several
//! consecutive deleted digests (aws/aws-cli#7054). Here every link of an authentic digest is
//! checked against the real previous object, and every missing digest is reported.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::file::{PreviousDigest, format_time};
use crate::store::ObjectRef;

/// What the chain analysis knows of one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainNode {
    pub location: ObjectRef,
    /// The end time in the key name, known even when the content is not.
    pub key_time: DateTime<Utc>,
    pub authentic: bool,
    pub missing: bool,
    /// Its real signature: the S3 metadata of the object itself.
    pub signature: Option<String>,
    /// SHA-256 of its uncompressed bytes.
    pub sha256: Option<[u8; 32]>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// Its claim about the digest before it.
    pub previous: Option<PreviousDigest>,
}

impl ChainNode {
    /// A digest known only by its location and key name: nothing about it is judged yet.
    pub fn unknown(location: ObjectRef, key_time: DateTime<Utc>) -> Self {
        Self {
            location,
            key_time,
            authentic: false,
            missing: false,
            signature: None,
            sha256: None,
            start: None,
            end: None,
            previous: None,
        }
    }

    fn end_or_key_time(&self) -> DateTime<Utc> {
        self.end.unwrap_or(self.key_time)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainFinding {
    /// An authentic digest whose link does not match the authentic digest it points to.
    Broken { newer: ObjectRef, reason: String },
    /// A digest that should be there and is not. `object` is `None` when only its hour is known.
    Missing {
        object: Option<ObjectRef>,
        window: (DateTime<Utc>, DateTime<Utc>),
        reason: String,
    },
    /// Logging stopped and started again: a new chain begins. Informational.
    Gap {
        window: (DateTime<Utc>, DateTime<Utc>),
    },
}

/// Where a digest says its previous digest is, if it says so completely.
pub fn previous_location(previous: &PreviousDigest) -> Option<ObjectRef> {
    Some(ObjectRef::new(
        previous.bucket.clone()?,
        previous.object.clone()?,
    ))
}

/// Checks the links of one stream of digests, sorted oldest first. `outside` holds the previous
/// digests that are linked but not in `stream` (before the window, or not listed), fetched
/// directly; `relocate` maps a location as CloudTrail wrote it to where the object is now.
pub fn analyse(
    stream: &[ChainNode],
    outside: &HashMap<ObjectRef, ChainNode>,
    relocate: impl Fn(&ObjectRef) -> ObjectRef,
) -> Vec<ChainFinding> {
    let index: HashMap<&ObjectRef, usize> = stream
        .iter()
        .enumerate()
        .map(|(i, n)| (&n.location, i))
        .collect();
    let mut findings = Vec::new();
    for (j, newer) in stream.iter().enumerate() {
        // Only an authentic digest's claims about its past are evidence.
        if !newer.authentic {
            continue;
        }
        let Some(start) = newer.start else { continue };
        let older_listed = j.checked_sub(1).map(|i| &stream[i]);
        let Some(link) = &newer.previous else {
            if let Some(older) = older_listed {
                findings.push(ChainFinding::Gap {
                    window: (older.end_or_key_time(), start),
                });
            }
            continue;
        };
        let Some(claimed) = previous_location(link) else {
            findings.push(ChainFinding::Broken {
                newer: newer.location.clone(),
                reason: "previousDigestSignature is set but previousDigestS3Bucket/Object is not"
                    .into(),
            });
            continue;
        };
        let at = relocate(&claimed);
        let Some(prev) = index
            .get(&at)
            .map(|&i| &stream[i])
            .or_else(|| outside.get(&at))
        else {
            continue;
        };
        if prev.missing {
            findings.push(ChainFinding::Missing {
                object: Some(at.clone()),
                window: (start - Duration::hours(1), start),
                reason: format!("named as the previous digest by {}", newer.location.key),
            });
            // Digests arrive hourly: the time between the next older digest and this one says how
            // many more are gone. Their names cannot be known, only their hours.
            if let Some(older) = older_listed.filter(|o| o.location != at) {
                let from = older.end_or_key_time();
                let hours = ((start - from).num_seconds() as f64 / 3600.0).round() as i64;
                for k in 1..hours {
                    let until = start - Duration::hours(k);
                    findings.push(ChainFinding::Missing {
                        object: None,
                        window: (until - Duration::hours(1), until),
                        reason: format!(
                            "no digest covers this hour between {} ({}) and {}",
                            format_time(from),
                            older.location.key,
                            newer.location.key
                        ),
                    });
                }
            }
            continue;
        }
        if !prev.authentic {
            // The older digest is reported on its own; the link cannot be judged against it.
            continue;
        }
        let mut wrong = Vec::new();
        if !prev
            .signature
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(&link.signature))
        {
            wrong.push(
                "previousDigestSignature is not the signature of the previous digest".to_string(),
            );
        }
        match (&link.hash_value, prev.sha256) {
            (Some(claimed), Some(real)) if claimed.eq_ignore_ascii_case(&hex::encode(real)) => {}
            _ => wrong.push(
                "previousDigestHashValue is not the SHA-256 of the previous digest".to_string(),
            ),
        }
        if prev.end != Some(start) {
            wrong.push(format!(
                "digestStartTime {} does not continue the previous digestEndTime {}",
                format_time(start),
                prev.end
                    .map(format_time)
                    .unwrap_or_else(|| "(unknown)".into())
            ));
        }
        if !wrong.is_empty() {
            // A link into another bucket says which.
            let to = if prev.location.bucket == newer.location.bucket {
                prev.location.key.clone()
            } else {
                prev.location.to_string()
            };
            findings.push(ChainFinding::Broken {
                newer: newer.location.clone(),
                reason: format!("link to {to} broken: {}", wrong.join("; ")),
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + h * 3600, 0).unwrap()
    }

    fn node(h: i64) -> ChainNode {
        ChainNode {
            location: ObjectRef::new("b", format!("d{h}")),
            key_time: t(h),
            authentic: true,
            missing: false,
            signature: Some(format!("sig{h}")),
            sha256: Some([h as u8; 32]),
            start: Some(t(h - 1)),
            end: Some(t(h)),
            previous: Some(PreviousDigest {
                bucket: Some("b".into()),
                object: Some(format!("d{}", h - 1)),
                hash_value: Some(hex::encode([(h - 1) as u8; 32])),
                signature: format!("sig{}", h - 1),
            }),
        }
    }

    fn run(stream: &[ChainNode], outside: &[ChainNode]) -> Vec<ChainFinding> {
        let outside = outside
            .iter()
            .map(|n| (n.location.clone(), n.clone()))
            .collect();
        analyse(stream, &outside, |o| o.clone())
    }

    fn first(h: i64) -> ChainNode {
        ChainNode {
            previous: None,
            ..node(h)
        }
    }

    #[test]
    fn an_intact_chain_has_no_findings_and_its_first_digest_is_a_start() {
        assert!(run(&[first(1), node(2), node(3)], &[]).is_empty());
    }

    #[test]
    fn a_spliced_link_a_wrong_hash_and_a_time_jump_are_broken_links() {
        let mut spliced = node(3);
        spliced.previous.as_mut().unwrap().signature = "forged".into();
        let mut hashed = node(3);
        hashed.previous.as_mut().unwrap().hash_value = Some("00".into());
        let mut jumped = node(3);
        jumped.start = Some(t(1));
        for bad in [spliced, hashed, jumped] {
            let f = run(&[first(1), node(2), bad], &[]);
            assert!(
                matches!(&f[..], [ChainFinding::Broken { newer, .. }] if newer.key == "d3"),
                "{f:?}"
            );
        }
    }

    #[test]
    fn every_missing_digest_is_reported_not_only_the_first() {
        // d2 and d3 deleted: d4 names d3; the hour of d2 is inferred from d1's end.
        let missing3 = ChainNode {
            missing: true,
            authentic: false,
            ..node(3)
        };
        let f = run(&[first(1), node(4)], &[missing3]);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(matches!(&f[0], ChainFinding::Missing { object: Some(o), .. } if o.key == "d3"));
        assert!(
            matches!(&f[1], ChainFinding::Missing { object: None, window, .. } if *window == (t(1), t(2)))
        );
    }

    #[test]
    fn a_restart_is_a_gap_not_a_finding() {
        let f = run(&[first(1), node(2), first(6), node(7)], &[]);
        assert_eq!(
            f,
            vec![ChainFinding::Gap {
                window: (t(2), t(5))
            }]
        );
    }

    #[test]
    fn links_of_inauthentic_digests_and_links_to_them_are_not_judged() {
        let mut forged = node(2);
        forged.authentic = false;
        forged.previous.as_mut().unwrap().signature = "x".into();
        assert!(run(&[first(1), forged, node(3)], &[]).is_empty());
    }

    #[test]
    fn a_link_across_the_window_is_checked_against_the_fetched_digest() {
        assert!(run(&[node(5)], &[node(4)]).is_empty());
        let mut other = node(4);
        other.signature = Some("another".into());
        assert_eq!(run(&[node(5)], &[other]).len(), 1);
    }
}
