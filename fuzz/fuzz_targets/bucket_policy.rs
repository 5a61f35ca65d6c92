//! Bucket (and KMS key) policy parsing and editing (shared/src/policy.rs). Any text is either
//! refused or edited so that: the grant is admitted and a second edit changes nothing; every
//! foreign statement is kept exactly, in order; no account is lost; no other grant is widened;
//! nothing new admits everyone; the result stays under the size limit and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use trailkeeper::policy::{
    BUCKET_POLICY_LIMIT_BYTES, BucketName, BucketPolicy, Grant, KEY_POLICY_LIMIT_BYTES, KeyPolicy,
    KeyPrefix, LogDestination, OrgId, PolicyEdit, StatementSummary, TrailArn,
};

fn grants() -> Vec<Grant> {
    vec![
        Grant::Trail(
            TrailArn::parse("arn:aws:cloudtrail:us-east-1:111111111111:trail/trailkeeper").unwrap(),
        ),
        Grant::Trail(
            TrailArn::parse("arn:aws:cloudtrail:eu-west-1:222222222222:trail/org_trail").unwrap(),
        ),
        Grant::Trail(
            TrailArn::parse("arn:aws:cloudtrail:us-east-1:111111111111:trail/second").unwrap(),
        ),
        Grant::Organization(OrgId::new("o-aa111bb222").unwrap()),
    ]
}

/// What an audit reports of a statement, without its position (ours may be re-rendered).
fn unplaced(s: Vec<StatementSummary>) -> Vec<(Option<String>, String, bool)> {
    s.into_iter()
        .map(|s| (s.sid, s.effect, s.has_condition))
        .collect()
}

fn owned(v: Vec<&Value>) -> Vec<Value> {
    v.into_iter().cloned().collect()
}

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let all = grants();
    let grant = &all[usize::from(sel & 0x3)];
    if sel & 0x80 == 0 {
        let dest = LogDestination::new(
            BucketName::new("central-logs").unwrap(),
            (sel & 0x4 != 0).then(|| KeyPrefix::new("org/trails").unwrap()),
        );
        let Ok(p) = BucketPolicy::parse(text) else {
            return;
        };
        let (wide, foreign, dups) = (
            p.wide_statements(),
            owned(p.foreign_statements()),
            p.duplicate_sids(),
        );
        let _ = p.foreign_cloudtrail_statements();
        let before: Vec<_> = all.iter().map(|g| p.admission(&dest, g)).collect();
        let accounts = p.admitted_accounts(&dest);
        match p.admit(&dest, grant) {
            Ok(PolicyEdit::Unchanged) => assert!(p.admits(&dest, grant).unwrap()),
            Ok(PolicyEdit::Changed { policy, bytes }) => {
                assert_eq!(bytes, policy.len_bytes());
                assert!(bytes <= BUCKET_POLICY_LIMIT_BYTES);
                let q = BucketPolicy::parse(&policy.to_json()).expect("our own output reads back");
                assert_eq!(q.to_json(), policy.to_json());
                assert!(q.admits(&dest, grant).unwrap());
                assert_eq!(q.admit(&dest, grant).unwrap(), PolicyEdit::Unchanged);
                assert_eq!(owned(q.foreign_statements()), foreign);
                assert_eq!(unplaced(q.wide_statements()), unplaced(wide));
                assert_eq!(q.duplicate_sids().len(), dups.len());
                let after = q.admitted_accounts(&dest).unwrap();
                for a in accounts.unwrap() {
                    assert!(after.contains(&a), "account {a} lost");
                }
                for (g, b) in all.iter().zip(before) {
                    if g != grant
                        && !matches!((g, grant), (Grant::Trail(x), Grant::Trail(y)) if x.account() == y.account())
                    {
                        assert_eq!(
                            q.admission(&dest, g).unwrap(),
                            b.unwrap(),
                            "{g} widened by admitting {grant}"
                        );
                    }
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    } else {
        let Ok(p) = KeyPolicy::parse(text) else {
            return;
        };
        let (wide, foreign) = (p.wide_statements(), owned(p.foreign_statements()));
        let _ = (p.foreign_cloudtrail_statements(), p.duplicate_sids());
        let before: Vec<_> = all.iter().map(|g| p.admission(g)).collect();
        let accounts = p.admitted_accounts();
        match p.admit(grant) {
            Ok(PolicyEdit::Unchanged) => assert!(p.admits(grant).unwrap()),
            Ok(PolicyEdit::Changed { policy, bytes }) => {
                assert_eq!(bytes, policy.len_bytes());
                assert!(bytes <= KEY_POLICY_LIMIT_BYTES);
                let q = KeyPolicy::parse(&policy.to_json()).expect("our own output reads back");
                assert_eq!(q.to_json(), policy.to_json());
                assert!(q.admits(grant).unwrap());
                assert_eq!(q.admit(grant).unwrap(), PolicyEdit::Unchanged);
                assert_eq!(owned(q.foreign_statements()), foreign);
                assert_eq!(unplaced(q.wide_statements()), unplaced(wide));
                let after = q.admitted_accounts().unwrap();
                for a in accounts.unwrap() {
                    assert!(after.contains(&a), "account {a} lost");
                }
                for (g, b) in all.iter().zip(before) {
                    // A key grant admits every trail of an account. `kms:DescribeKey` (the
                    // admission's `check`) is one statement shared by every trail, on purpose:
                    // only the encrypt grant must not widen.
                    if g != grant
                        && !matches!((g, grant), (Grant::Trail(x), Grant::Trail(y)) if x.account() == y.account())
                    {
                        assert_eq!(
                            q.admission(g).unwrap().write,
                            b.unwrap().write,
                            "{g} widened by admitting {grant}"
                        );
                    }
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
