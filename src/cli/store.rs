//! `mindmesh store check`: verify a node's store file (every page's checksum, as a node does
//! on open) and list its tables with their rows, without changing it. Exit status 0: sound;
//! 1: damaged, empty or missing; 2: could not be checked (a running node holds it).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Verify a stopped node's store (`<data_dir>/mindmesh.redb`) on a copy: exit 0 when every
    /// page checks out, 1 when the file is damaged, empty or missing, 2 when it cannot be
    /// checked (a running node holds it). Lists each table with its rows. redb repairs by
    /// itself what an unclean stop leaves (a node does so on open); a file that fails this
    /// check cannot be repaired: restore it from a backup.
    Check {
        /// The node's data dir.
        #[arg(long, default_value_os_t = mindmesh_core::config::NodeSection::default().data_dir)]
        data_dir: PathBuf,
        /// The report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Check { data_dir, json } => {
            let path = data_dir.join(mindmesh_node::daemon::STORE_FILE);
            let checked = tokio::task::spawn_blocking(move || mindmesh_store::check_file(&path, &data_dir)).await?;
            let report = match checked {
                Ok(r) => r,
                Err(e) => {
                    if json {
                        println!("{}", serde_json::json!({"ok": false, "checked": false, "error": e.to_string()}));
                    } else {
                        eprintln!("error: {e}");
                    }
                    return Ok(ExitCode::from(2));
                }
            };
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                match &report.error {
                    None => println!("{}: sound ({} bytes)", report.path, report.file_bytes),
                    Some(e) => println!("{}: DAMAGED: {e}", report.path),
                }
                if !report.tables.is_empty() {
                    let rows: Vec<Vec<String>> =
                        report.tables.iter().map(|t| vec![t.name.clone(), t.rows.to_string()]).collect();
                    super::table::print(&["TABLE", "ROWS"], &rows);
                }
                if !report.ok {
                    println!(
                        "restore the file from a backup, or move it aside and start the node again \
                         (a mesh member then needs `mindmesh node start --rejoin-as-new`)"
                    );
                }
            }
            Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
