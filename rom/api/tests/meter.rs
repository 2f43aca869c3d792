//! A metered connection counts the calls it received, the ones it answered
//! with an exception, the ones still unanswered, and its bytes; and a
//! connection that ends with calls unanswered gives them back. A watched
//! connection's activity says whether it is idle: no byte either way and
//! no call waiting on either side.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::rc::Rc;

use capnp::capability::{Promise, Rc as CapRc};
use capnp_rpc::rpc_twoparty_capnp::Side;
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};
use ww_api::meter::{Activity, Meter};
use ww_api::metrics;
use ww_api::vat::{connect, connect_metered, Driver};

/// Refuses a report with a sample named "bad"; never answers one named
/// "hang"; takes the others.
struct Server;

impl metrics::Server for Server {
    async fn set(
        self: CapRc<Self>,
        params: metrics::SetParams,
        _: metrics::SetResults,
    ) -> Result<(), capnp::Error> {
        let samples = params.get()?.get_samples()?;
        let name = samples.get(0).get_name()?.to_str()?.to_owned();
        match name.as_str() {
            "bad" => Err(capnp::Error::failed("refused".into())),
            "hang" => Promise::<(), capnp::Error>::from_future(futures::future::pending()).await,
            _ => Ok(()),
        }
    }
}

async fn report(client: &metrics::Client, name: &str) -> Result<(), capnp::Error> {
    let mut request = client.set_request();
    request.get().init_samples(1).get(0).set_name(name);
    request.send().promise.await.map(|_| ())
}

type Reader = Compat<ReadHalf<DuplexStream>>;
type Writer = Compat<WriteHalf<DuplexStream>>;

/// The two ends of an in-memory connection: the server's reader and
/// writer, then the client's.
fn pipe() -> ((Reader, Writer), (Reader, Writer)) {
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_end);
    let (client_read, client_write) = tokio::io::split(client_end);
    (
        (server_read.compat(), server_write.compat_write()),
        (client_read.compat(), client_write.compat_write()),
    )
}

/// Runs `future` on a current-thread runtime, where capnp's `!Send`
/// objects live.
fn run_local<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

fn spawn(driver: Driver) {
    tokio::task::spawn_local(async move {
        let _ = driver.await;
    });
}

#[test]
fn counts_calls_exceptions_in_flight_and_bytes() {
    run_local(async {
        let meter = Rc::new(Meter::default());
        let ((server_read, server_write), (client_read, client_write)) = pipe();
        let server: metrics::Client = capnp_rpc::new_client(Server);
        let _served = connect_metered::<capnp::capability::Client, _, _, _>(
            server_read,
            server_write,
            Side::Server,
            Some(server.client),
            meter.clone(),
            None,
            spawn,
        );
        let connection = connect::<metrics::Client, _, _, _>(
            client_read,
            client_write,
            Side::Client,
            None,
            spawn,
        );
        let client = connection.client;

        for _ in 0..3 {
            report(&client, "good").await.unwrap();
        }
        assert!(report(&client, "bad").await.is_err());
        let reading = meter.reading();
        assert_eq!(reading.calls_received, 4, "{reading:?}");
        assert_eq!(reading.exceptions_sent, 1, "{reading:?}");
        assert_eq!(reading.calls_in_flight, 0, "{reading:?}");
        assert_eq!(reading.calls_sent, 0, "{reading:?}");
        assert!(reading.bytes_received > 0 && reading.bytes_sent > 0);

        let hanging = tokio::task::spawn_local({
            let client = client.clone();
            async move { report(&client, "hang").await }
        });
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while meter.reading().calls_in_flight != 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                meter.reading()
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(meter.reading().calls_received, 5);

        // The caller goes away with its call unanswered: the meter no
        // longer counts it in flight.
        drop(client);
        connection.disconnector.await.unwrap();
        assert!(hanging.await.unwrap().is_err());
        while meter.reading().calls_in_flight != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                meter.reading()
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
}

#[test]
fn a_connection_with_a_call_waiting_is_not_idle_on_either_side() {
    run_local(async {
        let ((server_read, server_write), (client_read, client_write)) = pipe();
        let server: metrics::Client = capnp_rpc::new_client(Server);
        let served = Rc::new(Activity::default());
        let _served = connect_metered::<capnp::capability::Client, _, _, _>(
            server_read,
            server_write,
            Side::Server,
            Some(server.client),
            Rc::new(Meter::default()),
            Some(served.clone()),
            spawn,
        );
        let calling = Rc::new(Activity::default());
        let connection = connect_metered::<metrics::Client, _, _, _>(
            client_read,
            client_write,
            Side::Client,
            None,
            Rc::new(Meter::default()),
            Some(calling.clone()),
            spawn,
        );
        let client = connection.client;
        report(&client, "good").await.unwrap();
        // Idle once answered: an hour from now, it has been idle an hour.
        let hour = std::time::Duration::from_secs(3600);
        let later = std::time::Instant::now() + hour;
        for activity in [&served, &calling] {
            assert!(activity.idle_for(later).unwrap() >= hour);
        }

        let _hanging = tokio::task::spawn_local({
            let client = client.clone();
            async move { report(&client, "hang").await }
        });
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while served.idle_for(later).is_some() || calling.idle_for(later).is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the call never waited"
            );
            tokio::task::yield_now().await;
        }
    });
}

