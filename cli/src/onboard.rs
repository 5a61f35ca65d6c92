//! `trailkeeper onboard`: both onboarding steps for accounts that no event announced (accounts
//! older than trailkeeper, or a failed run), with the code the Lambdas run.
//!
//! The same `TRAILKEEPER_*` settings as the Lambdas. One set of credentials does both steps
//! unless `--archive-role-arn` names a role in the log-archive account for the policy step:
//! the trail step assumes `TRAILKEEPER_MEMBER_ROLE` in each account (the caller's own account
//! uses the caller's credentials, since no member role exists there).
//!
//! The policy step: the deployed base policy lets only the policy-updater's role (and the
//! log-archive account's root user) change the bucket policy, so on a deployed stack the step
//! invokes the policy-updater itself (`--function`, or `TRAILKEEPER_POLICY_UPDATER_FUNCTION`)
//! with the direct event `{"accountId": …}`: one code path and one principal ever write the
//! policy. `--in-process` edits it here instead, for the emulator and for that root user.

use std::io::Write;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use clap::Args;
use serde_json::Value;
use trailkeeper::events::AccountId;
use trailkeeper::onboard::{OnboardConfig, PolicyLoop, PolicyUpdater, active_accounts};
use trailkeeper::store::{describe_sdk_error, load_aws_config};
pub(crate) use trailkeeper::trail::assume_role as assume;
use trailkeeper::trail::{Backoff, TrailAction, TrailEnabler};

#[derive(Debug, Clone, Args)]
pub struct OnboardArgs {
    /// The account to onboard (repeatable).
    #[arg(
        long = "account",
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub accounts: Vec<String>,
    /// Every ACTIVE account of the organization (ListAccounts; run it from the management
    /// account or a delegated administrator).
    #[arg(long)]
    pub all: bool,
    /// Print the policy diff and the trail plan for each account; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A role in the log-archive account to assume for the bucket and key policy step.
    #[arg(long, value_name = "ARN")]
    pub archive_role_arn: Option<String>,
    /// The deployed policy-updater (name or ARN: the log-archive stack's PolicyUpdaterFunction
    /// output) that does the policy step, invoked with {"accountId": …}: the base policy lets no
    /// other principal write the bucket policy. Default: $TRAILKEEPER_POLICY_UPDATER_FUNCTION.
    #[arg(long = "function", value_name = "NAME", conflicts_with = "in_process")]
    pub function: Option<String>,
    /// Edit the policy in this process, with the caller's (or --archive-role-arn's)
    /// credentials, instead of invoking the policy-updater: for the emulator, and for the
    /// log-archive account's root user. On a deployed stack every other principal is refused.
    #[arg(long)]
    pub in_process: bool,
}

/// Names the deployed policy-updater when `--function` does not (set it from the log-archive
/// stack's `PolicyUpdaterFunction` output).
pub const POLICY_UPDATER_FUNCTION_ENV: &str = "TRAILKEEPER_POLICY_UPDATER_FUNCTION";

/// Who writes the bucket (and key) policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyStep {
    /// The deployed policy-updater, invoked (RequestResponse) with the direct event.
    Function(String),
    /// This process, with the caller's credentials; `chosen` when `--in-process` said so.
    InProcess { chosen: bool },
}

impl PolicyStep {
    /// `--function`, else `--in-process`, else the environment's function, else in-process.
    pub fn of(args: &OnboardArgs, env_function: Option<String>) -> Self {
        match (&args.function, args.in_process) {
            (Some(f), _) => Self::Function(f.clone()),
            (None, true) => Self::InProcess { chosen: true },
            (None, false) => env_function
                .filter(|f| !f.is_empty())
                .map_or(Self::InProcess { chosen: false }, Self::Function),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Function(f) => format!(
                "policy step: invoking the policy-updater {f} (lambda:InvokeFunction, RequestResponse)"
            ),
            Self::InProcess { chosen } => format!(
                "policy step: in this process{}, with the caller's credentials: on a deployed stack only the policy-updater's role and the log-archive account's root user may write the bucket policy (invoke the deployed policy-updater with --function NAME or {POLICY_UPDATER_FUNCTION_ENV})",
                if *chosen {
                    " (--in-process)"
                } else {
                    " (no --function, no TRAILKEEPER_POLICY_UPDATER_FUNCTION)"
                }
            ),
        }
    }
}

