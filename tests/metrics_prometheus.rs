//! A real Prometheus (started by the test on loopback) scrapes sluice
//! under traffic, and every query of the Grafana dashboard, with its
//! template variables filled in from Prometheus, returns data.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::metrics::{scrape, tool};
use common::processes::Supervisor;
use common::{Backend, client, upstreams_yaml};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/grafana/sluice-dashboard.json"
);

/// A Prometheus server in a temp dir; killed on drop. It scrapes the
/// target under two jobs, as two sluice instances with the same listener
/// names are seen, so a dashboard query that matches one-to-one on a
/// listener name alone fails.
struct Prometheus {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['{target}']\n  - job_name: sluice-again\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // A free port: bound, read back and released for Prometheus.
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            address,
            _dir: dir,
        }
    }

    /// Runs an instant query; returns the `data.result` array.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let url = format!(
            "http://{}/api/v1/query?query={}",
            self.address,
            percent_encode(expr)
        );
        let body = client()
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let json: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if json["status"] != "success" {
            return Err(body);
        }
        Ok(json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every `expr` of every panel (rows included).
fn expressions(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(expr)) = map.get("expr") {
                out.push(expr.clone());
            }
            map.values().for_each(|v| expressions(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// Metric names (`sluice_…`) in a query.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("sluice_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Waits for `condition` (async) for up to `limit`.
async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_sluice_and_every_dashboard_query_has_data() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let app = Backend::start("app").await;
    let dead = Backend::dead("dead");
    let yaml = format!(
        "workers: 2\nadmin: {{ listen: 127.0.0.1:0 }}\n{}listeners:
  - name: web
    listen: 127.0.0.1:0
    rules:
      - path: /api
        upstreams: [dead, app]
        strategy: round-robin
      - path: /*
        upstreams: [app]
  - name: db
    listen: 127.0.0.1:0
    mode: tcp
    upstreams: [app]
",
        upstreams_yaml(&[&app, &dead])
    );
    let sluice = Supervisor::run(&yaml);
    let admin = sluice.admin.unwrap();

    // Traffic of every kind until the test ends.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, web, db) = (Arc::clone(&stop), sluice.addr("web"), sluice.addr("db"));
        tokio::spawn(async move {
            let http = client();
            while !stop.load(Ordering::Relaxed) {
                for path in ["/", "/api", "/status/404", "/status/500", "/slow/5"] {
                    if let Ok(response) = http.get(format!("http://{web}{path}")).send().await {
                        let _ = response.bytes().await;
                    }
                }
                if let Ok(mut stream) = tokio::net::TcpStream::connect(db).await {
                    let _ = stream.write_all(b"GET /tcp HTTP/1.0\r\n\r\n").await;
                    let _ = stream.read_to_end(&mut Vec::new()).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let server = Prometheus::start(&prometheus, admin);
    let scraped = eventually(Duration::from_secs(60), || async {
        let samples = server
            .query("count_over_time(up{job=\"sluice\"}[1m]) >= 3 and up{job=\"sluice\"} == 1")
            .await;
        samples.is_ok_and(|r| !r.is_empty())
    })
    .await;
    assert!(
        scraped,
        "Prometheus did not scrape sluice 3 times within 60s"
    );

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let mut substitutions = vec![("$__rate_interval".to_owned(), "1m".to_owned())];
    let mut names = Vec::new();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap();
        let query = variable["query"]["query"].as_str().unwrap();
        // label_values(metric, label)
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: unexpected query {query}"));
        let (metric, label) = inner.split_once(',').unwrap();
        let (metric, label) = (metric.trim(), label.trim());
        names.extend(metric_names(metric));
        let result = server
            .query(&format!("group by ({label}) ({metric})"))
            .await
            .unwrap();
        let values: Vec<&str> = result
            .iter()
            .map(|r| r["metric"][label].as_str().unwrap())
            .collect();
        assert!(!values.is_empty(), "variable {name} has no values");
        substitutions.push((format!("${name}"), values.join("|")));
    }

    let mut exprs = Vec::new();
    expressions(&dashboard["panels"], &mut exprs);
    assert!(
        exprs.len() >= 15,
        "only {} queries in the dashboard",
        exprs.len()
    );
    let mut failures = Vec::new();
    for expr in &exprs {
        names.extend(metric_names(expr));
        let mut query = expr.clone();
        for (variable, value) in &substitutions {
            query = query.replace(variable.as_str(), value);
        }
        match server.query(&query).await {
            Ok(result) if !result.is_empty() => {}
            Ok(_) => failures.push(format!("no series: {query}")),
            Err(error) => failures.push(format!("error: {query}: {error}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert!(
        failures.is_empty(),
        "dashboard queries without data:\n{}",
        failures.join("\n")
    );

    let text = scrape(admin).await;
    for name in names {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| text.contains(&format!("# TYPE {base} histogram")))
            .unwrap_or(&name);
        assert!(
            text.contains(&format!("# TYPE {base} ")),
            "the dashboard uses {name}, which /metrics does not have"
        );
    }
}
