//! The HTTP fetch grant (`ww::cap::http`) against the local site, called
//! through a real two-party capnp connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use capnp_rpc::rpc_twoparty_capnp::Side;
use crawl_site::{Config, Site, Unaccepting};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};
use ww::cap::http::HttpScope;
use ww_api::http;
use ww_api::ww_capnp::http_response;
use ww_api::ww_capnp::{HttpErrorKind as Kind, HttpMethod};

/// Runs `test` the way the host runs the grant: one thread, a LocalSet.
fn run<F: Future>(test: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, test)
}

/// An `Http` client at the far end of a capnp connection.
fn grant(scope: HttpScope) -> http::Client {
    let server = ww::cap::http::client(scope).unwrap();
    let (near, far) = tokio::io::duplex(1 << 20);
    let (near_read, near_write) = tokio::io::split(near);
    let (far_read, far_write) = tokio::io::split(far);
    let spawn = |driver| {
        tokio::task::spawn_local(driver);
    };
    let _server: ww_api::vat::Connection<capnp::capability::Client> = ww_api::vat::connect(
        near_read.compat(),
        near_write.compat_write(),
        Side::Server,
        Some(server.client),
        spawn,
    );
    let client: ww_api::vat::Connection<http::Client> = ww_api::vat::connect(
        far_read.compat(),
        far_write.compat_write(),
        Side::Client,
        None,
        spawn,
    );
    client.client
}

/// Everything in scope of `site`, with short timeouts.
fn scope(site: &Site) -> HttpScope {
    HttpScope {
        schemes: vec!["http".into()],
        prefixes: vec![site.url("/")],
        allow_private: true,
        connect_timeout_ms: 1_000,
        first_byte_timeout_ms: 1_000,
        total_timeout_ms: 3_000,
        body_bytes_max: 1 << 20,
        user_agent: "ww-test".into(),
        ..HttpScope::default()
    }
}

fn site(crawl_delay_ms: u32) -> Site {
    Site::start(Config {
        pages: 50,
        crawl_delay_ms,
        ..Config::default()
    })
    .unwrap()
    .1
}

#[derive(Debug)]
struct Page {
    status: u16,
    final_url: String,
    content_type: String,
    body: Vec<u8>,
    truncated: bool,
    redirects: u32,
    crawl_delay_ms: u32,
}

#[derive(Debug)]
struct Failure {
    kind: Kind,
    message: String,
    url: String,
    retry_after_ms: u32,
}

async fn fetch(http: &http::Client, url: &str) -> Result<Page, Failure> {
    fetch_with(http, url, &[]).await
}