/// Exit codes: 0 every account onboarded (or planned), 1 at least one account failed,
/// 2 nothing could be done (configuration, credentials, ListAccounts).
pub async fn run(args: OnboardArgs, out: &mut impl Write, err: &mut impl Write) -> i32 {
    let Some(config) = crate::onboard_config_from_env("onboard", err) else {
        return 2;
    };
    let aws = load_aws_config().await;
    let args = OnboardArgs {
        function: match PolicyStep::of(&args, std::env::var(POLICY_UPDATER_FUNCTION_ENV).ok()) {
            PolicyStep::Function(f) => Some(f),
            PolicyStep::InProcess { .. } => None,
        },
        ..args
    };
    run_with(
        args,
        config,
        &aws,
        Backoff::SETTLING,
        PolicyLoop::DEFAULT,
        out,
        err,
    )
    .await
}

/// [`run`] with the configuration and bounds given (tests).
pub async fn run_with(
    args: OnboardArgs,
    config: OnboardConfig,
    aws: &aws_config::SdkConfig,
    backoff: Backoff,
    bounds: PolicyLoop,
    out: &mut impl Write,
    err: &mut impl Write,
) -> i32 {
    match onboard(args, config, aws, backoff, bounds, out, err).await {
        Ok(0) => 0,
        Ok(_) => 1,
        Err(e) => {
            let _ = writeln!(err, "trailkeeper onboard: {e}");
            2
        }
    }
}

