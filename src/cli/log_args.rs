//! The options `events` and `decisions` share: a log read from its latest rows, optionally
//! followed.

use super::client::ApiArgs;

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Keep printing rows as they land (decisions: and their outcomes as they land).
    #[arg(long, short)]
    pub follow: bool,
    /// Only this persona's rows (a name the mesh has never heard of is an error).
    #[arg(long)]
    pub persona: Option<String>,
    /// How many of the latest rows to show first.
    #[arg(long, default_value_t = 50)]
    pub last: u64,
    /// One JSON object per line (times in epoch milliseconds).
    #[arg(long)]
    pub json: bool,
}
