//! Settings from the environment, shared by the Lambdas and the CLI. A missing or invalid
//! required setting fails at start-up, naming the variable.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {variable} {why}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub why: String,
}

/// An optional setting; set but empty counts as unset.
pub fn optional(variable: &'static str) -> Option<String> {
    std::env::var(variable)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// An optional setting that must match `check` when set.
pub fn optional_checked(
    variable: &'static str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Option<String>, ConfigError> {
    match optional(variable) {
        None => Ok(None),
        Some(v) => check(&v)
            .map(|()| Some(v))
            .map_err(|why| ConfigError { variable, why }),
    }
}

/// An SNS topic ARN: `arn:<partition>:sns:<region>:<account>:<name>`.
pub fn check_sns_topic_arn(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split(':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && crate::digest::key::is_account_id(parts[4])
        && !parts[5].is_empty();
    if ok {
        Ok(())
    } else {
        Err(format!("is not an SNS topic ARN: {v:?}"))
    }
}

/// An S3 bucket name as S3 allows it (3 to 63 characters of a-z, 0-9, '.', '-').
pub fn check_bucket_name(v: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!("is not an S3 bucket name: {v:?}"))
    }
}

/// A positive count, with a default.
pub fn count(variable: &'static str, default: usize) -> Result<usize, ConfigError> {
    match optional(variable) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(ConfigError {
                variable,
                why: format!("is not a positive whole number: {v:?}"),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_arns_and_bucket_names_are_checked() {
        assert!(
            check_sns_topic_arn("arn:aws:sns:us-east-1:111122223333:trailkeeper-alerts").is_ok()
        );
        assert!(check_sns_topic_arn("arn:aws:sqs:us-east-1:111122223333:q").is_err());
        assert!(check_sns_topic_arn("trailkeeper-alerts").is_err());
        assert!(check_bucket_name("central-logs").is_ok());
        assert!(check_bucket_name("Central_Logs").is_err());
        assert!(check_bucket_name("ab").is_err());
    }
}
