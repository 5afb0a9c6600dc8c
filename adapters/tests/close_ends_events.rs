//! `Client::close()` ends every event stream, once the close's own events
//! are delivered, even while other handles of the client are alive; a
//! stream asked for after the close ends at once. (A logging task reading
//! `events()` until it ends must not outlive a closed client.)

#![cfg(feature = "tokio")]

mod support;

use std::time::Duration;

use futures::StreamExt;
use redial::Client;
use redial::core::Config;
use support::flaky::Flaky;

#[test]
fn close_ends_the_event_streams() {
    support::run_bounded(Duration::from_secs(10), async {
        let (client, mut from_start) = Client::builder(Flaky::default())
            .config(Config::recommended())
            .build_with_events()
            .expect("client");
        let later = client.events();
        let other_handle = client.clone();
        assert_eq!(client.call(7).await.expect("op"), 7);
        client.close().await;
        let mut seen = Vec::new();
        while let Some(e) = from_start.next().await {
            seen.push(e.to_string());
        }
        assert!(
            seen.first().is_some_and(|e| e.starts_with("connected")),
            "{seen:?}"
        );
        assert!(
            seen.last().is_some_and(|e| e.starts_with("closed")),
            "the close's own event comes last: {seen:?}"
        );
        let later: Vec<_> = later.collect().await;
        assert!(
            later
                .last()
                .is_some_and(|e| e.to_string().starts_with("closed")),
            "{later:?}"
        );
        assert_eq!(other_handle.events().count().await, 0);
        drop(other_handle);
    });
}
