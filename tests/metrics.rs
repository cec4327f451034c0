//! Feature `metrics`: a running node's counters and gauges, scraped from
//! metrics-exporter-prometheus's HTTP endpoint with an HTTP client, are
//! the ones `stats()` and the node's state give, labelled by node.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::messages::Ping;
use socketscience::{Failover, LocalChat, Node, Stats};

/// The samples of a Prometheus text page: `name{labels}` to value.
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("the exporter answers")
        .error_for_status()
        .expect("the exporter answers 200")
        .text()
        .await
        .expect("a text page")
}

/// The counters of `stats` that the page does not show with their value.
fn mismatches(page: &HashMap<String, f64>, node: &str, stats: &Stats) -> Vec<String> {
    stats
        .iter()
        .filter_map(|(name, value, _)| {
            let key = format!("socketscience_{name}{{node=\"{node}\"}}");
            match page.get(&key) {
                Some(&v) if v == value as f64 => None,
                found => Some(format!("{key}: {found:?}, stats() says {value}")),
            }
        })
        .collect()
}

fn ping(n: u32) -> Ping {
    Ping {
        location: format!("Henders/EC2 #{n}"),
        timestamp: f64::from(n),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_endpoint_shows_every_counter_of_stats_by_node() {
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .expect("the exporter starts");
    let url = format!("http://{addr}/metrics");

    let chat = LocalChat::new();
    let start = |name: &'static str, account: &'static str| {
        Node::builder(name)
            .transport(chat.join(account))
            .default_node(false)
            .heartbeat(Duration::from_secs(3600))
            .failover(Failover::new())
            .start()
    };
    let henders = start("Henders/EC2", "smokey").await.unwrap();
    let teward = start("teward/vps", "smokey").await.unwrap();
    // Traffic of several sorts: envelopes both ways, and an untrusted
    // account that both refuse.
    let intruder = Node::builder("intruder")
        .transport(chat.join("mallory"))
        .default_node(false)
        .start()
        .await
        .unwrap();
    for n in 0..5 {
        henders.send(ping(n)).await.unwrap();
        teward.send(ping(n)).await.unwrap();
    }
    intruder.send(ping(99)).await.unwrap();
    for node in [&henders, &teward] {
        common::wait_for(node, "every envelope and the intruder's", |s| {
            s.envelopes >= 10 && s.untrusted >= 1
        })
        .await;
    }
    assert!(henders.stats().sent == 5 && henders.stats().untrusted >= 1);

    // The running nodes: every counter, each with its node's value (the
    // exporter is published to once a second; a guard of 30 s).
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = samples(&scrape(&client, &url).await);
        let wrong: Vec<String> = [&henders, &teward]
            .iter()
            .flat_map(|node| mismatches(&page, node.name(), &node.stats()))
            .collect();
        let gauges_right = [&henders, &teward].iter().all(|node| {
            let gauge = |name: &str| page.get(&format!("{name}{{node=\"{}\"}}", node.name()));
            gauge("socketscience_peers") == Some(&(node.peers().len() as f64))
                && gauge("socketscience_queue_depth") == Some(&0.0)
                && gauge("socketscience_held") == Some(&0.0)
                && gauge("socketscience_active").is_some()
                && gauge("socketscience_term").is_some()
        });
        if wrong.is_empty() && gauges_right {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the endpoint does not show what the nodes say: {wrong:#?}\n{page:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Stopped: the last values are published as shutdown returns.
    henders.send(ping(5)).await.unwrap();
    henders.shutdown().await.unwrap();
    let page = samples(&scrape(&client, &url).await);
    let stats = henders.stats();
    assert_eq!(stats.sent, 6);
    assert_eq!(
        mismatches(&page, "Henders/EC2", &stats),
        Vec::<String>::new()
    );
    let text = scrape(&client, &url).await;
    assert!(
        text.contains("# HELP socketscience_sent Envelopes accepted"),
        "each counter's doc is its help:\n{text}"
    );
    teward.shutdown().await.unwrap();
    intruder.shutdown().await.unwrap();
}
