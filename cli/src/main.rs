use clap::Parser;
use trailkeeper_cli::{Cli, Command, audit, consolidate, onboard, retire, validate};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TRAILKEEPER_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let code = match Cli::parse().command {
        Command::Validate(args) => {
            validate::run(args, &mut std::io::stdout().lock(), &mut std::io::stderr()).await
        }
        Command::Audit(args) => {
            audit::run(args, &mut std::io::stdout().lock(), &mut std::io::stderr()).await
        }
        Command::Consolidate(args) => {
            consolidate::run(args, &mut std::io::stdout().lock(), &mut std::io::stderr()).await
        }
        Command::Onboard(args) => {
            onboard::run(args, &mut std::io::stdout().lock(), &mut std::io::stderr()).await
        }
        Command::Retire(args) => {
            retire::run(args, &mut std::io::stdout().lock(), &mut std::io::stderr()).await
        }
    };
    std::process::exit(code);
}
