//! Bucket and object commands.

use std::ops::Range;
use std::path::Path;

use anyhow::{bail, Context};
use cairn_client::Client;
use cairn_common::Redundancy;

/// Splits `BUCKET/KEY`.
pub(super) fn split_target(target: &str) -> anyhow::Result<(&str, &str)> {
    match target.split_once('/') {
        Some((b, k)) => Ok((b, k)),
        None => bail!("{target:?} is not BUCKET/KEY"),
    }
}

fn parse_range(text: &str) -> anyhow::Result<Range<u64>> {
    let (a, b) = text
        .split_once('-')
        .with_context(|| format!("range {text:?} is not START-END"))?;
    let start: u64 = a
        .parse()
        .with_context(|| format!("bad range start {a:?}"))?;
    let end: u64 = b.parse().with_context(|| format!("bad range end {b:?}"))?;
    if end < start {
        bail!("range {text:?} ends before it starts");
    }
    Ok(start..end)
}

pub async fn bucket_create(
    client: &Client,
    name: &str,
    redundancy: Redundancy,
) -> anyhow::Result<()> {
    client.create_bucket(name, redundancy).await?;
    println!("created bucket {name} ({redundancy})");
    Ok(())
}

pub async fn bucket_ls(client: &Client, json: bool) -> anyhow::Result<()> {
    let buckets = client.list_buckets().await?;
    if json {
        let list: Vec<_> = buckets
            .iter()
            .map(|b| serde_json::json!({"name": b.name, "redundancy": b.redundancy.to_string()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for b in buckets {
            println!("{:<32} {}", b.name, b.redundancy);
        }
    }
    Ok(())
}

pub async fn put(client: &Client, target: &str, file: &str) -> anyhow::Result<()> {
    let (bucket, key) = split_target(target)?;
    let outcome = if file == "-" {
        client.put(bucket, key, tokio::io::stdin()).await?
    } else {
        let f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("open {file:?}"))?;
        let size = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        let reader = super::progress::Counted {
            inner: tokio::io::BufReader::with_capacity(1 << 20, f),
            bar: super::progress::bar(size),
        };
        let bar = reader.bar.clone();
        let outcome = client.put(bucket, key, reader).await;
        bar.finish_and_clear();
        outcome?
    };
    let degraded = if outcome.degraded_chunks > 0 {
        format!(
            " ({} chunks degraded: written with fewer shards than the scheme, queued for repair)",
            outcome.degraded_chunks
        )
    } else {
        String::new()
    };
    eprintln!(
        "put {bucket}/{key}: {} bytes, generation {}{degraded}",
        outcome.size, outcome.generation
    );
    Ok(())
}

pub async fn get(
    client: &Client,
    target: &str,
    file: &str,
    range: Option<&str>,
) -> anyhow::Result<()> {
    let (bucket, key) = split_target(target)?;
    let range = range.map(parse_range).transpose()?;
    if file == "-" {
        let mut out = tokio::io::stdout();
        client.get(bucket, key, range, &mut out).await?;
        return Ok(());
    }
    // Write beside the destination and rename on success: a failed get leaves no
    // partial file under the requested name.
    let path = Path::new(file);
    let partial = path.with_extension("cairn-partial");
    let object = client.open(bucket, key).await?;
    let f = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("create {partial:?}"))?;
    let total = range.as_ref().map_or(object.stat.size, |r| r.end - r.start);
    let mut out = super::progress::Counted {
        inner: tokio::io::BufWriter::with_capacity(1 << 20, f),
        bar: super::progress::bar(total),
    };
    let result = client.read(&object, range, &mut out).await;
    out.bar.finish_and_clear();
    match result {
        Ok(()) => {
            drop(out);
            tokio::fs::rename(&partial, path)
                .await
                .with_context(|| format!("rename {partial:?} to {path:?}"))?;
            Ok(())
        }
        Err(e) => {
            drop(out);
            let _ = tokio::fs::remove_file(&partial).await;
            Err(e.into())
        }
    }
}

pub async fn ls(client: &Client, target: &str, limit: Option<usize>) -> anyhow::Result<()> {
    let (bucket, prefix) = target.split_once('/').unwrap_or((target, ""));
    let mut after = String::new();
    let mut printed = 0usize;
    loop {
        let page = client.list_page(bucket, prefix, &after, 1000).await?;
        for o in &page.objects {
            if limit.is_some_and(|l| printed >= l) {
                return Ok(());
            }
            println!("{:>14} {}", o.size, o.key);
            printed += 1;
        }
        match page.objects.last() {
            Some(last) if page.truncated => after = last.key.clone(),
            _ => return Ok(()),
        }
    }
}

pub async fn stat(client: &Client, target: &str, json: bool) -> anyhow::Result<()> {
    let (bucket, key) = split_target(target)?;
    let s = client.stat(bucket, key).await?;
    if json {
        let v = serde_json::json!({
            "key": s.key, "size": s.size, "generation": s.generation, "mtime": s.mtime,
            "chunks": s.chunks, "degraded_chunks": s.degraded_chunks,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("key:        {bucket}/{}", s.key);
        println!("size:       {} bytes", s.size);
        println!("generation: {}", s.generation);
        println!("mtime:      {}", super::rfc3339(s.mtime));
        println!("chunks:     {} ({} degraded)", s.chunks, s.degraded_chunks);
    }
    Ok(())
}

pub async fn rm(client: &Client, target: &str) -> anyhow::Result<()> {
    let (bucket, key) = split_target(target)?;
    client.delete(bucket, key).await?;
    eprintln!("deleted {bucket}/{key}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets_and_ranges() {
        assert_eq!(split_target("b/k/x").unwrap(), ("b", "k/x"));
        assert!(split_target("nokey").is_err());
        assert_eq!(parse_range("5-10").unwrap(), 5..10);
        assert!(parse_range("10-5").is_err());
        assert!(parse_range("x").is_err());
    }

    #[test]
    fn times_print_as_rfc3339_dates() {
        assert_eq!(super::super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::super::rfc3339(1_796_292_000), "2026-12-03T10:00:00Z");
        // Beyond what a date can hold: the number itself.
        assert_eq!(super::super::rfc3339(u64::MAX), u64::MAX.to_string());
    }
}