async fn fetch_with(
    http: &http::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Page, Failure> {
    fetch_method(http, url, headers, HttpMethod::Get).await
}

async fn fetch_method(
    http: &http::Client,
    url: &str,
    headers: &[(&str, &str)],
    method: HttpMethod,
) -> Result<Page, Failure> {
    let mut request = http.fetch_request();
    {
        let mut r = request.get().init_request();
        r.set_url(url);
        r.set_method(method);
        let mut list = r.init_headers(headers.len() as u32);
        for (i, (name, value)) in headers.iter().enumerate() {
            list.reborrow().get(i as u32).set_name(*name);
            list.reborrow().get(i as u32).set_value(*value);
        }
    }
    let reply = request.send().promise.await.unwrap();
    let response = reply.get().unwrap().get_response().unwrap();
    match response.which().unwrap() {
        http_response::Ok(ok) => Ok(Page {
            status: ok.get_status(),
            final_url: ok.get_final_url().unwrap().to_string().unwrap(),
            content_type: ok.get_content_type().unwrap().to_string().unwrap(),
            body: ok.get_body().unwrap().to_vec(),
            truncated: ok.get_truncated(),
            redirects: ok.get_redirects(),
            crawl_delay_ms: ok.get_crawl_delay_ms(),
        }),
        http_response::Error(error) => Err(Failure {
            kind: error.get_kind().unwrap(),
            message: error.get_message().unwrap().to_string().unwrap(),
            url: error.get_url().unwrap().to_string().unwrap(),
            retry_after_ms: error.get_retry_after_ms(),
        }),
    }
}

fn kind(result: Result<Page, Failure>) -> Kind {
    match result {
        Ok(page) => panic!("expected a failure, got {page:?}"),
        Err(failure) => failure.kind,
    }
}

#[test]
fn fetches_a_page_and_normalises_its_url() {
    let site = site(0);
    run(async {
        let http = grant(scope(&site));
        let page = fetch(&http, &site.url("/page/0#top")).await.unwrap();
        assert_eq!(page.status, 200);
        assert_eq!(page.content_type, "text/html");
        assert_eq!(page.final_url, site.url("/page/0"));
        assert!(String::from_utf8_lossy(&page.body).contains("<h1>Page 0</h1>"));
        assert!(!page.truncated);
        let upper = format!("HTTP://{}/page/1", site.addr());
        assert_eq!(
            fetch(&http, &upper).await.unwrap().final_url,
            site.url("/page/1")
        );
        let missing = fetch(&http, &site.url("/status/404")).await.unwrap();
        assert_eq!(missing.status, 404);
        let head = fetch_method(&http, &site.url("/page/2"), &[], HttpMethod::Head).await;
        let head = head.unwrap();
        assert_eq!((head.status, head.body.len()), (200, 0));
        assert_eq!(site.requests_to("/page/2")[0].method, "HEAD");
        assert_eq!(
            site.requests_to("/robots.txt").len(),
            1,
            "robots.txt is cached"
        );
    });
}

#[test]
fn refuses_urls_out_of_scope_without_requesting_them() {
    let site = site(0);
    run(async {
        let other_domain = grant(HttpScope {
            prefixes: Vec::new(),
            domains: vec!["example.org".into()],
            ..scope(&site)
        });
        assert_eq!(
            kind(fetch(&other_domain, &site.url("/page/0")).await),
            Kind::OutOfScope
        );

        let https_only = grant(HttpScope {
            schemes: vec!["https".into()],
            ..scope(&site)
        });
        assert_eq!(
            kind(fetch(&https_only, &site.url("/page/0")).await),
            Kind::OutOfScope
        );

        let pages_only = grant(HttpScope {
            prefixes: vec![site.url("/page/"), site.url("/redirect/")],
            ..scope(&site)
        });
        assert_eq!(
            kind(fetch(&pages_only, &site.url("/doc.txt")).await),
            Kind::OutOfScope
        );
        fetch(&pages_only, &site.url("/page/3")).await.unwrap();

        let redirects_only = grant(HttpScope {
            prefixes: vec![site.url("/redirect/")],
            ..scope(&site)
        });
        let failure = fetch(&redirects_only, &site.url("/redirect/0"))
            .await
            .unwrap_err();
        assert_eq!(failure.kind, Kind::OutOfScope, "{failure:?}");
        assert_eq!(
            failure.url,
            site.url("/page/0"),
            "the hop that left the scope"
        );

        assert!(site.requests_to("/doc.txt").is_empty());
        assert!(
            site.requests_to("/page/0").is_empty(),
            "{:?}",
            site.requests()
        );
        assert_eq!(site.requests_to("/page/3").len(), 1);
        assert_eq!(site.requests_to("/redirect/0").len(), 1);
    });
}

#[test]
fn refuses_private_addresses_unless_allowed() {
    let site = site(0);
    let port = site.addr().port();
    run(async {
        let public_only = grant(HttpScope {
            prefixes: Vec::new(),
            domains: vec!["127.0.0.1".into(), "localhost".into()],
            allow_private: false,
            ..scope(&site)
        });
        let literal = fetch(&public_only, &site.url("/page/0")).await;
        assert_eq!(kind(literal), Kind::PrivateAddress);
        let named = fetch(&public_only, &format!("http://localhost:{port}/page/0")).await;
        let failure = named.unwrap_err();
        assert_eq!(failure.kind, Kind::PrivateAddress, "{failure:?}");
        let mapped = fetch(&public_only, &format!("http://[::ffff:127.0.0.1]:{port}/")).await;
        assert_eq!(kind(mapped), Kind::OutOfScope, "not in domains");
        assert!(site.requests().is_empty(), "{:?}", site.requests());

        let allowed = grant(HttpScope {
            prefixes: Vec::new(),
            domains: vec!["localhost".into()],
            ..scope(&site)
        });
        let page = fetch(&allowed, &format!("http://localhost:{port}/page/0")).await;
        assert_eq!(page.unwrap().status, 200);
        assert_eq!(site.requests_to("/page/0").len(), 1);
    });
}

#[test]
fn obeys_robots_disallow() {
    let site = site(0);
    run(async {
        let http = grant(scope(&site));
        let failure = fetch(&http, &site.url("/private/secret"))
            .await
            .unwrap_err();
        assert_eq!(failure.kind, Kind::DisallowedByRobots, "{failure:?}");
        fetch(&http, &site.url("/page/1")).await.unwrap();
        assert!(site.requests_to("/private/secret").is_empty());
        assert_eq!(site.requests_to("/robots.txt").len(), 1);

        let ignoring = grant(HttpScope {
            obey_robots: false,
            ..scope(&site)
        });
        fetch(&ignoring, &site.url("/private/secret"))
            .await
            .unwrap();
        assert_eq!(
            site.requests_to("/private/secret").len(),
            1,
            "the log sees requests"
        );
    });
}

#[test]
fn spaces_requests_by_crawl_delay() {
    const DELAY_MS: u32 = 400;
    let site = site(DELAY_MS);
    run(async {
        let http = grant(scope(&site));
        for page in 0..3 {
            let fetched = fetch(&http, &site.url(&format!("/page/{page}")))
                .await
                .unwrap();
            assert_eq!(fetched.crawl_delay_ms, DELAY_MS);
        }
        let times: Vec<Instant> = site
            .requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/page/"))
            .map(|r| r.at)
            .collect();
        assert_eq!(times.len(), 3);
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            // Arrival jitter on loopback is far below 20 ms.
            assert!(
                gap >= Duration::from_millis(u64::from(DELAY_MS) - 20),
                "gap {gap:?}"
            );
        }

        let impatient = grant(HttpScope {
            rate_wait_max_ms: 50,
            ..scope(&site)
        });
        fetch(&impatient, &site.url("/page/4")).await.unwrap();
        let failure = fetch(&impatient, &site.url("/page/5")).await.unwrap_err();
        assert_eq!(failure.kind, Kind::RateLimited, "{failure:?}");
        assert!(
            failure.retry_after_ms > 50 && failure.retry_after_ms <= DELAY_MS,
            "{failure:?}"
        );
        assert!(site.requests_to("/page/5").is_empty());
    });
}

