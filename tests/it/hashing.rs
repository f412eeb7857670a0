//! Password checks under CPU pressure: the idle hashing threads yield the CPU to everything,
//! and a check that other programs starve is run again on the nice-19 rescue thread, so the
//! sign-in still succeeds.

use crate::common::*;
use serde_json::json;

/// The CPUs this test may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data, filled by the kernel for the calling thread (0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        assert_eq!(libc::sched_getaffinity(0, size, &mut set), 0);
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Keep thread or process `tid` on `cpu` alone.
fn pin(tid: libc::pid_t, cpu: usize) {
    // SAFETY: cpu_set_t is plain data, read by the kernel.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let size = std::mem::size_of::<libc::cpu_set_t>();
        assert_eq!(
            libc::sched_setaffinity(tid, size, &set),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
    }
}

/// The ids of process `pid`'s threads whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> Vec<libc::pid_t> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| {
            let task = task.ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            name.starts_with(prefix)
                .then(|| task.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

/// Another program keeping one CPU busy at normal priority, until dropped.
struct Hog(std::process::Child);

impl Hog {
    fn on(cpu: usize) -> Hog {
        let hog = Hog(std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap());
        pin(hog.0.id() as libc::pid_t, cpu);
        hog
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of a counter on the admin listener's `/metrics`.
async fn counter(gw: &Gateway, name: &str) -> f64 {
    let text = client()
        .get(format!("http://{}/metrics", gw.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn a_signin_that_another_program_starves_is_rescued() {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("one CPU: no room to starve the hashing threads and not the rescue thread");
        return;
    }
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    assert_eq!(counter(&gw, "authgate_password_rescues_total").await, 0.0);
    // Every idle hashing thread is kept to one CPU, where another program spins at normal
    // priority: SCHED_IDLE gives them about 0.3 % of it, seconds for one argon2id check, past
    // the 3 s a sign-in may wait. The rescue thread may run anywhere.
    let hashing = threads_named(gw.pid(), "authgate-hash");
    assert!(!hashing.is_empty(), "no hashing threads");
    let cpu = cpus[0];
    for &tid in &hashing {
        pin(tid, cpu);
    }
    let _hog = Hog::on(cpu);
    let a = post_json(
        &gw.url("/api/auth/signin"),
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.json["token"].as_str().is_some(), "{}", a.text);
    assert!(counter(&gw, "authgate_password_rescues_total").await >= 1.0);

    // A wrong password is refused as ever, through the rescue too.
    let a = post_json(
        &gw.url("/api/auth/signin"),
        json!({"email": EMAIL, "password": "not the password"}),
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.text);
    assert!(a.json.get("token").is_none(), "{}", a.text);
}
