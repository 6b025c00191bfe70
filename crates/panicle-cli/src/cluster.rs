//! `panicle cluster`: the clustering job on JSON-lines files, for tuning and
//! for tools outside the server.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result};
use panicle_cluster::{Params, cluster_jsonl};

pub fn run(input: &Path, output: Option<&Path>, params: &Params) -> Result<()> {
    let reader: Box<dyn std::io::BufRead> = if input == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        let file = File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    let writer: Box<dyn Write> = match output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let progress_bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message("reading groups");
        bar
    });
    let summary = cluster_jsonl(reader, writer, params, |read| {
        if let Some(bar) = &progress_bar {
            bar.set_position(read as u64);
            bar.set_message(format!("{read} groups read"));
        }
    })
    .with_context(|| format!("clustering {} failed", input.display()))?;
    if let Some(bar) = progress_bar {
        bar.finish_and_clear();
    }
    eprintln!(
        "panicle: {} groups ({} events) → {} clusters, {} noise groups",
        summary.groups, summary.events, summary.clusters, summary.noise_groups
    );
    Ok(())
}
