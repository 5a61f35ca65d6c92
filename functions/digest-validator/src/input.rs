//! What invokes the digest-validator: S3 notifications, EventBridge "Object Created" events, and
//! S3 Batch Operations. Each becomes the objects to look at.

use aws_lambda_events::event::s3::S3Event;
use serde::Deserialize;
use serde_json::Value;
use trailkeeper::store::ObjectRef;
use trailkeeper::tripwire::ObjectEvent;

/// A known kind of event that does not have the shape of its kind.
#[derive(Debug, thiserror::Error)]
#[error("malformed {kind}: {why}")]
pub struct InputError {
    pub kind: &'static str,
    pub why: String,
}

/// An S3 Batch Operations `LambdaInvoke` request, schema 1.0 (`s3BucketArn`) or 2.0 (`s3Bucket`);
/// aws_lambda_events' type knows only 1.0.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInvocation {
    pub invocation_schema_version: String,
    pub invocation_id: String,
    pub tasks: Vec<BatchTask>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchTask {
    pub task_id: String,
    pub s3_key: String,
    #[serde(default)]
    pub s3_bucket_arn: Option<String>,
    #[serde(default)]
    pub s3_bucket: Option<String>,
}

impl BatchTask {
    pub fn object(&self) -> Result<ObjectRef, String> {
        let bucket = match (&self.s3_bucket, &self.s3_bucket_arn) {
            (Some(b), _) => b.clone(),
            // `arn:aws:s3:::bucket`; AWS's own samples also show `arn:aws:s3:region:acct:bucket`.
            (None, Some(arn)) => arn.rsplit(':').next().unwrap_or_default().to_string(),
            (None, None) => String::new(),
        };
        if bucket.is_empty() {
            return Err(format!("task {} names no bucket", self.task_id));
        }
        Ok(ObjectRef::new(bucket, decode_key(&self.s3_key)))
    }
}

pub enum Invocation {
    Objects(Vec<ObjectRef>),
    Batch(BatchInvocation),
    /// A write or delete under `AWSLogs/` that CloudTrail did not make (the tripwire rule).
    Tripwire(Box<ObjectEvent>),
    /// The scheduled re-verification of history (`{"check": "reverify"}`).
    Reverify,
    Ignored(String),
}

