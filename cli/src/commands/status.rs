//! `cairn status`: the cluster's health, as a table or JSON.

use cairn_client::Client;

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub async fn show(client: &Client, json: bool) -> anyhow::Result<()> {
    let s = client.status().await?;
    // Each replica's own figures (resident memory), asked of each one directly.
    let own = client.replica_statuses(&s.replicas).await;
    let up = s.nodes.iter().filter(|n| n.state == "up").count();
    let out = s.nodes.iter().filter(|n| n.state == "out").count();
    let capacity: u64 = s.nodes.iter().map(|n| n.capacity_bytes).sum();
    let used: u64 = s.nodes.iter().map(|n| n.used_bytes).sum();
    if json {
        let v = serde_json::json!({
            "leader": s.leader_id,
            "term": s.term,
            "replicas": own.iter().map(|r| serde_json::json!({
                "id": r.id, "addr": r.addr, "voter": r.voter,
                "resident_bytes": r.status.as_ref().ok().map(|o| o.resident_bytes),
                "applied_index": r.status.as_ref().ok().map(|o| o.last_applied_index),
                "version": r.status.as_ref().ok().map(|o| o.version.clone()),
                "error": r.status.as_ref().err().map(|e| e.to_string()),
            })).collect::<Vec<_>>(),
            "nodes": s.nodes.iter().map(|n| serde_json::json!({
                "id": n.node_id, "addr": n.addr, "zone": n.zone, "state": n.state,
                "capacity_bytes": n.capacity_bytes, "used_bytes": n.used_bytes,
                "shards": n.shard_count, "placed_shards": n.placed_shards,
                "draining": n.draining, "quarantined": n.quarantined_count,
                "version": n.version,
                "last_heartbeat_ms": n.last_heartbeat_ms})).collect::<Vec<_>>(),
            "nodes_up": up,
            "nodes_out": out,
            "capacity_bytes": capacity,
            "used_bytes": used,
            "buckets": s.buckets,
            "inodes": s.inodes,
            "objects": s.objects,
            "chunks": s.chunks,
            "degraded_chunks": s.degraded_chunks,
            "pending_gc_shards": s.pending_gc_shards,
            "inline_bytes": s.inline_bytes,
            "inline_max_bytes": s.inline_max_bytes,
            "inline_budget_bytes": s.inline_budget_bytes,
            "repair_queue": s.repair_queue,
            "repaired_chunks": s.repaired_chunks,
            "repaired_bytes": s.repaired_bytes,
            "moved_shards": s.moved_shards,
            "repair_rate_bytes_per_sec": s.repair_rate_bytes_per_sec,
            "repair_eta_secs": s.repair_eta_secs,
            "repair_limit": s.repair_limit,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let replicas: Vec<String> = own
        .iter()
        .map(|r| {
            format!(
                "{}@{}{} ({})",
                r.id,
                r.addr,
                if r.voter { "" } else { " learner" },
                match &r.status {
                    Ok(o) => format!(
                        "{}, {}",
                        release(&o.version),
                        if o.resident_bytes > 0 {
                            format!("{} resident", human_bytes(o.resident_bytes))
                        } else {
                            "resident memory unknown".to_string()
                        }
                    ),
                    Err(_) => "unreachable".to_string(),
                }
            )
        })
        .collect();
    println!(
        "metadata: leader {} (term {}), replicas {}",
        s.leader_id,
        s.term,
        replicas.join(", ")
    );
    println!(
        "nodes:    {up}/{} up, {} used of {}",
        s.nodes.len(),
        human_bytes(used),
        human_bytes(capacity)
    );
    println!(
        "data:     {} buckets, {} inodes ({} files), {} chunks, {} degraded, {} shards awaiting gc",
        s.buckets, s.inodes, s.objects, s.chunks, s.degraded_chunks, s.pending_gc_shards
    );
    println!(
        "inline:   {} of {} budget (file bytes below {} kept in the metadata)",
        human_bytes(s.inline_bytes),
        human_bytes(s.inline_budget_bytes),
        human_bytes(s.inline_max_bytes)
    );
    println!(
        "repair:   {} chunks waiting{}, {} chunks ({}) rebuilt, {} shards moved since the leader started",
        s.repair_queue,
        if s.repair_queue > 0 && s.repair_rate_bytes_per_sec > 0 {
            format!(
                " (at {}/s, about {} s left; limited by {})",
                human_bytes(s.repair_rate_bytes_per_sec),
                s.repair_eta_secs,
                if s.repair_limit.is_empty() {
                    "nothing yet"
                } else {
                    &s.repair_limit
                }
            )
        } else {
            String::new()
        },
        s.repaired_chunks,
        human_bytes(s.repaired_bytes),
        s.moved_shards
    );
    println!();
    print_nodes(&s.nodes);
    Ok(())
}

/// A daemon's release as reported ("release ?" before releases reported it).
fn release(version: &str) -> String {
    if version.is_empty() {
        "release ?".to_string()
    } else {
        format!("release {version}")
    }
}

fn state_of(n: &cairn_proto::meta::NodeStatus) -> String {
    if n.draining {
        format!("{}+drain", n.state)
    } else {
        n.state.clone()
    }
}

fn print_nodes(nodes: &[cairn_proto::meta::NodeStatus]) {
    println!(
        "{:<6} {:<22} {:<10} {:<10} {:>11} {:>11} {:>8} {:>11} {:<8}",
        "NODE", "ADDRESS", "ZONE", "STATE", "USED", "CAPACITY", "SHARDS", "QUARANTINED", "RELEASE"
    );
    for n in nodes {
        println!(
            "{:<6} {:<22} {:<10} {:<10} {:>11} {:>11} {:>8} {:>11} {:<8}",
            n.node_id,
            n.addr,
            n.zone,
            state_of(n),
            human_bytes(n.used_bytes),
            human_bytes(n.capacity_bytes),
            n.placed_shards,
            n.quarantined_count,
            if n.version.is_empty() {
                "?"
            } else {
                &n.version
            }
        );
    }
}

/// `cairn rebalance [--dry-run]`.
pub async fn rebalance(client: &Client, dry_run: bool) -> anyhow::Result<()> {
    let plan = client.rebalance_plan().await?;
    println!(
        "{:<6} {:>7} {:>10} {:>10}",
        "NODE", "WEIGHT", "SHARDS", "AFTER"
    );
    for n in &plan.nodes {
        println!(
            "{:<6} {:>7.2} {:>10} {:>10}",
            n.node_id,
            f64::from(n.weight_pct) / 100.0,
            n.placed_shards,
            n.after_shards
        );
    }
    let verb = if dry_run { "would move" } else { "moves" };
    println!(
        "rebalancing {verb} {} shards (balanced: spread within {} weighted shards); it runs by itself whenever nothing needs repair, at the repair throttle",
        plan.moves, plan.tolerance
    );
    Ok(())
}

/// `cairn repair status`.
pub async fn repair_status(client: &Client, json: bool) -> anyhow::Result<()> {
    let s = client.status().await?;
    if json {
        let v = serde_json::json!({
            "degraded_chunks": s.degraded_chunks,
            "repair_queue": s.repair_queue,
            "repaired_chunks": s.repaired_chunks,
            "repaired_bytes": s.repaired_bytes,
            "moved_shards": s.moved_shards,
            "repair_bytes_per_sec": s.repair_bytes_per_sec,
            "repair_rate_bytes_per_sec": s.repair_rate_bytes_per_sec,
            "repair_eta_secs": s.repair_eta_secs,
            "repair_limit": s.repair_limit,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let queue_bytes_hint = if s.repair_queue == 0 {
        "nothing to do".to_string()
    } else {
        format!("{} chunks waiting", s.repair_queue)
    };
    println!("degraded chunks:  {}", s.degraded_chunks);
    println!("repair queue:     {queue_bytes_hint}");
    println!(
        "rebuilt:          {} chunks, {}",
        s.repaired_chunks,
        human_bytes(s.repaired_bytes)
    );
    println!("moved (rebalance): {} shards", s.moved_shards);
    if s.repair_bytes_per_sec == 0 {
        println!("throttle:         none (nodes yield to client I/O)");
    } else {
        println!(
            "throttle:         {}/s",
            human_bytes(s.repair_bytes_per_sec)
        );
    }
    if s.repair_queue > 0 && s.repair_rate_bytes_per_sec > 0 {
        println!(
            "rate:             {}/s, about {} s left",
            human_bytes(s.repair_rate_bytes_per_sec),
            s.repair_eta_secs
        );
    }
    if !s.repair_limit.is_empty() {
        println!("limited by:       {}", s.repair_limit);
    }
    Ok(())
}

/// `cairn node ls`.
pub async fn node_ls(client: &Client, json: bool) -> anyhow::Result<()> {
    let s = client.status().await?;
    if json {
        let nodes: Vec<_> = s
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "id": n.node_id, "addr": n.addr, "zone": n.zone, "state": n.state,
                    "draining": n.draining, "placed_shards": n.placed_shards,
                    "used_bytes": n.used_bytes, "capacity_bytes": n.capacity_bytes,
                    "quarantined": n.quarantined_count,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&nodes)?);
    } else {
        print_nodes(&s.nodes);
    }
    Ok(())
}

/// `cairn scrub`: one pass on every up node (or `only`), in parallel.
pub async fn scrub(client: &Client, only: Option<u64>) -> anyhow::Result<()> {
    let status = client.status().await?;
    let nodes: Vec<_> = status
        .nodes
        .iter()
        .filter(|n| only.is_none_or(|id| id == n.node_id))
        .collect();
    if nodes.is_empty() {
        anyhow::bail!(
            "no storage node {}",
            only.map(|n| n.to_string()).unwrap_or_default()
        );
    }
    let passes = nodes.iter().map(|n| async move {
        if n.state != "up" {
            return (n.node_id, Err(anyhow::anyhow!("node is {}", n.state)));
        }
        (
            n.node_id,
            client.scrub_node(&n.addr).await.map_err(Into::into),
        )
    });
    let results = futures::future::join_all(passes).await;
    println!(
        "{:<6} {:>10} {:>8} {:>10} {:>8} {:>11} {:>8} {:>11}",
        "NODE", "CHECKED", "CORRUPT", "UNREADABLE", "FAILED", "READ", "ORPHANS", "ORPHANED"
    );
    let (mut corrupt, mut unreadable, mut unchecked, mut failed) = (0, 0, 0, Vec::new());
    let (mut orphans, mut orphan_bytes, mut orphans_unchecked) = (0, 0, Vec::new());
    for (node, result) in results {
        match result {
            Ok(c) => {
                corrupt += c.corrupt;
                unreadable += c.unreadable;
                unchecked += c.failed;
                let (node_orphans, node_orphan_bytes) = match c.orphans {
                    Some((n, bytes)) => {
                        orphans += n;
                        orphan_bytes += bytes;
                        (n.to_string(), human_bytes(bytes))
                    }
                    None => {
                        orphans_unchecked.push(node.to_string());
                        ("?".into(), "?".into())
                    }
                };
                println!(
                    "{node:<6} {:>10} {:>8} {:>10} {:>8} {:>11} {:>8} {:>11}",
                    c.checked,
                    c.corrupt,
                    c.unreadable,
                    c.failed,
                    human_bytes(c.bytes),
                    node_orphans,
                    node_orphan_bytes,
                );
            }
            Err(e) => {
                println!("{node:<6} {:>10}", "failed");
                failed.push(format!("node {node}: {e}"));
            }
        }
    }
    println!(
        "{corrupt} corrupt shards found ({unreadable} unreadable), quarantined and queued for repair"
    );
    if unchecked > 0 {
        println!(
            "{unchecked} shards could not be checked (see the nodes' logs); the next pass retries them"
        );
    }
    if orphans > 0 {
        println!(
            "{orphans} orphan shards ({}): data of chunks the metadata does not know, from \
             writes never committed or, after a metadata restore, made after the backup \
             (those writes are lost); the nodes' orphan sweep deletes them after its grace \
             period",
            human_bytes(orphan_bytes)
        );
    }
    if !orphans_unchecked.is_empty() {
        println!(
            "orphans not checked on node(s) {}: the metadata service could not be asked",
            orphans_unchecked.join(", ")
        );
    }
    if !failed.is_empty() {
        anyhow::bail!("scrub failed on {}", failed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_sizes_with_binary_units() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(5 << 30), "5.0 GiB");
    }
}
