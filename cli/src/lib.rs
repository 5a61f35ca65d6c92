//! The `trailkeeper` command line, over the same engine the Lambdas run.

pub mod audit;
pub mod consolidate;
pub mod onboard;
pub mod retire;
pub mod validate;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Parser)]
#[command(
    name = "trailkeeper",
    version,
    about = "Keep an AWS organization's CloudTrail history provably intact"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate delivered CloudTrail history: digest signatures, log hashes and the digest chain.
    Validate(validate::ValidateArgs),
    /// Admit accounts to the bucket (and key) policy and give them the trail, as the Lambdas do.
    Onboard(onboard::OnboardArgs),
    /// Copy old trails' history into the central bucket: server-side, verified, resumable.
    Consolidate(consolidate::ConsolidateArgs),
    /// Is every account of the organization covered: its trail, its logging, its admission?
    Audit(audit::AuditArgs),
    /// After consolidation: delete old trails and empty and delete their bucket, once every
    /// object in it has a verified copy in the central bucket (a plan without --yes).
    Retire(retire::RetireArgs),
}

/// The onboarding configuration from the environment, as the Lambdas read it; on error, says
/// so under `command`'s name and returns None (exit 2: nothing could be done).
pub(crate) fn onboard_config_from_env(
    command: &str,
    err: &mut dyn std::io::Write,
) -> Option<trailkeeper::onboard::OnboardConfig> {
    trailkeeper::onboard::OnboardConfig::from_env()
        .map_err(|e| {
            let _ = writeln!(err, "trailkeeper {command}: {e}");
        })
        .ok()
}

/// What the commands that act across the organization as the Lambdas do (audit, retire) run
/// with; tests give their own, with a short backoff.
#[derive(Debug, Clone)]
pub struct OrgSetup {
    /// The onboarding configuration, as the Lambdas read it.
    pub config: trailkeeper::onboard::OnboardConfig,
    /// The caller's SDK configuration.
    pub aws: aws_config::SdkConfig,
    /// How long a member role may take to become assumable.
    pub backoff: trailkeeper::trail::Backoff,
}

impl OrgSetup {
    /// From the environment, with the Lambdas' backoff; on error, says so under `command`'s
    /// name and returns None (exit 2).
    pub(crate) async fn from_env(command: &str, err: &mut dyn std::io::Write) -> Option<Self> {
        let config = onboard_config_from_env(command, err)?;
        Some(Self {
            config,
            aws: trailkeeper::store::load_aws_config().await,
            backoff: trailkeeper::trail::Backoff::SETTLING,
        })
    }
}

/// A progress bar on stderr when `wanted` and stderr is a terminal; hidden otherwise.
pub(crate) fn progress_bar(wanted: bool, template: &str) -> ProgressBar {
    if !(wanted && std::io::stderr().is_terminal()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
