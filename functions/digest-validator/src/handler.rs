//! The handler: each digest validated by the shared engine, one record per digest, an alert per
//! finding. A finding is a successful invocation that reports it; only an error worth retrying
//! (throttling, network, permissions) fails the invocation.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent, tracing};
use serde_json::{Value, json};
use trailkeeper::alerts::{Alert, AlertTopic};
use trailkeeper::config::{self, ConfigError};
use trailkeeper::digest::key::DigestKey;
use trailkeeper::keys::{CloudTrailKeys, KeyRing, KeySource};
use trailkeeper::report::DigestReport;
use trailkeeper::reverify::Reverifier;
use trailkeeper::securityhub::{HubFinding, SecurityHub};
use trailkeeper::store::{ObjectRef, Store, s3_client};
use trailkeeper::tripwire::{Judgement, ObjectEvent, Tripwire};
use trailkeeper::validate::{Engine, RegionDir};

use crate::input::{self, BatchInvocation, InputError, Invocation};

/// Settings, read once at start-up.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// When set, events about other buckets are refused.
    pub central_bucket: Option<String>,
    pub alert_topic_arn: Option<String>,
    /// `TRAILKEEPER_SECURITY_HUB=1`: findings are also imported into Security Hub.
    pub security_hub: bool,
    /// Log files read at once.
    pub concurrency: usize,
    /// The central bucket's key prefix (`TRAILKEEPER_PREFIX`): where re-verification keeps its
    /// state, and the history it goes through.
    pub prefix: Option<String>,
    /// The age at which the template's lifecycle rule expires logs and digests
    /// (`TRAILKEEPER_EXPIRE_AFTER_DAYS`; empty or 0: never). An expiration before it is tampering.
    pub expire_after_days: Option<u32>,
    /// Every digest and log is validated again at least once in this many days
    /// (`TRAILKEEPER_REVERIFY_DAYS`).
    pub reverify_period_days: u32,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            central_bucket: config::optional_checked(
                "TRAILKEEPER_BUCKET",
                config::check_bucket_name,
            )?,
            alert_topic_arn: config::optional_checked(
                "TRAILKEEPER_ALERT_TOPIC_ARN",
                config::check_sns_topic_arn,
            )?,
            security_hub: trailkeeper::securityhub::enabled_in_env(),
            concurrency: config::count("TRAILKEEPER_CONCURRENCY", 32)?,
            prefix: config::optional("TRAILKEEPER_PREFIX"),
            expire_after_days: match config::count("TRAILKEEPER_EXPIRE_AFTER_DAYS", 0)? {
                0 => None,
                days => Some(u32::try_from(days).map_err(|_| ConfigError {
                    variable: "TRAILKEEPER_EXPIRE_AFTER_DAYS",
                    why: format!("{days} days is too many"),
                })?),
            },
            reverify_period_days: match config::count(
                "TRAILKEEPER_REVERIFY_DAYS",
                trailkeeper::reverify::DEFAULT_PERIOD_DAYS as usize,
            )? {
                0 => {
                    return Err(ConfigError {
                        variable: "TRAILKEEPER_REVERIFY_DAYS",
                        why: "a period of 0 days".into(),
                    });
                }
                days => u32::try_from(days).unwrap_or(u32::MAX),
            },
        })
    }
}

pub use trailkeeper::report::{RecordSink, Stdout};

pub struct Deps<R: RecordSink> {
    pub engine: Engine,
    pub tripwire: Tripwire,
    /// None without a central bucket: re-verification needs to know which history.
    pub reverifier: Option<Reverifier>,
    pub alerts: Option<AlertTopic>,
    pub security_hub: Option<SecurityHub>,
    pub central_bucket: Option<String>,
    pub records: R,
}