#[test]
fn cuts_each_timeout_kind() {
    let site = site(0);
    let unaccepting = Unaccepting::start().unwrap();
    run(async {
        let no_connect = grant(HttpScope {
            prefixes: vec![format!("http://{}/", unaccepting.addr)],
            connect_timeout_ms: 300,
            first_byte_timeout_ms: 2_000,
            ..scope(&site)
        });
        let started = Instant::now();
        let failure = fetch(&no_connect, &format!("http://{}/page", unaccepting.addr))
            .await
            .unwrap_err();
        // robots.txt cannot be fetched either: unreachable disallows all.
        assert_eq!(failure.kind, Kind::DisallowedByRobots, "{failure:?}");
        let no_connect = grant(HttpScope {
            prefixes: vec![format!("http://{}/", unaccepting.addr)],
            connect_timeout_ms: 300,
            first_byte_timeout_ms: 2_000,
            obey_robots: false,
            ..scope(&site)
        });
        let failure = fetch(&no_connect, &format!("http://{}/page", unaccepting.addr))
            .await
            .unwrap_err();
        assert_eq!(failure.kind, Kind::TimeoutConnect, "{failure:?}");
        assert!(
            started.elapsed() < Duration::from_millis(1_500),
            "{:?}",
            started.elapsed()
        );

        let http = grant(HttpScope {
            first_byte_timeout_ms: 300,
            total_timeout_ms: 800,
            ..scope(&site)
        });
        let started = Instant::now();
        let failure = fetch(&http, &site.url("/slow-head/5000"))
            .await
            .unwrap_err();
        assert_eq!(failure.kind, Kind::TimeoutFirstByte, "{failure:?}");
        let failure = fetch(&http, &site.url("/slow-body/5000"))
            .await
            .unwrap_err();
        assert_eq!(failure.kind, Kind::TimeoutTotal, "{failure:?}");
        assert!(
            started.elapsed() < Duration::from_millis(2_000),
            "{:?}",
            started.elapsed()
        );
        fetch(&http, &site.url("/slow-body/100")).await.unwrap();
    });
}

