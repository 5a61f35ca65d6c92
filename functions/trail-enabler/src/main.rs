use lambda_runtime::{Error, run, service_fn, tracing};
use trail_enabler::{Deps, handle};
use trailkeeper::onboard::OnboardConfig;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = OnboardConfig::from_env()?;
    let aws = trailkeeper::store::load_aws_config().await;
    let deps = Deps::new(&aws, config);
    run(service_fn(|event| handle(&deps, event))).await
}
