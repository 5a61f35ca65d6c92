//! Every sample in `events/trail-enabler` is read by this function's own parser, with the outcome its
//! SOURCES.md states; events that are not for us succeed without touching AWS.

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use trail_enabler::{Deps, HandlerError, handle, parse_event};
use trailkeeper::events::{AccountId, Onboarding};
use trailkeeper::onboard::OnboardConfig;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/trail-enabler");

fn sample(name: &str) -> Value {
    let path = format!("{DIR}/{name}");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// File → the account it onboards (`None`: ignored).
const EXPECTED: &[(&str, Option<&str>)] = &[
    (
        "organizations-create-account-result.json",
        Some("444455556666"),
    ),
    ("organizations-create-account-result-failed.json", None),
    (
        "controltower-create-managed-account.json",
        Some("444455556666"),
    ),
    (
        "controltower-update-managed-account.json",
        Some("444455556666"),
    ),
    ("direct-invoke.json", Some("444455556666")),
    ("organizations-close-account-result.json", None),
];

#[test]
fn every_sample_has_its_outcome() {
    let mut names: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|(n, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(names, listed, "every sample needs an expected outcome");
    for (name, want) in EXPECTED {
        let got = parse_event(&sample(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            got.account(),
            want.map(|a| AccountId::new(a).unwrap()),
            "{name}: {got:?}"
        );
        if want.is_none() {
            assert!(matches!(got, Onboarding::Ignored { .. }), "{name}");
        }
    }
}

async fn deps() -> Deps {
    let aws = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let config = OnboardConfig::from_vars(|v| match v {
        "TRAILKEEPER_BUCKET" => Some("central-logs".into()),
        "AWS_REGION" => Some("us-east-1".into()),
        _ => None,
    })
    .unwrap();
    Deps::new(&aws, config)
}

#[tokio::test]
async fn ignored_samples_succeed_without_aws() {
    let deps = deps().await;
    for (name, want) in EXPECTED {
        if want.is_some() {
            continue;
        }
        let out = handle(&deps, LambdaEvent::new(sample(name), Context::default()))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out["status"], "ignored", "{name}");
        assert!(
            out["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_malformed_event_is_an_error_naming_the_field() {
    let deps = deps().await;
    let mut event = sample("controltower-create-managed-account.json");
    event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"]["accountId"] =
        json!("4444-5555-6666");
    let err = handle(&deps, LambdaEvent::new(event, Context::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::Event(_)));
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "InvalidEvent");
    assert!(
        diagnostic
            .error_message
            .contains("detail.serviceEventDetails.createManagedAccountStatus.account.accountId"),
        "{}",
        diagnostic.error_message
    );
}
