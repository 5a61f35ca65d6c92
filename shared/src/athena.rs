//! The archive's Athena tables (template.yaml, log-archive half) partition CloudTrail logs by
//! account, region and day, with partition projection, so that no crawler or `MSCK REPAIR` runs.
//!
//! ## Why the account partition is an `enum` that onboarding keeps
//! Athena's other choice, `injected`, refuses every query that does not name its accounts as
//! literals, and the questions an archive answers cross accounts ("who deleted this bucket",
//! "what did this access key do anywhere"). trailkeeper knows the onboarded accounts exactly,
//! since it admits each one to the bucket policy. So, once an account is admitted, the same
//! onboarding step adds it to `projection.account.values` of each table: a Glue read-modify-write
//! under the table's `VersionId`, retried when a concurrent writer wins. An account already
//! listed costs one `GetTable` and no write, so re-running onboarding is free and also repairs a
//! list that a stack update reset.

use aws_sdk_glue::error::ProvideErrorMetadata;
use aws_sdk_glue::types::{Table, TableInput};

use crate::config::{self, ConfigError};
use crate::events::AccountId;
use crate::store::describe_sdk_error;

/// The IAM actions of [`AccountProjection`].
pub const CALLS: &[&str] = &["glue:GetTable", "glue:UpdateTable"];

/// The table parameter that lists the projected accounts, comma-separated.
pub const ACCOUNT_VALUES: &str = "projection.account.values";

/// Attempts per table when concurrent writers keep winning.
const ATTEMPTS: usize = 8;

/// The Glue database and tables whose account projection onboarding keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryTables {
    pub database: String,
    pub tables: Vec<String>,
}

impl QueryTables {
    /// `TRAILKEEPER_ATHENA_DATABASE` and `TRAILKEEPER_ATHENA_TABLES` (comma-separated); `None`
    /// when no database is set (a deployment without the Athena tables).
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        Self::from_vars(config::optional)
    }

    /// [`Self::from_env`] over any source of variables.
    pub fn from_vars(
        var: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let set = |v: &'static str| var(v).filter(|s| !s.trim().is_empty());
        let Some(database) = set("TRAILKEEPER_ATHENA_DATABASE") else {
            return match set("TRAILKEEPER_ATHENA_TABLES") {
                Some(_) => Err(ConfigError {
                    variable: "TRAILKEEPER_ATHENA_DATABASE",
                    why: "is not set, but TRAILKEEPER_ATHENA_TABLES is: name their database".into(),
                }),
                None => Ok(None),
            };
        };
        let tables: Vec<String> = set("TRAILKEEPER_ATHENA_TABLES")
            .unwrap_or_default()
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if tables.is_empty() {
            return Err(ConfigError {
                variable: "TRAILKEEPER_ATHENA_TABLES",
                why: format!(
                    "is not set: name the tables of database {}",
                    database.trim()
                ),
            });
        }
        if let Some(bad) = tables.iter().find(|t| !is_glue_name(t)) {
            return Err(ConfigError {
                variable: "TRAILKEEPER_ATHENA_TABLES",
                why: format!("names {bad:?}, which is not a Glue table name"),
            });
        }
        let database = database.trim().to_string();
        if !is_glue_name(&database) {
            return Err(ConfigError {
                variable: "TRAILKEEPER_ATHENA_DATABASE",
                why: format!("is {database:?}, which is not a Glue database name"),
            });
        }
        Ok(Some(Self { database, tables }))
    }
}

/// Athena's safe table and database names: lowercase letters, digits and underscores.
fn is_glue_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("account {account}: Glue table {database}.{table}: {message}")]
    Table {
        account: AccountId,
        database: String,
        table: String,
        message: String,
    },
}

/// The account list with `account` added: `None` when it is there already. Values keep their
/// order (Athena takes every character between commas as part of a value, so nothing is
/// trimmed or re-sorted), and the new account goes last.
pub fn with_account(values: &str, account: AccountId) -> Option<String> {
    let id = account.to_string();
    if values.split(',').any(|v| v == id) {
        return None;
    }
    Some(if values.is_empty() {
        id
    } else {
        format!("{values},{id}")
    })
}

/// Adds onboarded accounts to the tables' account projection.
#[derive(Debug, Clone)]
pub struct AccountProjection {
    glue: aws_sdk_glue::Client,
    pub tables: QueryTables,
}

impl AccountProjection {
    pub fn new(aws: &aws_config::SdkConfig, tables: QueryTables) -> Self {
        Self {
            glue: aws_sdk_glue::Client::new(aws),
            tables,
        }
    }

    /// Makes every table project `account`; returns each table and whether it had to change.
    pub async fn project(&self, account: AccountId) -> Result<Vec<(&str, bool)>, ProjectionError> {
        let mut out = Vec::new();
        for table in &self.tables.tables {
            out.push((table.as_str(), self.project_one(account, table).await?));
        }
        Ok(out)
    }

