// The handler future nests the engine's deeply: the default limit of 128 is too low.
#![recursion_limit = "256"]

use digest_validator::{Config, Deps, Stdout, handle};
use lambda_runtime::{Error, run, service_fn, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let aws = trailkeeper::store::load_aws_config().await;
    let deps = Deps::new(&aws, config, Stdout);
    run(service_fn(|event| handle(&deps, event))).await
}
