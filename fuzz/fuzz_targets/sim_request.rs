//! The simulated API server's request decoding on any method, path, content type and
//! body, over a real socket: an answer below 500 (a clear 4xx for what it cannot
//! decode), never a panic or a dropped connection.
#![no_main]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rollwave::sim::{SimCluster, SimOptions};

fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime"),
        ));
        let sim = runtime
            .block_on(SimCluster::start(SimOptions::named("fuzz")))
            .expect("simulated cluster");
        let addr = sim.addr();
        Box::leak(Box::new(sim));
        addr
    })
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
const PATHS: &[&str] = &[
    "/api/v1/namespaces/default/configmaps",
    "/api/v1/namespaces/default/configmaps/x",
    "/apis/apps/v1/namespaces/default/deployments",
    "/apis/apps/v1/namespaces/default/deployments/web",
    "/apis/apps/v1/namespaces/default/deployments/web/scale",
    "/api/v1/namespaces",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "/api/v1/namespaces/default/configmaps?fieldManager=f&dryRun=All",
    "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=f&force=true",
];
const TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/apply-patch+yaml",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/vnd.kubernetes.protobuf",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let method = METHODS[data[0] as usize % METHODS.len()];
    let path = PATHS[data[1] as usize % PATHS.len()];
    let content_type = TYPES[data[2] as usize % TYPES.len()];
    let body = &data[3..];
    let mut conn = TcpStream::connect(server()).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: fuzz\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).expect("write");
    conn.write_all(body).expect("write");
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).expect("an answer");
    let status_line =
        String::from_utf8_lossy(answer.split(|b| *b == b'\n').next().unwrap_or_default())
            .into_owned();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {status_line:?}"));
    assert!(
        code < 500,
        "{method} {path} ({content_type}) answered {status_line}"
    );
});
