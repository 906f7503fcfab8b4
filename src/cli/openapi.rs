//! `app openapi` (hidden): prints the OpenAPI spec the binary serves, for
//! `scripts/gen-openapi.sh` and for clients generated offline.

/// Options of `app openapi`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// `json` or `yaml`.
    #[arg(long, default_value = "json", value_parser = ["json", "yaml"])]
    pub format: String,
}

/// Prints the spec to stdout. The spec does not depend on configuration, so this loads none.
pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let spec = match args.format.as_str() {
        "yaml" => crate::api::spec_yaml(),
        _ => crate::api::spec_json(),
    };
    print!("{spec}");
    Ok(())
}