    async fn project_one(&self, account: AccountId, table: &str) -> Result<bool, ProjectionError> {
        let database = &self.tables.database;
        let fail = |message: String| ProjectionError::Table {
            account,
            database: database.clone(),
            table: table.to_string(),
            message,
        };
        for _ in 0..ATTEMPTS {
            let current = self
                .glue
                .get_table()
                .database_name(database)
                .name(table)
                .send()
                .await
                .map_err(|e| fail(format!("GetTable: {}", describe_sdk_error(&e))))?
                .table
                .ok_or_else(|| fail("GetTable returned no table".into()))?;
            let values = current
                .parameters
                .as_ref()
                .and_then(|p| p.get(ACCOUNT_VALUES))
                .ok_or_else(|| {
                    fail(format!(
                        "has no {ACCOUNT_VALUES} parameter: it is not a table whose accounts \
                         trailkeeper projects"
                    ))
                })?;
            let Some(values) = with_account(values, account) else {
                return Ok(false);
            };
            let input = table_input(&current, values).map_err(fail)?;
            match self
                .glue
                .update_table()
                .database_name(database)
                .table_input(input)
                .set_version_id(current.version_id.clone())
                .send()
                .await
            {
                Ok(_) => return Ok(true),
                // Another writer changed the table since our read: read it again.
                Err(e) if e.code() == Some("ConcurrentModificationException") => continue,
                Err(e) => return Err(fail(format!("UpdateTable: {}", describe_sdk_error(&e)))),
            }
        }
        Err(fail(format!(
            "UpdateTable lost to concurrent writers {ATTEMPTS} times"
        )))
    }
}

/// The table as it is, with the new account list: every field `UpdateTable` takes is carried
/// over, so nothing but the list changes.
fn table_input(table: &Table, values: String) -> Result<TableInput, String> {
    if table.view_original_text.is_some() || table.view_definition.is_some() {
        return Err("is a view, not a table of logs".into());
    }
    let mut parameters = table.parameters.clone().unwrap_or_default();
    parameters.insert(ACCOUNT_VALUES.to_string(), values);
    TableInput::builder()
        .name(&table.name)
        .set_description(table.description.clone())
        .set_owner(table.owner.clone())
        .retention(table.retention)
        .set_storage_descriptor(table.storage_descriptor.clone())
        .set_partition_keys(table.partition_keys.clone())
        .set_table_type(table.table_type.clone())
        .set_parameters(Some(parameters))
        .set_target_table(table.target_table.clone())
        .build()
        .map_err(|e| format!("cannot restate the table: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(s: &str) -> AccountId {
        s.parse().unwrap()
    }

    #[test]
    fn an_account_is_added_once_and_last() {
        let a = account("111111111111");
        let b = account("222222222222");
        assert_eq!(with_account("", a).as_deref(), Some("111111111111"));
        assert_eq!(
            with_account("111111111111", b).as_deref(),
            Some("111111111111,222222222222")
        );
        assert_eq!(with_account("222222222222,111111111111", a), None);
        // A near miss is not the account.
        assert_eq!(
            with_account("1111111111110", a).as_deref(),
            Some("1111111111110,111111111111")
        );
    }

    #[test]
    fn settings_name_the_variable_at_fault() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |v: &'static str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == v)
                    .map(|(_, x)| x.to_string())
            }
        };
        assert_eq!(QueryTables::from_vars(vars(&[])).unwrap(), None);
        assert_eq!(
            QueryTables::from_vars(vars(&[
                ("TRAILKEEPER_ATHENA_DATABASE", "trailkeeper"),
                ("TRAILKEEPER_ATHENA_TABLES", "cloudtrail, cloudtrail_org"),
            ]))
            .unwrap(),
            Some(QueryTables {
                database: "trailkeeper".into(),
                tables: vec!["cloudtrail".into(), "cloudtrail_org".into()],
            })
        );
        let e = QueryTables::from_vars(vars(&[("TRAILKEEPER_ATHENA_TABLES", "cloudtrail")]))
            .unwrap_err();
        assert_eq!(e.variable, "TRAILKEEPER_ATHENA_DATABASE");
        let e = QueryTables::from_vars(vars(&[("TRAILKEEPER_ATHENA_DATABASE", "trailkeeper")]))
            .unwrap_err();
        assert_eq!(e.variable, "TRAILKEEPER_ATHENA_TABLES");
        let e = QueryTables::from_vars(vars(&[
            ("TRAILKEEPER_ATHENA_DATABASE", "trailkeeper"),
            ("TRAILKEEPER_ATHENA_TABLES", "Cloud-Trail"),
        ]))
        .unwrap_err();
        assert!(e.why.contains("Cloud-Trail"), "{e}");
    }
}
