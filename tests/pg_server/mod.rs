//! Test support: a throwaway PostgreSQL server on 127.0.0.1 (initdb into a temp dir, started
//! and stopped with pg_ctl, run as the `postgres` user when the tests run as root, since
//! PostgreSQL refuses to run as root). Stopped and removed on Drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    run_as_postgres: bool,
    _dir: tempfile::TempDir,
}

impl TestPostgres {
    /// Initialises and starts a server. Panics with a clear message when PostgreSQL is missing.
    pub fn start() -> TestPostgres {
        let bin = find_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: \
                 install the Debian package `postgresql` (run scripts/test)"
            )
        });
        let run_as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("cdr-pg-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if run_as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(dir.path()));
        }
        let server = TestPostgres {
            bin,
            data,
            port: free_port(),
            run_as_postgres,
            _dir: dir,
        };
        server.pg(&[
            "initdb",
            "-D",
            "{data}",
            "-U",
            "cdr",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        server.start_again();
        server
    }

    pub fn url(&self) -> String {
        format!("postgres://cdr@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server on the same data and port; returns once it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        self.pg(&[
            "pg_ctl",
            "-D",
            "{data}",
            "-w",
            "-l",
            "{data}/log",
            "-o",
            &options,
            "start",
        ]);
    }

    /// Stops the server (fast shutdown: open connections are closed).
    pub fn stop(&self) {
        self.pg(&["pg_ctl", "-D", "{data}", "-w", "-m", "fast", "stop"]);
    }

    fn pg(&self, args: &[&str]) {
        let data = self.data.display().to_string();
        let args: Vec<String> = args.iter().map(|a| a.replace("{data}", &data)).collect();
        let program = self.bin.join(&args[0]);
        let mut command = if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.args(&args[1..]);
        run(&mut command);
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let program = self.bin.join("pg_ctl");
        let mut command = if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        // Already stopped is fine here; the outcome is not checked.
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}

fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists() && bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|path| {
        path.parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