/// S3 notification keys are form-encoded (`+` is a space). Batch manifests carry encoded keys
/// too; CloudTrail's keys never contain `+` or `%`, so decoding can only restore, not corrupt.
pub fn decode_key(raw: &str) -> String {
    percent_encoding::percent_decode_str(&raw.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn typed<T: for<'de> Deserialize<'de>>(event: &Value, kind: &'static str) -> Result<T, InputError> {
    serde_json::from_value(event.clone()).map_err(|e| InputError {
        kind,
        why: e.to_string(),
    })
}

pub fn parse(event: &Value) -> Result<Invocation, InputError> {
    let Some(fields) = event.as_object() else {
        return Ok(Invocation::Ignored("the event is not a JSON object".into()));
    };
    if fields.contains_key("Records") {
        const KIND: &str = "S3 notification";
        let e: S3Event = typed(event, KIND)?;
        let mut objects = Vec::new();
        for (i, r) in e.records.iter().enumerate() {
            let name = r.event_name.as_deref().unwrap_or_default();
            // CloudTrail never copies: a copy is not a delivery (README, "Copies are not
            // deliveries").
            if !name.starts_with("ObjectCreated") || name == "ObjectCreated:Copy" {
                continue;
            }
            let (Some(bucket), Some(key)) = (&r.s3.bucket.name, &r.s3.object.key) else {
                return Err(InputError {
                    kind: KIND,
                    why: format!(
                        "Records[{i}].s3.bucket.name or Records[{i}].s3.object.key is missing"
                    ),
                });
            };
            objects.push(ObjectRef::new(bucket, decode_key(key)));
        }
        return Ok(Invocation::Objects(objects));
    }
    if fields.get("source").and_then(Value::as_str) == Some("aws.s3") {
        let detail_type = fields.get("detail-type").and_then(Value::as_str);
        if !matches!(detail_type, Some("Object Created" | "Object Deleted")) {
            return Ok(Invocation::Ignored(
                "an S3 event that is neither Object Created nor Object Deleted".into(),
            ));
        }
        let e: ObjectEvent = typed(event, "EventBridge S3 object event")?;
        // CloudTrail's own delivery is validated; anything else under AWSLogs/ (a delete, a
        // copy, a write by anyone else) is the tripwire's to judge.
        if !e.is_cloudtrail_delivery() {
            return Ok(Invocation::Tripwire(Box::new(e)));
        }
        // EventBridge keys are not encoded.
        return Ok(Invocation::Objects(vec![e.object()]));
    }
    if fields.get("check").and_then(Value::as_str) == Some("reverify") {
        return Ok(Invocation::Reverify);
    }
    if fields.contains_key("invocationSchemaVersion") {
        return typed(event, "S3 Batch Operations invocation").map(Invocation::Batch);
    }
    if fields.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Invocation::Ignored(
            "the S3 test event sent when a notification is configured".into(),
        ));
    }
    Ok(Invocation::Ignored(
        "not an S3 notification, an EventBridge S3 event or an S3 Batch Operations invocation"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/digest-validator");
    const SAMPLE_KEY: &str = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/01/111122223333_CloudTrail-Digest_us-east-1_trailkeeper_us-east-1_20261101T050412Z.json.gz";

    fn sample(name: &str) -> Value {
        let path = format!("{EVENTS}/{name}");
        serde_json::from_str(
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        )
        .unwrap()
    }

    #[test]
    fn every_sample_event_is_understood() {
        let mut seen = 0;
        for entry in std::fs::read_dir(EVENTS).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !name.ends_with(".json") {
                continue;
            }
            seen += 1;
            match (name.as_str(), parse(&sample(&name)).unwrap()) {
                (
                    "s3-object-created.json" | "eventbridge-object-created.json",
                    Invocation::Objects(o),
                ) => {
                    assert_eq!(o, vec![ObjectRef::new("central-logs", SAMPLE_KEY)]);
                }
                ("batch-1.0.json" | "batch-2.0.json", Invocation::Batch(b)) => {
                    assert_eq!(
                        b.tasks[0].object().unwrap(),
                        ObjectRef::new("central-logs", SAMPLE_KEY)
                    );
                }
                ("s3-test-event.json", Invocation::Ignored(why)) => {
                    assert!(why.contains("test event"))
                }
                (
                    "tripwire-object-deleted.json"
                    | "tripwire-object-overwritten.json"
                    | "tripwire-lifecycle-expiration.json",
                    Invocation::Tripwire(e),
                ) => assert!(e.detail.requester.is_some() && e.detail.request_id.is_some()),
                ("scheduled-reverify.json", Invocation::Reverify) => {}
                (other, _) => panic!("{other}: not understood as its kind"),
            }
        }
        assert_eq!(seen, 9);
    }

    #[test]
    fn copies_and_other_writers_go_to_the_tripwire_not_to_validation() {
        let mut eb = sample("eventbridge-object-created.json");
        eb["detail"]["reason"] = "CopyObject".into();
        let Invocation::Tripwire(e) = parse(&eb).unwrap() else {
            panic!("a CopyObject event was taken for a delivery")
        };
        assert_eq!(e.detail.object.key, SAMPLE_KEY);
        eb["detail"]["reason"] = "PutObject".into();
        assert!(matches!(parse(&eb).unwrap(), Invocation::Objects(o) if o.len() == 1));
        eb["detail"]["requester"] = "999988887777".into();
        assert!(matches!(parse(&eb).unwrap(), Invocation::Tripwire(_)));
        let mut s3 = sample("s3-object-created.json");
        s3["Records"][0]["eventName"] = "ObjectCreated:Copy".into();
        assert!(matches!(parse(&s3).unwrap(), Invocation::Objects(o) if o.is_empty()));
    }

    #[test]
    fn notification_keys_are_form_decoded_and_eventbridge_keys_are_not() {
        let mut s3 = sample("s3-object-created.json");
        s3["Records"][0]["s3"]["object"]["key"] = "logs+2026/a%2Bb%20c.json.gz".into();
        let Invocation::Objects(o) = parse(&s3).unwrap() else {
            panic!()
        };
        assert_eq!(o[0].key, "logs 2026/a+b c.json.gz");
        let mut eb = sample("eventbridge-object-created.json");
        eb["detail"]["object"]["key"] = "logs+2026/a%2Bb.json.gz".into();
        let Invocation::Objects(o) = parse(&eb).unwrap() else {
            panic!()
        };
        assert_eq!(o[0].key, "logs+2026/a%2Bb.json.gz");
    }

    #[test]
    fn a_batch_task_with_the_awsdocs_arn_form_names_its_bucket() {
        let task = BatchTask {
            task_id: "t".into(),
            s3_key: "k".into(),
            s3_bucket_arn: Some("arn:aws:s3:us-east-1:0123456788:awsexamplebucket1".into()),
            s3_bucket: None,
        };
        assert_eq!(task.object().unwrap().bucket, "awsexamplebucket1");
    }

    #[test]
    fn removals_are_not_validated_and_malformed_known_events_name_the_field() {
        let mut s3 = sample("s3-object-created.json");
        s3["Records"][0]["eventName"] = "ObjectRemoved:Delete".into();
        assert!(matches!(parse(&s3).unwrap(), Invocation::Objects(o) if o.is_empty()));
        let mut broken = sample("s3-object-created.json");
        broken["Records"][0]["s3"]["object"]
            .as_object_mut()
            .unwrap()
            .remove("key");
        let err = parse(&broken).err().unwrap();
        assert!(
            err.to_string().contains("Records[0].s3.object.key"),
            "{err}"
        );
        assert!(parse(&serde_json::json!({"invocationSchemaVersion": "1.0"})).is_err());
        assert!(matches!(
            parse(&serde_json::json!([1, 2])).unwrap(),
            Invocation::Ignored(_)
        ));
        assert!(matches!(
            parse(&serde_json::json!({"accountId": "1"})).unwrap(),
            Invocation::Ignored(_)
        ));
    }
}
