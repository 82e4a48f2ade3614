//! Triggers wake the fetch loop: the push webhook (verified signatures, 401 for bad
//! ones, 413 for oversized bodies) and the file watch on a local repository.

mod common;

use std::time::Duration;

use common::webhook::{github_signature, post_hook};
use rollwave::source::trigger::{Wake, WebhookSecrets, webhook_router};
use rollwave::source::watch::watch_repository;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_wakes_the_loop_only_for_verified_requests() {
    let wake = Wake::new();
    let secrets = WebhookSecrets {
        github: Some("hook-secret".into()),
        gitlab: Some("lab-token".into()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server =
        tokio::spawn(axum::serve(listener, webhook_router(secrets, wake.clone())).into_future());

    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let good = github_signature("hook-secret", &body);
    let b = body.clone();
    let code =
        tokio::task::spawn_blocking(move || post_hook(port, &[("X-Hub-Signature-256", good)], &b))
            .await
            .unwrap();
    assert_eq!(code, 202);
    tokio::time::timeout(Duration::from_secs(5), wake.woken())
        .await
        .expect("a verified push wakes the loop");

    let b = body.clone();
    let bad = github_signature("other-secret", &body);
    let code =
        tokio::task::spawn_blocking(move || post_hook(port, &[("X-Hub-Signature-256", bad)], &b))
            .await
            .unwrap();
    assert_eq!(code, 401);
    let b = body.clone();
    let code = tokio::task::spawn_blocking(move || post_hook(port, &[], &b))
        .await
        .unwrap();
    assert_eq!(code, 401, "no signature at all");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), wake.woken())
            .await
            .is_err(),
        "refused requests do not wake the loop"
    );

    let b = body.clone();
    let code = tokio::task::spawn_blocking(move || {
        post_hook(port, &[("X-Gitlab-Token", "lab-token".into())], &b)
    })
    .await
    .unwrap();
    assert_eq!(code, 202);

    let big = vec![b'x'; 2 * 1024 * 1024];
    let sig = github_signature("hook-secret", &big);
    let code =
        tokio::task::spawn_blocking(move || post_hook(port, &[("X-Hub-Signature-256", sig)], &big))
            .await
            .unwrap();
    assert_eq!(code, 413);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_a_watched_local_repository_wakes_the_loop() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("fleet");
    common::git::work_repo(&work, common::MINIMAL);
    let wake = Wake::new();
    let _watcher = watch_repository(&work, wake.clone(), &[]).unwrap();
    let w = work.clone();
    tokio::task::spawn_blocking(move || {
        common::git::commit_files(&w, &[("apps/web/base/x.txt", "x")], "change")
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), wake.woken())
        .await
        .expect("the commit wakes the loop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_wakes_the_loop_repeatedly() {
    let wake = Wake::new();
    let poller = tokio::spawn(rollwave::source::trigger::poll(
        Duration::from_millis(50),
        wake.clone(),
        Default::default(),
    ));
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(5), wake.woken())
            .await
            .expect("each interval wakes the loop");
    }
    poller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_secret_verifies_nothing_and_a_slow_body_times_out() {
    let wake = Wake::new();
    let secrets = WebhookSecrets {
        github: Some(String::new()),
        gitlab: Some("lab-token".into()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server =
        tokio::spawn(axum::serve(listener, webhook_router(secrets, wake.clone())).into_future());
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let sig = github_signature("", &body);
    let code = tokio::task::spawn_blocking(move || {
        post_hook(port, &[("X-Hub-Signature-256", sig)], &body)
    })
    .await
    .unwrap();
    assert_eq!(code, 401, "a body signed with the empty key");

    // A body that never arrives in full is answered 408 after BODY_READ_TIMEOUT.
    let started = std::time::Instant::now();
    let code = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"POST /hooks/git HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nX-Gitlab-Token: lab-token\r\n\r\n{")
            .unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()).unwrap_or(0)
    })
    .await
    .unwrap();
    assert_eq!(code, 408);
    let took = started.elapsed();
    assert!(
        took >= rollwave::source::trigger::BODY_READ_TIMEOUT && took < Duration::from_secs(25),
        "{took:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(100), wake.woken())
            .await
            .is_err()
    );
    server.abort();
}