#[test]
fn cuts_bodies_over_the_cap() {
    let site = site(0);
    run(async {
        let http = grant(HttpScope {
            body_bytes_max: 1_000,
            ..scope(&site)
        });
        let large = fetch(&http, &site.url("/large/100000")).await.unwrap();
        assert!(large.truncated);
        assert_eq!(large.body.len(), 1_000);
        let exact = fetch(&http, &site.url("/large/1000")).await.unwrap();
        assert!(!exact.truncated);
        assert_eq!(exact.body.len(), 1_000);
    });
}

#[test]
fn follows_redirects_within_limits() {
    let site = site(0);
    run(async {
        let http = grant(HttpScope {
            redirects_max: 5,
            ..scope(&site)
        });
        let page = fetch(&http, &site.url("/redirect/2")).await.unwrap();
        assert_eq!(page.final_url, site.url("/page/0"));
        assert_eq!(page.redirects, 3);
        assert_eq!(
            kind(fetch(&http, &site.url("/loop/a")).await),
            Kind::RedirectLoop
        );
        let failure = fetch(&http, &site.url("/redirect/10")).await.unwrap_err();
        assert_eq!(failure.kind, Kind::TooManyRedirects, "{failure:?}");
        let hops = site
            .requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/redirect/") && r.path != "/redirect/2")
            .filter(|r| r.path != "/redirect/1" && r.path != "/redirect/0")
            .count();
        assert_eq!(hops, 6, "/redirect/10 to /redirect/5, then stop");
    });
}

#[test]
fn a_hanging_url_is_cut_while_other_fetches_succeed() {
    let site = site(0);
    run(async {
        let http = grant(HttpScope {
            first_byte_timeout_ms: 1_500,
            total_timeout_ms: 2_000,
            ..scope(&site)
        });
        fetch(&http, &site.url("/page/0")).await.unwrap(); // robots.txt cached
        let started = Instant::now();
        let hang = {
            let http = http.clone();
            let url = site.url("/hang");
            tokio::task::spawn_local(async move {
                let result = fetch(&http, &url).await;
                (result.map(|_| ()).map_err(|f| f.kind), started.elapsed())
            })
        };
        let mut pages = Vec::new();
        for page in 1..21 {
            let http = http.clone();
            let url = site.url(&format!("/page/{page}"));
            pages.push(tokio::task::spawn_local(async move {
                let result = fetch(&http, &url).await;
                (result.map(|p| p.status), started.elapsed())
            }));
        }
        for page in pages {
            let (status, elapsed) = page.await.unwrap();
            assert_eq!(status.unwrap(), 200);
            assert!(elapsed < Duration::from_millis(1_000), "{elapsed:?}");
        }
        assert!(!hang.is_finished(), "the hanging fetch is still waiting");
        let (result, elapsed) = hang.await.unwrap();
        assert_eq!(result, Err(Kind::TimeoutFirstByte));
        assert!(elapsed >= Duration::from_millis(1_500) && elapsed < Duration::from_millis(2_500));
        assert_eq!(site.requests_to("/hang").len(), 1);
    });
}