/// Holds every report named "wait" until `release` fires.
struct Gate {
    release: futures::future::Shared<futures::channel::oneshot::Receiver<()>>,
}

impl metrics::Server for Gate {
    async fn set(
        self: CapRc<Self>,
        params: metrics::SetParams,
        _: metrics::SetResults,
    ) -> Result<(), capnp::Error> {
        let samples = params.get()?.get_samples()?;
        if samples.get(0).get_name()?.to_str()? == "wait" {
            let _ = self.release.clone().await;
        }
        Ok(())
    }
}

#[test]
fn past_the_cap_of_calls_in_flight_new_calls_are_refused_as_overloaded() {
    use futures::FutureExt;
    use ww_api::limits::CALLS_IN_FLIGHT_PER_CONNECTION_MAX as CAP;
    run_local(async {
        let meter = Rc::new(Meter::default());
        let ((server_read, server_write), (client_read, client_write)) = pipe();
        let (release, released) = futures::channel::oneshot::channel();
        let gate: metrics::Client = capnp_rpc::new_client(Gate {
            release: released.shared(),
        });
        let _served = connect_metered::<capnp::capability::Client, _, _, _>(
            server_read,
            server_write,
            Side::Server,
            Some(gate.client),
            meter.clone(),
            None,
            spawn,
        );
        let client = connect::<metrics::Client, _, _, _>(
            client_read,
            client_write,
            Side::Client,
            None,
            spawn,
        )
        .client;

        let waiting: Vec<_> = (0..CAP + 100)
            .map(|_| {
                let client = client.clone();
                tokio::task::spawn_local(async move { report(&client, "wait").await })
            })
            .collect();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while meter.reading().calls_in_flight < CAP as u64 || meter.reading().calls_refused < 100 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                meter.reading()
            );
            tokio::task::yield_now().await;
        }
        // The 100 past the cap were refused at once, with the limit's name.
        let reading = meter.reading();
        assert_eq!(reading.calls_in_flight, CAP as u64, "{reading:?}");
        assert_eq!(reading.calls_refused, 100, "{reading:?}");
        assert_eq!(reading.calls_received, CAP as u64 + 100, "{reading:?}");
        // Their errors reach the callers.
        while waiting.iter().filter(|call| call.is_finished()).count() < 100 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "refusals never arrived"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut refused = 0;
        let mut held = Vec::new();
        for call in waiting {
            if call.is_finished() {
                let err = call.await.unwrap().unwrap_err();
                assert!(
                    err.to_string()
                        .contains("CALLS_IN_FLIGHT_PER_CONNECTION_MAX"),
                    "{err}"
                );
                refused += 1;
            } else {
                held.push(call);
            }
        }
        assert_eq!((refused, held.len()), (100, CAP));

        // Answers make room: the held calls complete and new ones pass.
        release.send(()).unwrap();
        for call in held {
            call.await.unwrap().unwrap();
        }
        report(&client, "good").await.unwrap();
        let reading = meter.reading();
        assert_eq!(reading.calls_in_flight, 0, "{reading:?}");
    });
}
