//! The `trailkeeper` command line, over the same engine the Lambdas run.

pub mod onboard;
pub mod validate;

use clap::{Parser, Subcommand};

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
}