#[test]
fn reports_server_rate_limits_and_holds_the_origin() {
    let site = site(0);
    run(async {
        let http = grant(HttpScope {
            rate_wait_max_ms: 100,
            ..scope(&site)
        });
        let failure = fetch(&http, &site.url("/status/429")).await.unwrap_err();
        assert_eq!(failure.kind, Kind::RateLimited, "{failure:?}");
        assert_eq!(failure.retry_after_ms, 2_000);
        let held = fetch(&http, &site.url("/page/0")).await.unwrap_err();
        assert_eq!(held.kind, Kind::RateLimited, "{held:?}");
        assert!(held.retry_after_ms > 1_000, "{held:?}");
        assert!(site.requests_to("/page/0").is_empty());
    });
}

#[test]
fn checks_content_types_and_requests() {
    let site = site(0);
    run(async {
        let html_only = grant(HttpScope {
            content_types: vec!["text/html".into()],
            ..scope(&site)
        });
        let failure = fetch(&html_only, &site.url("/data.bin")).await.unwrap_err();
        assert_eq!(
            failure.kind,
            Kind::ContentTypeRefused,
            "{}",
            failure.message
        );
        assert_eq!(
            kind(fetch(&html_only, &site.url("/doc.txt")).await),
            Kind::ContentTypeRefused
        );
        let text = grant(HttpScope {
            content_types: vec!["text/*".into()],
            ..scope(&site)
        });
        assert_eq!(
            fetch(&text, &site.url("/doc.txt"))
                .await
                .unwrap()
                .content_type,
            "text/plain"
        );

        let forbidden = fetch_with(&text, &site.url("/page/0"), &[("Host", "evil")]).await;
        assert_eq!(kind(forbidden), Kind::BadRequest);
        let accepted = fetch_with(&text, &site.url("/page/0"), &[("Accept", "text/html")]).await;
        assert_eq!(accepted.unwrap().status, 200);
        assert_eq!(kind(fetch(&text, "not a url").await), Kind::BadRequest);
        assert_eq!(
            kind(fetch(&text, "ftp://127.0.0.1/").await),
            Kind::OutOfScope
        );
    });
}

#[test]
fn scope_round_trips_through_capnp_and_serde() {
    let site = site(0);
    run(async {
        let given = HttpScope {
            domains: vec!["Example.ORG".into()],
            content_types: vec!["text/html".into()],
            ..scope(&site)
        };
        let http = grant(given.clone());
        let reply = http.scope_request().send().promise.await.unwrap();
        let back = HttpScope::read(reply.get().unwrap().get_scope().unwrap()).unwrap();
        assert_eq!(back, given.clone().validated().unwrap());
        assert_eq!(back.domains, vec!["example.org".to_string()]);
        let json = serde_json_round_trip(&back);
        assert_eq!(json, back);
        assert!(ww::cap::http::client(HttpScope {
            total_timeout_ms: 0,
            ..given
        })
        .is_err());
    });
}

fn serde_json_round_trip(scope: &HttpScope) -> HttpScope {
    let text = serde_json::to_string(scope).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn measures_fetch_throughput() {
    const PAGES: u32 = 200;
    let site = Site::start(Config {
        pages: PAGES,
        ..Config::default()
    })
    .unwrap()
    .1;
    run(async {
        let http = grant(scope(&site));
        fetch(&http, &site.url("/page/0")).await.unwrap();
        let started = Instant::now();
        for page in 0..PAGES {
            fetch(&http, &site.url(&format!("/page/{page}")))
                .await
                .unwrap();
        }
        let sequential = f64::from(PAGES) / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let tasks: Vec<_> = (0..PAGES)
            .map(|page| {
                let http = http.clone();
                let url = site.url(&format!("/page/{page}"));
                tokio::task::spawn_local(async move { fetch(&http, &url).await.map(|p| p.status) })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), 200);
        }
        let concurrent = f64::from(PAGES) / started.elapsed().as_secs_f64();
        eprintln!("fetches/s: sequential {sequential:.0}, {PAGES} concurrent {concurrent:.0}");
        assert_eq!(site.requests_to("/robots.txt").len(), 1);
    });
}
