//! `hotline reload`: asks the running service (by its pid file) to re-read routing.toml.
//! The service validates first and keeps the running version if the new one has problems.

use std::path::Path;

use anyhow::{bail, Context};

pub fn run(pid_file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(pid_file).with_context(|| {
        format!(
            "reading {} (is `hotline serve` running here?)",
            pid_file.display()
        )
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", pid_file.display()))?;
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!(
            "no running service with pid {pid} (from {})",
            pid_file.display()
        );
    }
    println!("asked hotline (pid {pid}) to reload its routing; its log says whether it took");
    Ok(())
}
