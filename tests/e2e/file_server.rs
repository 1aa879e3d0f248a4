//! `gangway http file:///dir`: the agent's built-in file server through
//! the edge — listings, content types, ranges, and no way out of the root.

use crate::support::{agent_fails, Agent, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_directory_and_nothing_outside_it() {
    let server = Server::start().await;
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("hello.txt"), "hello, file server\n").expect("write");
    std::fs::write(root.path().join("data.json"), "{\"ok\":true}").expect("write");
    std::fs::create_dir(root.path().join("sub dir")).expect("mkdir");
    std::fs::write(root.path().join("sub dir/style.css"), "body{}").expect("write");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret"), "do not serve").expect("write");
    std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("escape"))
        .expect("symlink");

    let addr = format!("file://{}", root.path().display());
    let agent = Agent::http(&server, &addr, &[]).await;
    let c = server.client();
    let get = |path: &str| c.get(format!("{}{path}", agent.url));

    let r = get("/").send().await.expect("listing");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = r.text().await.expect("body");
    assert!(
        html.contains("hello.txt") && html.contains("sub dir/"),
        "{html}"
    );

    let r = get("/hello.txt").send().await.expect("file");
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.text().await.expect("body"), "hello, file server\n");
    let r = get("/data.json").send().await.expect("json");
    assert_eq!(r.headers()["content-type"], "application/json");
    let r = get("/sub%20dir/style.css").send().await.expect("css");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/css");

    let r = c
        .get(format!("{}/sub%20dir", agent.url))
        .send()
        .await
        .expect("dir without slash");
    // reqwest follows the redirect to the listing.
    assert_eq!(r.status(), 200);
    assert!(r.url().path().ends_with("/sub%20dir/"));

    let r = get("/hello.txt")
        .header("range", "bytes=7-10")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 7-10/19");
    assert_eq!(r.text().await.expect("body"), "file");
    let r = get("/hello.txt")
        .header("range", "bytes=-7")
        .send()
        .await
        .expect("suffix range");
    assert_eq!(r.text().await.expect("body"), "server\n");
    let r = get("/hello.txt")
        .header("range", "bytes=100-")
        .send()
        .await
        .expect("bad range");
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */19");

    let r = c
        .head(format!("{}/hello.txt", agent.url))
        .send()
        .await
        .expect("head");
    assert_eq!(r.headers()["content-length"], "19");
    let r = c
        .post(format!("{}/hello.txt", agent.url))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 405);

    // No escape: dot-dot (encoded so the client does not resolve it) and
    // a symlink that points outside the root.
    for path in [
        "/%2e%2e/%2e%2e/etc/passwd",
        "/sub%20dir/%2e%2e/%2e%2e/etc/hostname",
        "/escape",
        "/missing",
    ] {
        let r = get(path).send().await.expect("escape attempt");
        assert_eq!(r.status(), 404, "{path}");
    }

    let err = agent_fails(&server, &["http", "file://relative/path"]).await;
    assert!(err.contains("absolute path"), "{err}");
}
