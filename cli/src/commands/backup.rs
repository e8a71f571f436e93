//! `cairn meta backup FILE` and `cairn meta restore FILE -- CAIRN_META_FLAGS`.

use std::path::Path;

use anyhow::Context;
use cairn_client::Client;

/// Writes a backup of the metadata to `file` (through `FILE.partial`, synced, then
/// renamed: `file` is either the old content or a whole, checked backup).
pub async fn backup(client: &Client, file: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let partial = file.with_extension("partial");
    let written = async {
        let mut out = tokio::fs::File::create(&partial)
            .await
            .with_context(|| format!("create {partial:?}"))?;
        let written = client.backup_metadata(&mut out).await?;
        out.sync_all()
            .await
            .with_context(|| format!("sync {partial:?}"))?;
        tokio::fs::rename(&partial, file)
            .await
            .with_context(|| format!("rename {partial:?} to {file:?}"))?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::File::open(dir).await?.sync_all().await?;
        }
        anyhow::Ok(written)
    }
    .await;
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e.context("back up the metadata"));
        }
    };
    println!(
        "metadata backup written to {} ({} bytes, blake3 {}) in {:.1} s",
        file.display(),
        written.bytes,
        written.blake3,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `cairn-meta --restore FILE` with the replica's own flags (it writes the
/// replica's data directory: run it on that host, with its configuration).
pub fn restore(file: &Path, meta_args: &[String]) -> anyhow::Result<()> {
    let binary = cairn_devcluster::own_bin_dir()
        .map(|dir| dir.join("cairn-meta"))
        .ok()
        .filter(|b| b.exists())
        .unwrap_or_else(|| "cairn-meta".into());
    let status = std::process::Command::new(&binary)
        .arg("--restore")
        .arg(file)
        .args(meta_args)
        .status()
        .with_context(|| format!("run {binary:?}"))?;
    if !status.success() {
        anyhow::bail!("{binary:?} --restore failed ({status})");
    }
    Ok(())
}
