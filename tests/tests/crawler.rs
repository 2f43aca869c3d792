//! The crawler end to end on real hosts: 4 hosts (3 Raft replicas, a client
//! host), the local site on 127.0.0.1, `crawler.wasm` seeding a crawl and
//! running 3 workers spread over the hosts, then exporting the results.
//!
//! Checked: every page of the site's link graph appears exactly once in
//! the export, with the awkward cases recorded as what they are (a
//! redirect's final URL, a 404, a text file); robots.txt-disallowed and
//! `rel=nofollow` URLs were never requested; the hanging URL ended dead;
//! `workers 0` stops the fleet; and a worker's tokens allow nothing beyond
//! its crawl and its results topic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/native.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crawl_site::{Config, Site};
use serde_json::Value;
use support::raft_as_worker;
use ww_tests::crawler_rom::{self, status_of};
use ww_tests::metrics;
use ww_tests::raft_rom::{self, json_of};
use ww_tests::{rom, wait_until, Output};

const TIMEOUT: Duration = Duration::from_secs(60);
/// The whole crawl, from seed to done.
const CRAWL_TIMEOUT: Duration = Duration::from_secs(240);
const PAGES: u32 = 150;
/// The exit code of a refused operation.
const NOT_PERMITTED: i32 = 77;

fn crawler(addr: &str, args: &[&str]) -> Output {
    crawler_rom::run(addr, args)
}

/// `crawler.wasm ARGS` with `stdin` as its standard input.
fn crawler_with_stdin(addr: &str, args: &[&str], stdin: &std::path::Path) -> Output {
    let rom = rom("crawler");
    let child = std::process::Command::new(ww_tests::ww_bin())
        .env_remove("WW_PEERS")
        .args(["run", "--peer", addr, rom.to_str().unwrap()])
        .args(args)
        .stdin(std::fs::File::open(stdin).unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let output = wait_for_exit(child, Duration::from_secs(120));
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The child's output once it exits; killed (and the test failed) after
/// `timeout`.
fn wait_for_exit(mut child: std::process::Child, timeout: Duration) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("`ww run` still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn status(addr: &str) -> Value {
    status_of(addr, "crawl")
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&hex[index..index + 2], 16).unwrap())
        .collect()
}

/// Runs `raft.wasm ARGS` as a process holding only a view of the replicas
/// and `token`, as a worker does; returns its exit code.
fn as_worker(addr: &str, token: &[u8], args: &[&str]) -> i32 {
    raft_as_worker(addr, &rom("raft"), token, &[args], TIMEOUT)[0]
}

