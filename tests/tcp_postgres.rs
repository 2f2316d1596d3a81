//! A real PostgreSQL behind a TCP listener: a throwaway cluster (initdb
//! into a temp dir, a free port, trust auth), then tokio-postgres queries
//! and transactions and a `pgbench -S` run, all through sluice.
//!
//! The cluster is `pgcluster`'s (shared with the load test): as root (CI
//! containers), PostgreSQL runs as the `postgres` user.

mod tcp_support;

use std::net::SocketAddr;

use pgcluster::{Cluster, StartError, failure};

use sluice::counters::{ListenerCounter, UpstreamCounter};
use tcp_support::{Tcp, missing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_through_sluice() {
    let cluster = match Cluster::start(50) {
        Ok(cluster) => cluster,
        Err(StartError::NotInstalled) => return missing("PostgreSQL (initdb, pg_ctl)"),
        Err(error) => panic!("{error}"),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], cluster.port));
    let tcp = Tcp::start(&[addr], "    strategy: least-connections\n", "");
    let port = tcp.addr().port();
    let (mut client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);

    let row = client
        .query_one("SELECT 40 + $1::int4", &[&2i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    for (id, name) in [(1, "one"), (2, "two"), (3, "three")] {
        tx.execute("INSERT INTO items VALUES ($1, $2)", &[&id, &name])
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("DELETE FROM items", &[]).await.unwrap();
    tx.rollback().await.unwrap();
    let rows = client
        .query("SELECT name FROM items ORDER BY id", &[])
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["one", "two", "three"]);
    let big: String = client
        .query_one("SELECT repeat('x', 1048576)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 1024 * 1024);
    drop(client);
    connection.await.unwrap().unwrap();

    let pgbench = |args: &[&str]| cluster.pgbench(port, args).expect("cannot run pgbench");
    let init = pgbench(&["-i", "-s", "1", "-q"]);
    assert!(init.status.success(), "{}", failure(&init, "pgbench -i"));
    let run = pgbench(&["-S", "-T", "3", "-c", "4", "-j", "2"]);
    let report = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{}", failure(&run, "pgbench -S"));
    let processed = report
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next()?.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no transaction count in:\n{report}"));
    assert!(processed > 0, "{report}");
    if let Some(failed) = report
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
    {
        assert!(failed.starts_with("0 "), "{report}");
    }
    eprintln!("pgbench -S through sluice:\n{report}");
    assert!(tcp.listener(ListenerCounter::ConnectionsTotal) >= 6);
    assert_eq!(tcp.upstream(0, UpstreamCounter::ConnectErrors), 0);
}