impl<R: RecordSink> Deps<R> {
    /// Clients and the key cache are made once per container; nothing here touches the network.
    pub fn new(aws: &aws_config::SdkConfig, config: Config, records: R) -> Self {
        let keys = KeyRing::new(KeySource::Api(Box::new(CloudTrailKeys::new(aws))));
        let s3 = s3_client(aws);
        let engine = Engine::new(Store::new(s3.clone()), keys, config.concurrency);
        Self {
            tripwire: Tripwire::new(s3.clone(), config.expire_after_days),
            reverifier: config.central_bucket.clone().map(|bucket| Reverifier {
                engine: engine.clone(),
                store: Store::new(s3),
                bucket,
                prefix: config.prefix.clone(),
                period_days: config.reverify_period_days,
                partition: trailkeeper::partition::Partition::of_region(
                    aws.region().map_or("", |r| r.as_ref()),
                ),
            }),
            engine,
            alerts: config
                .alert_topic_arn
                .map(|arn| AlertTopic::new(aws_sdk_sns::Client::new(aws), arn)),
            security_hub: config.security_hub.then(|| SecurityHub::new(aws)),
            central_bucket: config.central_bucket,
            records,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Input(#[from] InputError),
    /// Worth retrying: the message names the object.
    #[error("{0}")]
    Retryable(String),
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match e {
            HandlerError::Input(_) => "InvalidEvent",
            HandlerError::Retryable(_) => "Retryable",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// What became of one object.
pub enum Outcome {
    Skipped(String),
    Validated(Box<DigestReport>),
}

impl<R: RecordSink> Deps<R> {
    /// Validates one object if it is a digest of the central bucket; records and alerts.
    pub async fn process(&self, object: &ObjectRef) -> Result<Outcome, String> {
        let Ok(key) = DigestKey::parse(&object.key) else {
            tracing::debug!(key = %object.key, "not a CloudTrail digest; skipped");
            return Ok(Outcome::Skipped("not a CloudTrail digest".into()));
        };
        if let Some(central) = self
            .central_bucket
            .as_deref()
            .filter(|c| *c != object.bucket)
        {
            tracing::warn!(bucket = %object.bucket, central, "event for another bucket; skipped");
            return Ok(Outcome::Skipped(format!(
                "bucket {} is not the central bucket {central}",
                object.bucket
            )));
        }
        let report = self
            .engine
            .validate_digest(object, &key)
            .await
            .map_err(|e| e.to_string())?;
        self.records.write(&report.record(Utc::now()));
        // Security Hub first: its import is idempotent (stable ids), so a retry after a failed
        // SNS publish does not duplicate it.
        if let Some(hub) = &self.security_hub {
            let findings: Vec<HubFinding> = report
                .findings()
                .chain(report.gaps())
                .map(|f| HubFinding::for_verdict(f, Some(&report.key), report.period))
                .collect();
            hub.import(&findings).await.map_err(|e| e.to_string())?;
        }
        if let Some(topic) = &self.alerts {
            for finding in report.findings() {
                let alert = Alert::for_finding(finding, Some(&report.key), report.period);
                topic.publish(&alert).await.map_err(|e| e.to_string())?;
            }
            // A restart is not tampering, but nobody may silence the trail unnoticed.
            for gap in report.gaps() {
                let alert = Alert::for_gap(gap, &report.key, report.period);
                topic.publish(&alert).await.map_err(|e| e.to_string())?;
            }
        }
        if let Some(day) = sweep_day(&key, report.period) {
            self.sweep(&object.bucket, &key, day).await?;
        }
        Ok(Outcome::Validated(Box::new(report)))
    }

    /// The logs of `day` in the digest's account and region that no digest lists (forged logs
    /// dropped into a log folder): one record, and a finding and alert for each.
    async fn sweep(&self, bucket: &str, key: &DigestKey, day: NaiveDate) -> Result<(), String> {
        let dir = RegionDir {
            org_id: key.org_id.clone(),
            account: key.account.clone(),
            region: key.region.clone(),
        };
        let sweep = self
            .engine
            .unreferenced_logs(bucket, key.prefix.as_deref(), &dir, day)
            .await;
        if !sweep.errors.is_empty() {
            return Err(format!(
                "the sweep of {day} for unreferenced logs of account {} in {}: {}",
                key.account,
                key.region,
                sweep.errors.join("; ")
            ));
        }
        let start = day.and_time(NaiveTime::MIN).and_utc();
        let period = (start, start + chrono::Duration::days(1));
        self.records.write(&json!({
            "sweep": day.to_string(), "account": key.account, "region": key.region,
            "unreferenced": sweep.unreferenced.iter()
                .map(|v| serde_json::from_str::<Value>(&v.to_json_line()).unwrap_or_default())
                .collect::<Vec<_>>(),
        }));
        if let Some(hub) = &self.security_hub {
            let findings: Vec<HubFinding> = sweep
                .unreferenced
                .iter()
                .map(|v| HubFinding::for_verdict(v, None, period))
                .collect();
            hub.import(&findings).await.map_err(|e| e.to_string())?;
        }
        if let Some(topic) = &self.alerts {
            for v in &sweep.unreferenced {
                let alert = Alert::for_finding(v, None, period);
                topic.publish(&alert).await.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

impl<R: RecordSink> Deps<R> {
    /// The tripwire: one record for every event, and for a finding an alert and a Security Hub
    /// finding naming the key, the requester, the source IP, the time and the request id.
    async fn tripwire(&self, event: &ObjectEvent) -> Result<Value, String> {
        let object = event.object();
        if let Some(central) = self
            .central_bucket
            .as_deref()
            .filter(|c| *c != object.bucket)
        {
            return Ok(
                json!({"ignored": format!("bucket {} is not the central bucket {central}", object.bucket)}),
            );
        }
        let judgement = self
            .tripwire
            .judge(event)
            .await
            .map_err(|e| format!("the tripwire could not judge the event for {object}: {e}"))?;
        let tamper = match judgement {
            Judgement::Expected(why) => {
                self.records
                    .write(&json!({"tripwire": "expected", "key": object.key, "why": why}));
                return Ok(json!({"tripwire": "expected", "why": why}));
            }
            Judgement::Finding(t) => t,
        };
        self.records.write(&tamper.record());
        // Security Hub first: its id is stable, so a retry after a failed publish updates it.
        if let Some(hub) = &self.security_hub {
            hub.import(&[HubFinding::for_tamper(&tamper)])
                .await
                .map_err(|e| e.to_string())?;
        }
        if let Some(topic) = &self.alerts {
            topic
                .publish(&Alert::for_tamper(&tamper))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(json!({"tripwire": tamper.kind.as_str(), "key": object.key}))
    }

    /// A run of the scheduled re-verification, until `deadline`: the run's record, and an alert
    /// and a Security Hub finding for each finding.
    async fn reverify(&self, deadline: std::time::Instant) -> Result<Value, String> {
        let Some(reverifier) = &self.reverifier else {
            return Err("re-verification needs TRAILKEEPER_BUCKET, the central bucket".into());
        };
        let now = Utc::now();
        let run = reverifier
            .run(now, deadline)
            .await
            .map_err(|e| e.to_string())?;
        self.records
            .write(&run.record(Utc::now(), reverifier.period_days));
        let day_of = |v: &trailkeeper::report::Verdict| v.window.unwrap_or((now, now));
        if let Some(hub) = &self.security_hub {
            let findings: Vec<HubFinding> = run
                .findings
                .iter()
                .map(|v| HubFinding::for_verdict(v, None, day_of(v)))
                .collect();
            hub.import(&findings).await.map_err(|e| e.to_string())?;
        }
        if let Some(topic) = &self.alerts {
            for v in &run.findings {
                let alert = Alert::for_finding(v, None, day_of(v));
                topic.publish(&alert).await.map_err(|e| e.to_string())?;
            }
            if let Some(why) = &run.state_unreadable {
                let alert = Alert {
                    subject: "trailkeeper: re-verification's state was unreadable".into(),
                    message: format!(
                        "{why}.\n\nOnly the digest-validator writes this object: someone else changed it. Re-verification began a new pass over s3://{} and wrote a new state; each account's age of re-verification starts again with it. Who wrote the object is in the bucket's CloudTrail data events or S3 server access logs.\n",
                        reverifier.bucket
                    ),
                };
                topic.publish(&alert).await.map_err(|e| e.to_string())?;
            }
            if run.behind {
                let alert = Alert {
                    subject: "trailkeeper: re-verification is behind its period".into(),
                    message: format!(
                        "trailkeeper's scheduled re-verification of s3://{} will not finish its pass within {} days at its pace so far: {} slices (an account's region on one day) are left after this run, the pass began {}.\n\n\
                         Run it more often, give it a longer time limit, or validate the {} accounts left with S3 Batch Operations: {} holds the manifest generator over their digests (aws s3control create-job --manifest-generator file://… with the digest-validator's LambdaInvoke operation; README, \"Re-verification\").\n",
                        reverifier.bucket,
                        reverifier.period_days,
                        run.slices_left,
                        run.state
                            .pass_started
                            .map(trailkeeper::digest::file::format_time)
                            .unwrap_or_default(),
                        run.folders_left.len(),
                        run.batch_generator
                            .as_ref()
                            .map_or("(not written)".to_string(), ToString::to_string),
                    ),
                };
                topic.publish(&alert).await.map_err(|e| e.to_string())?;
            }
        }
        if !run.errors.is_empty() {
            tracing::warn!(errors = ?run.errors, "slices could not be read whole; the next pass reads them again");
        }
        Ok(json!({
            "reverified": run.slices.len(), "findings": run.findings.len(),
            "pass_completed": run.pass_completed, "slices_left": run.slices_left,
            "behind": run.behind, "errors": run.errors.len(),
        }))
    }
}

/// The day to sweep for unreferenced logs after validating a digest: the day that ended within
/// its window. A stream's windows meet end to start, so one standard digest a day spans
/// midnight, and each day is swept once, within about an hour of its end.
fn sweep_day(key: &DigestKey, period: (DateTime<Utc>, DateTime<Utc>)) -> Option<NaiveDate> {
    let (start, end) = (period.0.date_naive(), period.1.date_naive());
    (!key.backfill && start < end).then_some(start)
}

impl<R: RecordSink> Deps<R> {
    async fn batch(&self, invocation: BatchInvocation) -> Value {
        let mut results = Vec::with_capacity(invocation.tasks.len());
        for task in &invocation.tasks {
            let (code, text) = match task.object() {
                Err(why) => ("PermanentFailure", why),
                Ok(object) => match self.process(&object).await {
                    Ok(Outcome::Skipped(why)) => ("Succeeded", format!("skipped: {why}")),
                    Ok(Outcome::Validated(r)) => {
                        let findings: Vec<String> = r
                            .findings()
                            .map(|f| {
                                format!(
                                    "{} {} {}",
                                    f.kind(),
                                    f.status_str(),
                                    f.key.as_deref().unwrap_or("(unknown key)")
                                )
                            })
                            .collect();
                        let gaps: String = r
                            .gaps()
                            .map(|g| {
                                format!(
                                    "; a gap of {:.1} hours without a chain before it",
                                    g.hours().unwrap_or_default()
                                )
                            })
                            .collect();
                        if findings.is_empty() {
                            (
                                "Succeeded",
                                format!(
                                    "valid: {} log files, {} bytes{gaps}",
                                    r.logs.len(),
                                    r.summary.bytes
                                ),
                            )
                        } else {
                            ("PermanentFailure", findings.join("; "))
                        }
                    }
                    Err(e) => ("TemporaryFailure", e),
                },
            };
            let mut text = text;
            truncate_at_char(&mut text, 1024);
            results.push(json!({"taskId": task.task_id, "resultCode": code, "resultString": text}));
        }
        json!({
            "invocationSchemaVersion": invocation.invocation_schema_version,
            "treatMissingKeysAs": "PermanentFailure",
            "invocationId": invocation.invocation_id,
            "results": results,
        })
    }
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The Lambda handler.
pub async fn handle<R: RecordSink>(
    deps: &Deps<R>,
    event: LambdaEvent<Value>,
) -> Result<Value, HandlerError> {
    if let Some(hub) = &deps.security_hub {
        hub.identify(&event.context.invoked_function_arn)
            .map_err(|e| HandlerError::Retryable(e.to_string()))?;
    }
    match input::parse(&event.payload)? {
        Invocation::Ignored(why) => {
            tracing::info!(reason = %why, "event ignored");
            Ok(json!({ "ignored": why }))
        }
        Invocation::Batch(b) => Ok(deps.batch(b).await),
        Invocation::Tripwire(e) => deps.tripwire(&e).await.map_err(HandlerError::Retryable),
        Invocation::Reverify => {
            // Stop starting slices a minute before Lambda's time limit.
            let left = event
                .context
                .deadline()
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
                .saturating_sub(std::time::Duration::from_secs(60));
            deps.reverify(std::time::Instant::now() + left)
                .await
                .map_err(HandlerError::Retryable)
        }
        Invocation::Objects(objects) => {
            let mut digests = Vec::new();
            let mut errors = Vec::new();
            for object in &objects {
                match deps.process(object).await {
                    Ok(Outcome::Skipped(why)) => {
                        digests.push(json!({"key": object.key, "skipped": why}))
                    }
                    Ok(Outcome::Validated(r)) => digests.push(json!({
                        "key": r.key, "verdict": r.verdict(), "findings": r.findings().count(),
                        "gaps": r.gaps().count(),
                    })),
                    Err(e) => errors.push(e),
                }
            }
            if errors.is_empty() {
                Ok(json!({ "digests": digests }))
            } else {
                // Lambda retries the event; validating again is harmless.
                Err(HandlerError::Retryable(errors.join("; ")))
            }
        }
    }
}
