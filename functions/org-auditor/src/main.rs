use lambda_runtime::{Error, run, service_fn, tracing};
use org_auditor::{Config, Deps, Stdout, handle};
use trailkeeper::onboard::OnboardConfig;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let onboard = OnboardConfig::from_env()?;
    let config = Config::from_env()?;
    let aws = trailkeeper::store::load_aws_config().await;
    let deps = Deps::new(&aws, onboard, config, Stdout);
    run(service_fn(|event| handle(&deps, event))).await
}
