//! `mindmesh completions SHELL` and `mindmesh man --out DIR`: shell completions and man pages
//! generated from the CLI's own definition, so they can never disagree with `--help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for; e.g. `mindmesh completions bash > /etc/bash_completion.d/mindmesh`.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing): `mindmesh.1` and one page per
    /// command, `mindmesh-persona-apply.1` and so on; e.g. `/usr/local/share/man/man1`.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = super::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "mindmesh", &mut out);
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut cmd = super::Cli::command();
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, &["mindmesh".to_owned()], &args.out, &mut written)?;
    for f in &written {
        println!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A page for the command at `words` (`mindmesh persona list`), then one for each visible
/// subcommand.
fn write_pages(cmd: &clap::Command, words: &[String], dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    // the page's title is its file's name, as man(1) looks it up: `man mindmesh-persona-list`
    let name = words.join("-");
    // clap takes a command's name as a static string (without its `string` feature); a
    // one-shot command leaking a few dozen short names is the cheaper way
    let page = cmd.clone().name(&*name.clone().leak()).bin_name(words.join(" "));
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf).with_context(|| format!("rendering {name}"))?;
    std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let mut sub_words = words.to_vec();
        sub_words.push(sub.get_name().to_owned());
        write_pages(sub, &sub_words, dir, written)?;
    }
    Ok(())
}