#[test]
fn crawls_the_local_site_once_politely_and_within_its_grants() {
    // Fail early and clearly if an artifact is missing.
    for name in ["raft", "crawler"] {
        assert!(
            rom(name).exists(),
            "{} is missing: make build",
            rom(name).display()
        );
    }
    let (_, site) = Site::start(Config {
        pages: PAGES,
        seed: 7,
        ..Config::default()
    })
    .unwrap();
    let cluster = raft_rom::deployed_with(4, Duration::from_secs(120), &["--http", "127.0.0.1:0"]);
    let client = cluster.hosts[0].addr.clone();

    for command in ["--help", "seed", "workers", "status", "results", "stop"] {
        let out = crawler(&client, &[command, "--help"]);
        out.assert_ok();
        assert!(
            out.stdout.starts_with("usage: ww run crawler.wasm"),
            "{out:#?}"
        );
    }
    let out = crawler(&client, &["results", "--jsonl", "out.jsonl"]);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("--jsonl -"), "{out:#?}");

    let seed = site.url("/page/0");
    // Slower than the workers' lease (3 s): kept only by extending it.
    let slow = site.url("/slow-head/3500");
    let out = crawler(
        &client,
        &[
            "seed",
            &seed,
            &slow,
            "--allow-private",
            "--max-depth",
            "1000",
            "--max-pages",
            "2000",
            "--delay-ms",
            "0",
            "--concurrency-per-origin",
            "8",
            "--max-attempts",
            "2",
        ],
    );
    out.assert_ok();
    assert!(out.stdout.contains("enqueued"), "{out:#?}");

    // `results --follow` from before the first fetch: it prints records as
    // they come and returns by itself once the crawl is done.
    let follow = {
        let rom_path = rom("crawler");
        let child = std::process::Command::new(ww_tests::ww_bin())
            .env_remove("WW_PEERS")
            .args(["run", "--peer", &client, rom_path.to_str().unwrap()])
            .args(["results", "--jsonl", "-", "--follow"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (done, exited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait_with_output());
        });
        exited
    };

    let started = Instant::now();
    let out = crawler(
        &client,
        &[
            "workers",
            "3",
            "--fetch-timeout-ms",
            "4000",
            "--lease-ms",
            "3000",
            "--batch",
            "8",
        ],
    );
    out.assert_ok();
    let hosts: BTreeSet<String> = out
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| line["host"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(hosts.len(), 3, "3 workers on 3 hosts: {out:#?}");

    // `status --watch` returns when the crawl is done: one JSON sample per
    // interval on stdout, plain progress lines on stderr (not a terminal).
    let rom_path = rom("crawler");
    let watch = ww_tests::ww_with_timeout(
        &[
            "run",
            "--peer",
            &client,
            rom_path.to_str().unwrap(),
            "status",
            "--watch",
            "--json",
            "--interval-ms",
            "500",
        ],
        CRAWL_TIMEOUT,
    );
    watch.assert_ok();
    let samples: Vec<Value> = watch
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    let last = samples.last().cloned().unwrap();
    assert!(last["done"].as_bool().unwrap(), "{watch:#?}");
    assert!(
        samples
            .iter()
            .all(|sample| sample["pages_per_s"].is_number()),
        "{watch:#?}"
    );
    assert!(
        watch.stderr.contains("pages/s") && !watch.stderr.contains('\r'),
        "{watch:#?}"
    );
    let ended = |sample: &Value| {
        ["fetched", "failed", "dead"]
            .iter()
            .map(|name| sample["counters"][name].as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(
        samples
            .windows(2)
            .all(|pair| ended(&pair[0]) <= ended(&pair[1])),
        "progress never goes back: {watch:#?}"
    );
    let elapsed = started.elapsed();
    let counters = &last["counters"];
    let fetched = counters["fetched"].as_u64().unwrap();
    eprintln!(
        "crawl done in {elapsed:?}: {fetched} fetched ({:.1} pages/s), status {last}",
        fetched as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(last["workers"].as_array().unwrap().len(), 3, "{last}");
    // Failures by kind, from the frontier's records.
    let once = status(&client);
    let errors = &once["errors"];
    for kind in ["robots", "timeout", "500 after retries", "404"] {
        assert!(errors[kind].as_u64() >= Some(1), "{kind}: {errors}");
    }
    // Per worker, from the frontier: their fetches add up to the crawl's.
    let per_worker: u64 = last["worker_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["counts"]["fetched"].as_u64().unwrap())
        .sum();
    assert_eq!(per_worker, counters["fetched"].as_u64().unwrap(), "{last}");
    // Fetches longer than the lease (the slow page, the hanging one) kept
    // their URLs: workers extend their leases while they fetch.
    assert_eq!(counters["expired"], 0, "a lease expired: {last}");
    let seen = counters["seen"].as_u64().unwrap();
    assert_eq!(
        seen,
        fetched + counters["failed"].as_u64().unwrap() + counters["dead"].as_u64().unwrap(),
        "every accepted URL ended: {last}"
    );

    let out = crawler(&client, &["results", "--jsonl", "-"]);
    out.assert_ok();
    let records: Vec<Value> = out
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let times: Vec<u64> = records
        .iter()
        .filter_map(|record| record["fetched_at"].as_u64())
        .collect();
    // Wall-clock milliseconds since the epoch: within a day of this test's.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        times.iter().all(|&at| at.abs_diff(now_ms) < 86_400_000),
        "fetched_at is not wall-clock time: {:?}",
        &times[..times.len().min(3)]
    );
    let span_ms = times.iter().max().unwrap() - times.iter().min().unwrap();
    eprintln!(
        "{} records fetched over {span_ms} ms ({:.1} records/s, first to last fetch)",
        records.len(),
        records.len() as f64 * 1000.0 / span_ms.max(1) as f64
    );
    let followed = follow
        .recv_timeout(CRAWL_TIMEOUT)
        .expect("`results --follow` returned once the crawl was done")
        .unwrap();
    assert!(followed.status.success(), "{followed:?}");
    // Compared by record id and URL: a failure then prints a short diff.
    let ids = |text: &str| -> Vec<(u64, String)> {
        text.lines()
            .map(|line| {
                let record: Value = serde_json::from_str(line).unwrap();
                (
                    record["id"].as_u64().unwrap(),
                    record["url"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let (followed_ids, exported_ids) = (
        ids(&String::from_utf8_lossy(&followed.stdout)),
        ids(&out.stdout),
    );
    let only_followed: Vec<_> = followed_ids
        .iter()
        .filter(|r| !exported_ids.contains(r))
        .collect();
    let only_exported: Vec<_> = exported_ids
        .iter()
        .filter(|r| !followed_ids.contains(r))
        .collect();
    assert!(
        followed_ids == exported_ids,
        "--follow printed {} records, the export after the crawl {}; only followed: {only_followed:?}; only exported: {only_exported:?}; follow's stderr: {}",
        followed_ids.len(),
        exported_ids.len(),
        String::from_utf8_lossy(&followed.stderr)
    );
    let mut by_url: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for record in &records {
        by_url
            .entry(record["url"].as_str().unwrap().to_owned())
            .or_default()
            .push(record);
    }
    assert!(
        by_url.values().all(|list| list.len() == 1),
        "each URL once in the export"
    );
    for page in 0..PAGES {
        let url = site.url(&format!("/page/{page}"));
        let record = by_url
            .get(&url)
            .unwrap_or_else(|| panic!("{url} missing from the export"))[0];
        assert_eq!(record["status"], 200, "{record}");
        assert_eq!(record["content_type"], "text/html", "{record}");
        assert!(record["digest"].as_str().unwrap().starts_with("blake3:"));
        assert!(record["body"]
            .as_str()
            .unwrap()
            .contains(&format!("Page {page}")));
    }
    assert_eq!(by_url[&slow][0]["status"], 200, "{slow} missing");
    assert_eq!(
        site.requests_to("/slow-head/3500").len(),
        1,
        "the slow page was fetched twice: its lease expired mid-fetch"
    );
    // Parents link records: page 0 (a seed) has none, and links to the
    // redirect, whose record names page 0's.
    let page0 = by_url[&site.url("/page/0")][0];
    assert!(page0["parent"].is_null(), "{page0}");
    let redirect = by_url[&site.url("/redirect/2")][0];
    assert_eq!(redirect["parent"], page0["id"], "{redirect}");
    assert_eq!(redirect["final_url"], site.url("/page/0"), "{redirect}");
    assert_eq!(by_url[&site.url("/status/404")][0]["status"], 404);
    assert_eq!(
        by_url[&site.url("/doc.txt")][0]["content_type"],
        "text/plain"
    );
    // Each worker reports its counts to its host's /metrics: the pages
    // there add up to the results, and the hanging URL shows as an error.
    let scrapes = || -> Vec<Vec<metrics::Sample>> {
        cluster
            .hosts
            .iter()
            .map(|host| metrics::scrape(host.http.as_deref().expect("--http address")))
            .collect()
    };
    let reported = wait_until("the workers' page counts in /metrics", TIMEOUT, || {
        let scrapes = scrapes();
        let pages: f64 = scrapes
            .iter()
            .map(|samples| metrics::sum(samples, "crawl_pages_fetched_total", &[]))
            .sum();
        (pages >= records.len() as f64).then_some(scrapes)
    });
    let workers_reporting: BTreeSet<&str> = reported
        .iter()
        .flatten()
        .filter(|sample| sample.metric == "crawl_pages_fetched_total")
        .filter_map(|sample| sample.labels.get("worker"))
        .collect();
    assert_eq!(workers_reporting.len(), 3, "{workers_reporting:?}");
    let errors: Vec<String> = reported
        .iter()
        .flatten()
        .filter(|sample| sample.metric == "crawl_fetch_errors_total")
        .map(|sample| format!("{:?}={}", sample.labels.get("kind"), metrics::value(sample)))
        .collect();
    assert!(!errors.is_empty(), "no fetch error reported");
    eprintln!("fetch errors reported: {errors:?}");
    // The status page of a worker's host shows the crawl's progress there.
    let worker_host = reported
        .iter()
        .position(|samples| metrics::sum(samples, "crawl_pages_fetched_total", &[]) > 0.0)
        .expect("a host whose workers fetched");
    let browser = ww_tests::web::Browser::start();
    browser.open(&format!(
        "http://{}/",
        cluster.hosts[worker_host].http.as_deref().unwrap()
    ));
    wait_until("the crawl's pages on the status page", TIMEOUT, || {
        let pages = browser.eval(
            "const e = document.querySelector('tr.crawl[data-crawl=\"crawl\"]'); return e ? Number(e.dataset.pages) : 0;",
        );
        (pages.as_f64() > Some(0.0)).then_some(())
    });
    drop(browser);

    for never in ["/private/secret", "/hang", "/status/500", "/loop/a"] {
        // Disallowed, or failed: no result record.
        assert!(!by_url.contains_key(&site.url(never)), "{never} recorded");
    }
    assert!(
        by_url.keys().all(|url| !url.contains("/nofollow/")),
        "a nofollow link was followed"
    );

    // The same results as WARC/1.1, read back by an independent reader.
    // Raw bytes: a WARC's lines end in CRLF, which line-based capture loses.
    let rom_path = rom("crawler");
    let child = std::process::Command::new(ww_tests::ww_bin())
        .env_remove("WW_PEERS")
        .args(["run", "--peer", &client, rom_path.to_str().unwrap()])
        .args(["results", "--warc", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read while it runs: the export is larger than a pipe's buffer.
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let warc = exited
        .recv_timeout(Duration::from_secs(120))
        .expect("`results --warc -` ended within 120 s")
        .unwrap();
    assert!(warc.status.success(), "{warc:?}");
    check_warc(&warc.stdout, &by_url);
    assert!(
        site.requests_to("/private/").is_empty(),
        "robots.txt disallows /private/, yet it was requested"
    );
    assert!(
        site.requests()
            .iter()
            .all(|r| !r.path.starts_with("/nofollow/")),
        "a rel=nofollow URL was requested"
    );
    assert_eq!(
        site.requests()
            .iter()
            .filter(|r| r.path == "/page/1")
            .count(),
        1,
        "page 1 fetched once"
    );
    // The export is repeatable: nothing was consumed.
    let again = crawler(&client, &["results", "--jsonl", "-"]);
    again.assert_ok();
    assert_eq!(again.stdout, out.stdout);

    // A worker's tokens: the crawl token cannot write the results topic or
    // any other topic, nor the KV; the results token can only append.
    let out = crawler(&client, &["worker-tokens", "--json"]);
    out.assert_ok();
    let tokens = json_of(&out);
    let crawl_token = unhex(tokens["crawl"].as_str().unwrap());
    let results_token = unhex(tokens["results"].as_str().unwrap());
    for args in [
        &["enqueue", "crawl-results", "forged"][..],
        &["enqueue", "other", "x"],
        &["put", "k", "v"],
        &["purge", "crawl-results"],
        &["grant", "--verbs", "all"],
    ] {
        assert_eq!(
            as_worker(&client, &crawl_token, args),
            NOT_PERMITTED,
            "{args:?}"
        );
    }
    for args in [
        &["lease", "crawl-results"][..],
        &["purge", "crawl-results"],
        &["peek", "crawl-results"],
        &["enqueue", "crawl", "x"],
    ] {
        assert_eq!(
            as_worker(&client, &results_token, args),
            NOT_PERMITTED,
            "{args:?}"
        );
    }
    let out = crawler(&client, &["status", "--json"]);
    out.assert_ok();
    // Records of URLs fetched twice stay in the topic; the export skips them.
    assert!(json_of(&out)["results"].as_u64().unwrap() >= records.len() as u64);

    let out = crawler(&client, &["workers", "0"]);
    out.assert_ok();
    wait_until("the workers to stop", TIMEOUT, || {
        status(&client)["workers"]
            .as_array()?
            .is_empty()
            .then_some(())
    });

    // A custom worker ROM (title and meta description), passed on stdin,
    // on a second crawl of the same site.
    let title_worker = rom("title-worker");
    assert!(
        title_worker.exists(),
        "{} is missing: make build",
        title_worker.display()
    );
    let out = crawler(
        &client,
        &[
            "--crawl",
            "titles",
            "seed",
            &seed,
            "--allow-private",
            "--max-depth",
            "1",
            "--delay-ms",
            "0",
            "--max-attempts",
            "1",
        ],
    );
    out.assert_ok();
    let out = crawler_with_stdin(
        &client,
        &[
            "--crawl",
            "titles",
            "workers",
            "1",
            "--rom",
            "-",
            "--fetch-timeout-ms",
            "2000",
        ],
        &title_worker,
    );
    out.assert_ok();
    wait_until("the titles crawl to finish", CRAWL_TIMEOUT, || {
        status_of(&client, "titles")["done"]
            .as_bool()?
            .then_some(())
    });
    let out = crawler(&client, &["--crawl", "titles", "results", "--jsonl", "-"]);
    out.assert_ok();
    let titled: Vec<Value> = out
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["url"].as_str().unwrap().contains("/page/"))
        .collect();
    assert!(titled.len() > 1, "{out:#?}");
    for record in &titled {
        let page = record["url"].as_str().unwrap().rsplit('/').next().unwrap();
        assert_eq!(
            record["fields"]["title"],
            format!("Page {page}"),
            "{record}"
        );
    }
    let out = crawler(&client, &["--crawl", "titles", "workers", "0"]);
    out.assert_ok();

    // A hostile worker ROM (misbehave.wasm, which sees a worker's grants)
    // is refused the executor, the root, the view, pubsub, dial and writes
    // through the replicas' view; nothing changes on its host.
    let host0 = &cluster.hosts[0];
    let process_count = || {
        ww_tests::raft_rom::json_of(&ww_tests::ww(&["ps", "--json", "--peer", &client]))
            ["processes"]
            .as_array()
            .unwrap()
            .len()
    };
    let processes_before = process_count();
    let out = crawler_with_stdin(
        &client,
        &[
            "--crawl",
            "titles",
            "workers",
            "1",
            "--rom",
            "-",
            "--host",
            &host0.peer_id,
        ],
        &rom("misbehave"),
    );
    out.assert_ok();
    wait_until("the hostile worker to try everything", TIMEOUT, || {
        host0.log().contains("everything refused").then_some(())
    });
    let log = host0.log();
    for refused in [
        "refused executor.spawn:",
        "refused executor.kill:",
        "refused root:",
        "refused dial:",
        "refused replicas view set:",
    ] {
        assert!(
            log.contains(refused),
            "{refused} missing from the host's log"
        );
    }
    let processes_after = process_count();
    assert_eq!(
        processes_after,
        processes_before + 1,
        "only the worker itself was added"
    );
    crawler(&client, &["--crawl", "titles", "workers", "0"]).assert_ok();
}

/// Reads `warc` with `rust_warc` and checks it holds a `warcinfo` record,
/// then one `request` and one `response` record per exported URL, linked to
/// each other, dated, and with a payload digest that matches the payload.
fn check_warc(warc: &[u8], by_url: &BTreeMap<String, Vec<&Value>>) {
    let records: Vec<rust_warc::WarcRecord> =
        rust_warc::WarcReader::new(std::io::BufReader::new(warc))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|err| panic!("unreadable WARC: {err:?}"));
    let field = |record: &rust_warc::WarcRecord, name: &str| -> String {
        record
            .header
            .get(&name.into())
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {:?}", record.header))
    };
    assert_eq!(field(&records[0], "WARC-Type"), "warcinfo");
    let mut requests = BTreeMap::new();
    let mut responses = BTreeMap::new();
    for record in &records[1..] {
        assert_eq!(record.version, "WARC/1.1");
        let date = field(record, "WARC-Date");
        assert!(
            date.len() == 20 && date.as_bytes()[10] == b'T' && date.ends_with('Z'),
            "{date}"
        );
        // The fetch's wall-clock time, not a monotonic count from 1970.
        assert!(date.as_str() >= "2025-01-01", "{date}");
        let uri = field(record, "WARC-Target-URI");
        let id = field(record, "WARC-Record-ID");
        match field(record, "WARC-Type").as_str() {
            "request" => {
                assert!(record.content.starts_with(b"GET /"), "{uri}");
                requests.insert(id, (uri, field(record, "WARC-Concurrent-To")));
            }
            "response" => {
                let block = &record.content;
                let split = block
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap_or_else(|| panic!("no HTTP head in the response of {uri}"));
                let payload = &block[split + 4..];
                assert_eq!(
                    field(record, "WARC-Payload-Digest"),
                    format!("blake3:{}", blake3::hash(payload).to_hex()),
                    "{uri}"
                );
                let exported = by_url
                    .get(&uri)
                    .unwrap_or_else(|| panic!("{uri} is in the WARC, not in the JSON export"))[0];
                let status_line = format!("HTTP/1.1 {} ", exported["status"]);
                assert!(block.starts_with(status_line.as_bytes()), "{uri}");
                responses.insert(id, (uri, field(record, "WARC-Concurrent-To")));
            }
            other => panic!("unexpected record type {other}"),
        }
    }
    assert_eq!(
        responses.len(),
        by_url.len(),
        "one response per exported URL"
    );
    assert_eq!(requests.len(), by_url.len(), "one request per exported URL");
    for (id, (uri, request_id)) in &responses {
        let (request_uri, back) = &requests[request_id];
        assert_eq!(request_uri, uri);
        assert_eq!(back, id, "the request of {uri} points back at its response");
    }
}
