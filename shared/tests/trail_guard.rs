//! The optional service control policy of template.yaml's management half (`TrailGuardPolicy`,
//! the text of tests/lambda/trail-guard-scp.json, which tests/lambda/template_checks.py holds
//! the template to), judged by an independent evaluator (iam-rs): in a member account, an
//! administrator (allowed everything by IAM) is denied every change to the trailkeeper trail that
//! would silence or divert it, and the member role the trail-enabler assumes is not; other
//! trails and harmless calls are untouched.

use iam_rs::{
    Arn, Context, ContextValue, Decision, IAMPolicy, IAMRequest, Principal, PrincipalId,
    evaluate_policies,
};

const SCP: &str = include_str!("../../tests/lambda/trail-guard-scp.json");
const ADMIN: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
const MEMBER: &str = "222233334444";
const TRAIL: &str = "trailkeeper";
const MEMBER_ROLE: &str = "OrganizationAccountAccessRole";
/// What would silence, divert or relabel the trail (attacks 1 and 2 of issue 14).
const GUARDED: &[&str] = &[
    "cloudtrail:StopLogging",
    "cloudtrail:DeleteTrail",
    "cloudtrail:UpdateTrail",
    "cloudtrail:PutEventSelectors",
    "cloudtrail:PutInsightSelectors",
    "cloudtrail:AddTags",
    "cloudtrail:RemoveTags",
];

/// The policy as CloudFormation renders it in the `aws` partition.
fn scp() -> String {
    SCP.replace("${AWS::Partition}", "aws")
        .replace("${TrailName}", TRAIL)
        .replace("${MemberRoleName}", MEMBER_ROLE)
}

/// IAM allows the principal everything; the SCP is the only deny.
fn decide(principal_arn: &str, action: &str, resource: &str) -> Decision {
    let policies = [ADMIN.to_string(), scp()].map(|p| {
        IAMPolicy::from_json(&p).unwrap_or_else(|e| panic!("iam-rs cannot parse {p}: {e}"))
    });
    let mut context = Context::new();
    context.insert(
        "aws:PrincipalArn".to_owned(),
        ContextValue::String(principal_arn.to_owned()),
    );
    let request = IAMRequest::new_with_context(
        Principal::Aws(PrincipalId::String(principal_arn.to_owned())),
        action,
        Arn::parse(resource).unwrap(),
        context,
    );
    evaluate_policies(&policies, &request).unwrap()
}

fn trail(region: &str, name: &str) -> String {
    format!("arn:aws:cloudtrail:{region}:{MEMBER}:trail/{name}")
}

#[test]
fn the_policy_guards_exactly_the_calls_that_silence_or_divert_the_trail() {
    let doc: serde_json::Value = serde_json::from_str(&scp()).unwrap();
    let statements = doc["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1);
    let mut actions: Vec<&str> = statements[0]["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    actions.sort_unstable();
    let mut want = GUARDED.to_vec();
    want.sort_unstable();
    assert_eq!(actions, want);
    assert_eq!(statements[0]["Effect"], "Deny");
}

#[test]
fn a_member_admin_is_denied_each_guarded_call_and_the_trail_enablers_role_is_not() {
    let admins = [
        format!("arn:aws:iam::{MEMBER}:role/Admin"),
        format!("arn:aws:iam::{MEMBER}:user/alice"),
        format!("arn:aws:iam::{MEMBER}:root"),
        // Look-alikes of the member role: another path, another name.
        format!("arn:aws:iam::{MEMBER}:role/attacker/{MEMBER_ROLE}"),
        format!("arn:aws:iam::{MEMBER}:role/{MEMBER_ROLE}-copy"),
    ];
    let enabler = format!("arn:aws:iam::{MEMBER}:role/{MEMBER_ROLE}");
    for action in GUARDED {
        // A multi-region trail is one ARN, in its home region; any region is guarded.
        for region in ["us-east-1", "eu-west-1"] {
            let ours = trail(region, TRAIL);
            for admin in &admins {
                assert_eq!(
                    decide(admin, action, &ours),
                    Decision::Deny,
                    "{admin} may {action} {ours}"
                );
            }
            assert_eq!(
                decide(&enabler, action, &ours),
                Decision::Allow,
                "the trail-enabler's role may not {action} {ours}"
            );
        }
    }
}

#[test]
fn other_trails_and_harmless_calls_are_left_alone() {
    let admin = format!("arn:aws:iam::{MEMBER}:role/Admin");
    for action in GUARDED {
        for other in [
            trail("us-east-1", "team-trail"),
            trail("us-east-1", &format!("{TRAIL}-2")),
        ] {
            assert_eq!(
                decide(&admin, action, &other),
                Decision::Allow,
                "{action} {other}"
            );
        }
    }
    let ours = trail("us-east-1", TRAIL);
    for action in [
        "cloudtrail:StartLogging",
        "cloudtrail:GetTrailStatus",
        "cloudtrail:GetEventSelectors",
    ] {
        assert_eq!(decide(&admin, action, &ours), Decision::Allow, "{action}");
    }
}