async fn onboard(
    args: OnboardArgs,
    config: OnboardConfig,
    aws: &aws_config::SdkConfig,
    backoff: Backoff,
    bounds: PolicyLoop,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<usize, String> {
    let accounts = selected_accounts(aws, args.all, &args.accounts).await?;
    let (caller, archive) =
        caller_and_archive(aws, args.archive_role_arn.as_deref(), "trailkeeper-onboard").await?;
    let step = PolicyStep::of(&args, None);
    if args.dry_run {
        let _ = writeln!(
            out,
            "{} [dry run: the policy is only read, here]",
            step.describe()
        );
    } else {
        let _ = writeln!(out, "{}", step.describe());
    }
    let policies = PolicyUpdater::new(&archive, config.clone(), bounds);
    let lambda = aws_sdk_lambda::Client::new(&archive);
    let trails = TrailEnabler::new(
        aws,
        config.trail_spec(),
        config.member_role.clone(),
        backoff,
    );

    let mut failed = 0;
    for account in accounts {
        let own = (Some(account) == caller).then(|| trails.own_cloudtrail());
        let header = if args.dry_run {
            format!("account {account} (dry run: nothing is changed)")
        } else {
            format!("account {account}")
        };
        let _ = writeln!(out, "{header}");
        let result = if args.dry_run {
            plan(&policies, &trails, own.as_ref(), account, out).await
        } else {
            let admitted = match &step {
                PolicyStep::Function(f) => admit_through(&lambda, f, account, out).await,
                PolicyStep::InProcess { .. } => admit_here(&policies, account, out).await,
            };
            match admitted {
                Ok(()) => apply_trail(&trails, own.as_ref(), account, out).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = result {
            failed += 1;
            let _ = writeln!(out, "  FAILED: {e}");
            let _ = writeln!(err, "trailkeeper onboard: {e}");
        }
    }
    Ok(failed)
}

async fn plan(
    policies: &PolicyUpdater,
    trails: &TrailEnabler,
    own: Option<&aws_sdk_cloudtrail::Client>,
    account: AccountId,
    out: &mut impl Write,
) -> Result<(), String> {
    for p in policies.plan(account).await.map_err(|e| e.to_string())? {
        let _ = writeln!(out, "  {}", p.to_string().replace('\n', "\n  "));
    }
    let plan = match own {
        Some(ct) => trails.plan_with(account, ct).await,
        None => trails.plan(account).await,
    }
    .map_err(|e| e.to_string())?;
    let _ = writeln!(out, "  {}", plan.to_string().replace('\n', "\n  "));
    Ok(())
}

/// One line per policy the admission touched, whoever admitted.
fn print_admission(out: &mut impl Write, policy: &str, status: &str, writes: u64, bytes: u64) {
    let _ = writeln!(
        out,
        "  {policy}: {} ({writes} write(s), {bytes} bytes written)",
        status.replace('_', " "),
    );
}

/// The policy step in this process, with the caller's credentials.
async fn admit_here(
    policies: &PolicyUpdater,
    account: AccountId,
    out: &mut impl Write,
) -> Result<(), String> {
    let reports = policies.admit(account).await.map_err(|e| {
        let e = e.to_string();
        if e.contains("AccessDenied") {
            format!(
                "{e} (the edit ran in this process; the deployed base policy lets only the policy-updater's role write the bucket policy: invoke it with --function NAME or {POLICY_UPDATER_FUNCTION_ENV})"
            )
        } else {
            e
        }
    })?;
    for r in reports {
        print_admission(out, &r.policy, r.status, r.writes.into(), r.bytes as u64);
    }
    Ok(())
}

/// The policy step through the deployed policy-updater: `{"accountId": …}`, RequestResponse.
/// A function error, or an answer that is not this account's admission, is an error naming
/// the account and the function.
pub async fn admit_through(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    account: AccountId,
    out: &mut impl Write,
) -> Result<(), String> {
    let event = serde_json::json!({ "accountId": account.to_string() }).to_string();
    let answer = lambda
        .invoke()
        .function_name(function)
        .invocation_type(InvocationType::RequestResponse)
        .payload(Blob::new(event))
        .send()
        .await
        .map_err(|e| {
            // `cargo lambda watch` answers a function error with HTTP 500 and the error
            // document; Lambda with 200 and X-Amz-Function-Error. Both are the function's.
            let document = e
                .raw_response()
                .and_then(|r| r.body().bytes())
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                .filter(|v| v.get("errorMessage").is_some());
            match document {
                Some(v) => function_failed(account, function, "Unhandled", &v, ""),
                None => format!(
                    "account {account}: lambda:InvokeFunction {function}: {}",
                    describe_sdk_error(&e)
                ),
            }
        })?;
    let body = answer.payload().map(Blob::as_ref).unwrap_or_default();
    let text = String::from_utf8_lossy(body);
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Some(kind) = answer.function_error() {
        return Err(function_failed(account, function, kind, &value, &text));
    }
    if value["status"] != "admitted" || value["account"] != account.to_string().as_str() {
        return Err(format!(
            "account {account}: the policy-updater {function} answered {text}, which is not the account's admission"
        ));
    }
    for p in value["policies"].as_array().into_iter().flatten() {
        print_admission(
            out,
            p["policy"].as_str().unwrap_or("policy"),
            p["status"].as_str().unwrap_or("unknown"),
            p["writes"].as_u64().unwrap_or(0),
            p["bytes"].as_u64().unwrap_or(0),
        );
    }
    Ok(())
}

/// `account <id>: the policy-updater <function> failed (<errorType>): <errorMessage>`, from
/// Lambda's error document (`text` when it is not one).
fn function_failed(
    account: AccountId,
    function: &str,
    kind: &str,
    document: &Value,
    text: &str,
) -> String {
    let kind = document["errorType"].as_str().unwrap_or(kind);
    let message = document["errorMessage"].as_str().unwrap_or(text);
    format!("account {account}: the policy-updater {function} failed ({kind}): {message}")
}

/// The trail step.
async fn apply_trail(
    trails: &TrailEnabler,
    own: Option<&aws_sdk_cloudtrail::Client>,
    account: AccountId,
    out: &mut impl Write,
) -> Result<(), String> {
    let report = match own {
        Some(ct) => trails.enable_with(account, ct).await,
        None => trails.enable(account).await,
    }
    .map_err(|e| e.to_string())?;
    let action = match &report.action {
        TrailAction::Create => "created".to_owned(),
        TrailAction::UpToDate => "matches the spec".to_owned(),
        TrailAction::Repair { drift } => format!(
            "repaired: {}",
            drift
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    let logging = if report.started_logging {
        "logging started"
    } else {
        "logging"
    };
    let _ = writeln!(out, "  trail {}: {action}; {logging}", report.trail_arn);
    Ok(())
}

/// The caller's configuration with the credentials of `role_arn`.
/// Every ACTIVE account of the organization when `all`, else the `--account` ids, checked.
pub(crate) async fn selected_accounts(
    aws: &aws_config::SdkConfig,
    all: bool,
    accounts: &[String],
) -> Result<Vec<AccountId>, String> {
    if all {
        return active_accounts(&aws_sdk_organizations::Client::new(aws))
            .await
            .map_err(|e| e.to_string());
    }
    accounts
        .iter()
        .map(|a| AccountId::new(a).map_err(|e| format!("--account: {e}")))
        .collect()
}

/// The caller's own account (so that it is not treated as a member), and the configuration for
/// the log-archive account: the caller's, or `archive_role_arn` assumed as `session`.
pub(crate) async fn caller_and_archive(
    aws: &aws_config::SdkConfig,
    archive_role_arn: Option<&str>,
    session: &str,
) -> Result<(Option<AccountId>, aws_config::SdkConfig), String> {
    let caller = aws_sdk_sts::Client::new(aws)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| format!("sts:GetCallerIdentity: {}", describe_sdk_error(&e)))?
        .account()
        .and_then(|a| AccountId::new(a).ok());
    let archive = match archive_role_arn {
        None => aws.clone(),
        Some(arn) => assume(aws, arn, session).await?,
    };
    Ok((caller, archive))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_lambda::operation::invoke::InvokeOutput;
    use aws_smithy_mocks::{mock, mock_client};
    use clap::Parser;

    const ACCOUNT: &str = "111122223333";
    const FUNCTION: &str = "trailkeeper-log-archive-PolicyUpdaterFunction-EXAMPLE";

    fn args(extra: &[&str]) -> OnboardArgs {
        let argv = ["trailkeeper", "onboard", "--account", ACCOUNT]
            .into_iter()
            .chain(extra.iter().copied());
        match crate::Cli::try_parse_from(argv).unwrap().command {
            crate::Command::Onboard(a) => a,
            other => panic!("{other:?}"),
        }
    }

    /// The policy-updater's answer to `{"accountId": ACCOUNT}`, as Lambda returns it.
    async fn invoke_answering(answer: InvokeOutput) -> (Result<(), String>, String) {
        let rule = mock!(aws_sdk_lambda::Client::invoke)
            .match_requests(|r| {
                r.function_name() == Some(FUNCTION)
                    && r.invocation_type() == Some(&InvocationType::RequestResponse)
                    && r.payload().map(Blob::as_ref)
                        == Some(format!(r#"{{"accountId":"{ACCOUNT}"}}"#).as_bytes())
            })
            .then_output(move || answer.clone());
        let lambda = mock_client!(aws_sdk_lambda, [&rule]);
        let mut out = Vec::new();
        let result = admit_through(
            &lambda,
            FUNCTION,
            AccountId::new(ACCOUNT).unwrap(),
            &mut out,
        )
        .await;
        assert_eq!(rule.num_calls(), 1);
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_policy_step_is_the_named_function_else_in_process_as_said() {
        let env = || Some("from-env".to_owned());
        assert_eq!(
            PolicyStep::of(&args(&["--function", "f"]), env()),
            PolicyStep::Function("f".into())
        );
        assert_eq!(
            PolicyStep::of(&args(&[]), env()),
            PolicyStep::Function("from-env".into())
        );
        assert_eq!(
            PolicyStep::of(&args(&["--in-process"]), env()),
            PolicyStep::InProcess { chosen: true }
        );
        assert_eq!(
            PolicyStep::of(&args(&[]), Some(String::new())),
            PolicyStep::InProcess { chosen: false }
        );
        assert!(
            crate::Cli::try_parse_from([
                "trailkeeper",
                "onboard",
                "--all",
                "--function",
                "f",
                "--in-process"
            ])
            .is_err()
        );
        assert!(
            PolicyStep::InProcess { chosen: true }
                .describe()
                .contains("in this process (--in-process)")
        );
    }

    #[tokio::test]
    async fn the_policy_updater_s_admission_is_reported_like_the_in_process_one() {
        let answer = serde_json::json!({"status": "admitted", "account": ACCOUNT,
            "event": "direct invocation", "policies": [{"policy": "bucket policy of s3://central-logs",
            "status": "admitted", "writes": 1, "attempts": 1, "bytes": 812}]});
        let (result, out) = invoke_answering(
            InvokeOutput::builder()
                .status_code(200)
                .payload(Blob::new(answer.to_string()))
                .build(),
        )
        .await;
        result.unwrap();
        assert_eq!(
            out,
            "  bucket policy of s3://central-logs: admitted (1 write(s), 812 bytes written)\n"
        );
    }

    #[tokio::test]
    async fn a_function_error_names_the_account_and_the_function() {
        let (result, out) = invoke_answering(
            InvokeOutput::builder()
                .status_code(200)
                .function_error("Unhandled")
                .payload(Blob::new(
                    r#"{"errorType":"PolicyRefused","errorMessage":"account 111122223333: bucket policy of s3://central-logs: over the 20480-byte limit"}"#,
                ))
                .build(),
        )
        .await;
        assert_eq!(
            result.unwrap_err(),
            format!(
                "account {ACCOUNT}: the policy-updater {FUNCTION} failed (PolicyRefused): account 111122223333: bucket policy of s3://central-logs: over the 20480-byte limit"
            )
        );
        assert_eq!(out, "");
    }

    #[tokio::test]
    async fn an_answer_that_is_not_this_account_s_admission_is_an_error() {
        for answer in [
            serde_json::json!({"status": "ignored", "reason": "not an account event"}),
            serde_json::json!({"status": "admitted", "account": "444455556666", "policies": []}),
        ] {
            let (result, _) = invoke_answering(
                InvokeOutput::builder()
                    .status_code(200)
                    .payload(Blob::new(answer.to_string()))
                    .build(),
            )
            .await;
            let e = result.unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "account {ACCOUNT}: the policy-updater {FUNCTION} answered"
                )),
                "{e}"
            );
        }
    }
}
